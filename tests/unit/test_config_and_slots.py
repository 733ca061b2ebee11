from pathlib import Path

import pytest

from overlord.config import load_settings, parse_duration_ms, parse_size
from overlord.errors import ConfigError
from overlord.runner.slots import allocate_slots, directory_size


def test_reference_storage_example_5_slots_2_dirs_300gb():
    slots = allocate_slots(5, [Path("A"), Path("B")], 300 * 10**9)
    assert [s.base_dir.name for s in slots].count("A") == 3
    assert [s.base_dir.name for s in slots].count("B") == 2
    assert {s.quota_bytes for s in slots} == {100 * 10**9}


def test_slots_without_size_have_no_quota():
    assert {s.quota_bytes for s in allocate_slots(3, [Path("A")], None)} == {None}
    with pytest.raises(ValueError):
        allocate_slots(0, [Path("A")], None)


def test_sizes_and_durations():
    assert parse_size("300GiB") == 300 * 1024**3
    assert parse_size("500m") == 500 * 10**6
    assert parse_size("1000") == 1000
    assert parse_duration_ms("PT1H") == 3_600_000
    assert parse_duration_ms("P7D") == 7 * 86_400_000
    assert parse_duration_ms("1500") == 1500
    with pytest.raises(ConfigError):
        parse_size("lots")
    with pytest.raises(ConfigError):
        parse_duration_ms("P")


def test_precedence_file_env_flags(tmp_path):
    props = tmp_path / "runtime.properties"
    props.write_text(
        '# comment\ndruid.worker.capacity=3\ndruid.plaintextPort: 9000\ndruid.worker.baseTaskDirs=["/a","/b"]\n'
        "druid.service=druid/overlord\n"
    )
    s = load_settings(config_file=props, environ={})
    assert s.worker_capacity == 3 and s.port == 9000 and s.base_task_dirs == [Path("/a"), Path("/b")]
    s = load_settings(config_file=props, environ={"druid_worker_capacity": "4"})
    assert s.worker_capacity == 4
    s = load_settings(config_file=props, environ={"druid_worker_capacity": "4"}, overrides={"worker_capacity": 7})
    assert s.worker_capacity == 7


def test_bad_settings_are_refused(tmp_path):
    props = tmp_path / "bad.properties"
    props.write_text("druid.worker.capacityy=3\n")
    with pytest.raises(ConfigError, match="unknown property"):
        load_settings(config_file=props, environ={})
    with pytest.raises(ConfigError, match="druid_worker_capacity"):
        load_settings(environ={"druid_worker_capacity": "many"})
    with pytest.raises(ConfigError, match="at least 1"):
        load_settings(environ={"druid_worker_capacity": "0"})
    with pytest.raises(ConfigError, match="Cannot read"):
        load_settings(config_file=tmp_path / "missing", environ={})


def test_directory_size(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 100)
    (tmp_path / "g").write_bytes(b"y" * 10)
    assert directory_size(tmp_path) == 110
    assert directory_size(tmp_path / "missing") == 0


DRUID_OVERLORD_PROPERTIES = Path(__file__).parents[1] / "data" / "druid" / "overlord-runtime.properties"


def test_druids_overlord_runtime_properties_apply_or_warn_once_each() -> None:
    warnings: list[str] = []
    s = load_settings(config_file=DRUID_OVERLORD_PROPERTIES, environ={}, warnings=warnings)
    assert (s.host, s.port, s.runner_type, s.metadata_url) == ("localhost", 8081, "local", None)
    assert s.storage_directory == Path("var/druid/segments") and s.task_logs_dir == Path("var/druid/indexing-logs")
    ignored = [w.split("=")[0].split(" ")[0] for w in warnings]
    assert len(ignored) == len(set(ignored))  # one warning each
    assert "druid.zk.service.host" in ignored and "druid.extensions.loadList" in ignored
    assert any(
        w.startswith("druid.indexer.runner.type=httpRemote ignored: peons run on this machine") for w in warnings
    )
    assert any("connectURI=jdbc:derby://localhost:1527/var/druid/metadata.db ignored" in w for w in warnings)
    assert not any(
        p.startswith(("druid.host", "druid.plaintextPort", "druid.storage.", "druid.indexer.logs.")) for p in ignored
    )


def test_druid_property_forms(tmp_path: Path) -> None:
    props = tmp_path / "runtime.properties"
    props.write_text(
        "druid.port=8095\n"
        "druid.metadata.storage.type=postgresql\n"
        "druid.metadata.storage.connector.connectURI=jdbc:postgresql://db.example.com:5432/druid\n"
        "druid.metadata.storage.connector.user=druid\n"
        "druid.metadata.storage.connector.password=p@ss\n"
        "druid.storage.type=hdfs\n"
        "druid.storage.storageDirectory=/druid/segments\n"
        "druid.indexer.runner.type=httpRemote\n"
    )
    warnings: list[str] = []
    s = load_settings(config_file=props, environ={}, warnings=warnings)
    assert s.port == 8095
    assert s.metadata_url == "postgresql://druid:p%40ss@db.example.com:5432/druid"
    assert s.storage_type == "local"
    assert s.runner_type == "local"
    assert warnings == [
        "druid.storage.type=hdfs ignored: segments go to a local folder (local); s3 is supported too",
        "druid.indexer.runner.type=httpRemote ignored: peons run on this machine (local); "
        "a cluster's workers need druid.indexer.runner.type=dask",
    ]


def test_only_malformed_values_and_typos_are_errors(tmp_path: Path) -> None:
    props = tmp_path / "runtime.properties"
    props.write_text("druid.zk.service.host=zk\ndruid.worker.capacity=many\n")
    with pytest.raises(ConfigError, match=r"Invalid value \[many\] for druid.worker.capacity"):
        load_settings(config_file=props, environ={})
    props.write_text("overlord.log.formatt=json\n")
    with pytest.raises(
        ConfigError, match=r"unknown property \[overlord.log.formatt\]; did you mean \[overlord.log.format\]"
    ):
        load_settings(config_file=props, environ={})
