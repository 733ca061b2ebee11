"""The service with PostgreSQL metadata: the same lifecycle, and a kill -9 restart that loses nothing."""

API = "/druid/indexer/v1"


def test_service_on_postgres_survives_kill9(service_factory, pg_url):
    svc = service_factory(capacity=1, extra_args=["--metadata-url", pg_url])
    svc.start()
    done = svc.submit({"type": "noop", "runTime": 0})
    assert svc.wait_for(done)["statusCode"] == "SUCCESS"
    running = svc.submit({"type": "noop", "runTime": 60000})
    svc.wait_for(running, states=("RUNNING",))
    queued = svc.submit({"type": "noop", "runTime": 0})
    svc.kill9()
    svc.start()
    assert svc.http.get(f"{API}/task/{done}/status").json()["status"]["statusCode"] == "SUCCESS"
    assert svc.http.get(f"{API}/task/{running}/status").json()["status"]["runnerStatusCode"] == "RUNNING"
    svc.http.post(f"{API}/task/{running}/shutdown")
    assert svc.wait_for(running)["statusCode"] == "FAILED"
    assert svc.wait_for(queued)["statusCode"] == "SUCCESS"
    assert not (svc.data_dir / "metadata.db").exists()
