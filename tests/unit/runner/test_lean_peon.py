"""The lean fork server's peons stay lean: a noop run as the local runner runs it (status by file, log
pushed by the runner) imports none of the heavy modules, whose pages every forked peon would pay for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from overlord.runner.fork_server import HEAVY, LEAN, preload, server_for
from overlord.runner.peon import LOG_BY_RUNNER, STATUS_BY_FILE
from overlord.runner.toolbox import LOG_FILE, STATUS_FILE, TASK_FILE, PeonRuntime

HEAVY_MODULES = (
    "pyarrow", "numpy", "duckdb", "pydantic", "pydantic_core", "sqlalchemy", "boto3", "botocore", "sqlglot",
    "click", "rich", "pygments", "typer", "uvicorn", "starlette", "httpx", "httpcore", "ssl",
    "overlord.ingest", "overlord.sql", "overlord.storage", "overlord.api", "overlord.client", "overlord.service",
)  # fmt: skip

# Run in a fresh interpreter: import what the lean server preloads, then run a noop peon in this
# process (no fork: the modules it imports show in sys.modules), its gate held open as the runner's is.
PEON = """
import importlib, json, sys
from multiprocessing import Pipe
for name in sys.argv[1].split(","):
    importlib.import_module(name)
from overlord.runner.peon import run_peon
runner_end, peon_end = Pipe(duplex=True)
runner_end.send({"token": "t"})
run_peon(sys.argv[2], peon_end)
open(sys.argv[3], "w").write(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))
"""


def test_noop_is_a_lean_task_type_and_ingestion_is_not() -> None:
    assert server_for("overlord.tasks.noop:run") == LEAN
    assert server_for("overlord.tasks.index:run") == HEAVY
    assert server_for("overlord.tasks.kill:run") == HEAVY


def _noop_task_dir(tmp_path: Path, task_id: str) -> Path:
    """A task directory with a noop's task.json, as a local runner's launch leaves it."""
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    runtime = PeonRuntime(
        "http://127.0.0.1:9", deep_storage=f"file://{tmp_path}/deep", task_logs=str(tmp_path / "logs")
    )
    (task_dir / TASK_FILE).write_bytes(
        orjson.dumps({
            "id": task_id, "payload": {"type": "noop", "id": task_id, "runTime": 0}, "run": "overlord.tasks.noop:run",
            "runtime": runtime.to_json(), STATUS_BY_FILE: True, LOG_BY_RUNNER: True,
        })
    )  # fmt: skip
    return task_dir


def test_a_lean_peon_imports_no_heavy_module(tmp_path: Path) -> None:
    task_dir = _noop_task_dir(tmp_path, "lean")
    (task_dir / LOG_FILE).touch()
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PEON, ",".join(preload(LEAN, s3=False)), str(task_dir), str(out)], check=True, timeout=60
    )
    assert orjson.loads((task_dir / STATUS_FILE).read_bytes())["status"] == "SUCCESS"
    modules = orjson.loads(out.read_bytes())
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES))
    assert heavy == [], f"the lean peon imported {heavy[:10]}"
    assert "overlord.tasks.noop" in modules  # what it should have; httpx only once it calls the Overlord


# The runner that launched the peon goes away while it runs (its gate closes): the peon then makes its
# action client (importing httpx) and posts its status, here to an in-memory Overlord.
ORPHANED_PEON = """
import importlib, json, sys
from multiprocessing import Pipe
for name in sys.argv[1].split(","):
    importlib.import_module(name)
assert "httpx" not in sys.modules
import httpx
from overlord.runner.peon import run_peon
from overlord.tasks.action_client import ActionClient
posted = []
def answer(request):
    posted.append([request.url.path, json.loads(request.content)])
    return httpx.Response(200, json={})
ActionClient.default_transport = httpx.MockTransport(answer)
runner_end, peon_end = Pipe(duplex=True)
runner_end.send({"token": "t"})
runner_end.close()
run_peon(sys.argv[2], peon_end)
open(sys.argv[3], "w").write(json.dumps(posted))
"""


def test_a_lean_peon_whose_runner_went_away_posts_its_status(tmp_path: Path) -> None:
    task_dir = _noop_task_dir(tmp_path, "orphan")
    out = tmp_path / "posted.json"
    subprocess.run(
        [sys.executable, "-c", ORPHANED_PEON, ",".join(preload(LEAN, s3=False)), str(task_dir), str(out)],
        check=True,
        timeout=60,
    )
    posted = orjson.loads(out.read_bytes())
    assert [path for path, _ in posted] == ["/druid/indexer/v1/peon/orphan/status"]
    assert posted[0][1]["status"] == "SUCCESS"
    assert (tmp_path / "logs" / "orphan.log").exists()  # and it pushed its own log
