def test_noop_runs_to_success(service):
    task_id = service.submit({"type": "noop", "runTime": 10})
    status = service.wait_for(task_id)
    assert status["statusCode"] == "SUCCESS"
