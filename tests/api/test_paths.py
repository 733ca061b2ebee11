"""Every path a task reads is checked like a ``local`` input source, at submit (a 400 naming the
field) and again in the peon; the service's own data directory is never readable by default."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from overlord.clock import ManualClock
from overlord.config import Settings
from overlord.errors import ForbiddenPath
from overlord.ingest.pipeline import run_ingestion
from overlord.ingest.sources import DATA_DIR_MARKER, InputSplit, check_readable, checked_splits, list_input_splits
from overlord.ingest.spec import validate_index_spec
from tests.api.conftest import PEON_RETRY_MS, Api, P, assert_druid_error, closed_port, index_spec, sub_task_spec

pytestmark = pytest.mark.anyio


def local_files(*paths: str | Path) -> dict[str, Any]:
    return {"inputSource": {"type": "local", "files": [str(p) for p in paths]}}


@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd", "/etc/../etc/passwd"])
async def test_sub_task_splits_outside_allowed_dirs_are_400(api: Api, target: str) -> None:
    r = await api.http.post(f"{P}/task", json=sub_task_spec([{"data": "{}"}, {"path": target}]))
    assert_druid_error(r, 400, "inputSplits[1].path", "outside the allowed directories")
    assert (await api.http.get(f"{P}/tasks")).json() == []


async def test_sub_task_splits_cannot_climb_or_link_out(api: Api) -> None:
    climb = api.start_dir / ".." / ".." / ".." / "etc" / "passwd"
    link = api.start_dir / "innocent.json"
    link.symlink_to("/etc/passwd")
    for target in (climb, link):
        r = await api.http.post(f"{P}/task", json=sub_task_spec([{"path": str(target)}]))
        assert_druid_error(r, 400, "inputSplits[0].path")


async def test_sub_task_splits_into_the_data_dir_are_400(api: Api) -> None:
    db = api.settings.data_dir / "metadata.db"
    assert db.is_file()
    r = await api.http.post(f"{P}/task", json=sub_task_spec([{"path": str(db)}]))
    assert_druid_error(r, 400, "inputSplits[0].path")


@pytest.mark.parametrize(
    ("splits", "field"),
    [
        ([{"path": "x", "data": "y"}], "inputSplits[0]"),
        ([{"file": "x"}], "inputSplits[0]"),
        ([{"path": 5}], "inputSplits[0].path"),
        ([{"path": ""}], "inputSplits[0].path"),
        ([{"path": "rows.json"}], "inputSplits[0].path"),
        ([{"data": 5}], "inputSplits[0].data"),
        ("not a list", "inputSplits"),
    ],
)
async def test_malformed_splits_are_400_naming_the_field(api: Api, splits: Any, field: str) -> None:
    r = await api.http.post(f"{P}/task", json=sub_task_spec(splits))
    assert_druid_error(r, 400, field)


async def test_sub_task_splits_inside_allowed_dirs_are_accepted(api: Api) -> None:
    good = api.start_dir / "rows.json"
    good.write_text('{"ts":"2020-01-01T00:00:00Z","dim":"a"}\n')
    r = await api.http.post(f"{P}/task", json=sub_task_spec([{"path": str(good)}, {"data": "{}"}]))
    assert r.status_code == 200, r.text


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Druid's default layout: the data dir (``./var``) inside the start dir."""
    start = tmp_path / "start"
    start.mkdir()
    return Settings(
        data_dir=start / "var", host="127.0.0.1", port=closed_port(), worker_capacity=1, start_dir=start,
        action_retry_ms=PEON_RETRY_MS,
    )  # fmt: skip


def test_default_allowed_dirs_are_the_start_dir_only(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "var", start_dir=tmp_path / "start")
    assert s.effective_allowed_input_dirs == [tmp_path / "start"]
    s = Settings(data_dir=tmp_path / "var", start_dir=tmp_path, allowed_input_dirs=[tmp_path / "in"])
    assert s.effective_allowed_input_dirs == [tmp_path / "in"]


async def test_local_sources_cannot_read_the_data_dir_inside_the_start_dir(api: Api) -> None:
    data = api.settings.data_dir
    assert data.parent == api.start_dir and (data / DATA_DIR_MARKER).is_file()
    for io, field in [
        (local_files(data / "metadata.db"), "spec.ioConfig.inputSource.files[0]"),
        (local_files(api.start_dir / "var" / ".." / "var" / "metadata.db"), "spec.ioConfig.inputSource.files[0]"),
        ({"inputSource": {"type": "local", "baseDir": str(data), "filter": "*"}}, "baseDir"),
        ({"inputSource": {"type": "local", "baseDir": str(data / "task"), "filter": "*.json"}}, "baseDir"),
    ]:
        r = await api.http.post(f"{P}/task", json=index_spec(io=io))
        assert_druid_error(r, 400, field, "data directory")
    r = await api.http.post(f"{P}/task", json=sub_task_spec([{"path": str(data / "metadata.db")}]))
    assert_druid_error(r, 400, "inputSplits[0].path", "data directory")


async def test_a_walk_of_the_start_dir_skips_the_data_dir(api: Api) -> None:
    (api.start_dir / "rows.json").write_text('{"ts":"2020-01-01T00:00:00Z","dim":"a"}\n')
    (api.settings.data_dir / "secret.json").write_text('{"ts":"2020-01-01T00:00:00Z","dim":"secret"}\n')
    io = {"inputSource": {"type": "local", "baseDir": str(api.start_dir), "filter": "*.json"}}
    r = await api.http.post(f"{P}/task", json=index_spec(io=io))
    assert r.status_code == 200, r.text
    spec = validate_index_spec(index_spec(io=io), allowed_dirs=[api.start_dir])
    assert [s.path for s in list_input_splits(spec)] == [(api.start_dir / "rows.json").resolve()]


def test_a_folder_listed_inside_a_data_dir_is_readable(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "inputs").mkdir(parents=True)
    (data / DATA_DIR_MARKER).write_text("1")
    rows = data / "inputs" / "rows.json"
    rows.write_text("{}\n")
    assert check_readable(rows, [data / "inputs"], "f") == rows
    with pytest.raises(ForbiddenPath, match="data directory"):
        check_readable(data / DATA_DIR_MARKER, [data / "inputs", tmp_path], "f")
    with pytest.raises(ForbiddenPath, match="data directory"):  # the data dir itself is not "a folder in it"
        check_readable(rows, [data], "f")
    with pytest.raises(ForbiddenPath, match="data directory"):  # no roots: anything but a data dir
        check_readable(rows, [], "f")


def test_the_peon_rechecks_splits_defence_in_depth(tmp_path: Path) -> None:
    """A payload that skipped submit validation still cannot read outside the allowed dirs."""
    allowed = tmp_path / "in"
    allowed.mkdir()
    (allowed / "ok.json").write_text('{"ts":"2020-01-01T00:00:00Z","dim":"a"}\n')
    spec = validate_index_spec(index_spec(), allowed_dirs=[allowed])
    assert checked_splits([InputSplit(data="{}"), InputSplit(allowed / "ok.json")], spec.allowed_dirs)
    for target in ("/proc/self/environ", "/etc/passwd", str(allowed / ".." / ".." / "x")):
        with pytest.raises(ForbiddenPath, match=r"inputSplits\[0\]\.path"):
            run_ingestion(
                spec, out_dir=tmp_path / "out", version="v", clock=ManualClock(), files=[InputSplit(Path(target))]
            )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


# ---- nothing is ever written outside the data directory -----------------------------------------


async def _wait_complete(api: Api, task_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    with anyio.fail_after(timeout_s):
        while True:
            status = (await api.http.get(f"{P}/task/{task_id}/status")).json()["status"]
            if status["statusCode"] != "RUNNING":
                return status  # type: ignore[no-any-return]
            await anyio.sleep(0.02)


def _tree(root: Path, skip: Path) -> set[str]:
    out = set()
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        out.update(str(Path(dirpath, n).relative_to(root)) for n in [*dirs, *names])
    return out


async def test_attacks_write_nothing_outside_the_data_dir(api: Api, tmp_path: Path) -> None:
    marker = f"overlord-attack-{uuid.uuid4().hex}"
    climb = "../" * 24 + "tmp/" + marker
    before = _tree(tmp_path, api.settings.data_dir)
    attacks = [
        {"type": "noop", "runTime": 0, "dataSource": "/" + climb},
        {"type": "noop", "runTime": 0, "dataSource": climb},
        {"type": "noop", "runTime": 0, "id": climb},
        {"type": "noop", "runTime": 0, "groupId": climb},
        sub_task_spec([{"data": '{"ts":"2020-01-01T00:00:00Z","dim":"a"}'}], supervisor=climb),
        index_spec(data_source=climb),
        sub_task_spec([{"path": "/proc/self/environ"}]),
    ]
    for attack in attacks:
        r = await api.http.post(f"{P}/task", json=attack)
        assert r.status_code == 400, (attack, r.text)
    # the legitimate forms of the same tasks run, so the runner did write (inside the data dir)
    ok = [
        {"type": "noop", "runTime": 0, "dataSource": "fine"},
        sub_task_spec([{"data": '{"ts":"2020-01-01T00:00:00Z","dim":"a"}'}], supervisor="parent"),
    ]
    for spec in ok:
        task = (await api.http.post(f"{P}/task", json=spec)).json()["task"]
        assert (await _wait_complete(api, task))["statusCode"] == "SUCCESS"
    # they wrote (logs; the orphan sub-task's staging area was removed when it ended): all inside the data dir
    assert len(list((api.settings.data_dir / "task-logs").glob("*.log"))) == 2
    assert not Path("/tmp", marker).exists()
    assert _tree(tmp_path, api.settings.data_dir) == before
