"""The ingest allocator switch: jemalloc by default, the operator's ARROW_DEFAULT_MEMORY_POOL respected.

Each case runs in a fresh interpreter: the default pool is process-global state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

_PROBE = """
import json, pyarrow as pa
before = pa.default_memory_pool().backend_name
from overlord.ingest.arrow_pool import use_ingest_pool
first = use_ingest_pool()
pa.set_memory_pool(pa.system_memory_pool())
again = use_ingest_pool()  # once per process: a later choice is not overridden
print(json.dumps([before, first, again]))
"""


def _probe(env_pool: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env_pool is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = env_pool
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(
    "jemalloc" not in pa.supported_memory_backends() or "mimalloc" not in pa.supported_memory_backends(),
    reason="this pyarrow build lacks jemalloc or mimalloc",
)
def test_mimalloc_default_becomes_jemalloc_once() -> None:
    before, first, again = _probe(None)
    assert before == "mimalloc"
    assert first == "jemalloc"
    assert again == "system"


@pytest.mark.parametrize("choice", ["system", "mimalloc"])
def test_operator_choice_stands(choice: str) -> None:
    if choice not in pa.supported_memory_backends():
        pytest.skip(f"no {choice} in this pyarrow build")
    before, first, _ = _probe(choice)
    assert before == choice
    assert first == choice


def test_run_ingestion_switches_pool(tmp_path) -> None:
    data = tmp_path / "in.json"
    data.write_text('{"ts": "2024-01-01T00:00:00Z", "dim": "a", "v": 1}\n')
    code = f"""
import pyarrow as pa
from overlord.clock import ManualClock
from overlord.ingest.pipeline import run_ingestion
from overlord.ingest.spec import validate_index_spec
spec = validate_index_spec({{"type": "index", "spec": {{
    "dataSchema": {{"dataSource": "ds", "timestampSpec": {{"column": "ts", "format": "iso"}},
        "dimensionsSpec": {{"dimensions": ["dim"]}},
        "granularitySpec": {{"segmentGranularity": "day", "queryGranularity": "none", "rollup": False}}}},
    "ioConfig": {{"type": "index", "inputSource": {{"type": "local", "files": [{str(data)!r}]}},
        "inputFormat": {{"type": "json"}}}}}}}}, allowed_dirs=[{str(tmp_path)!r}])
res = run_ingestion(spec, out_dir={str(tmp_path / "out")!r}, version="v1", clock=ManualClock())
print(res.row_stats["buildSegments"].processed, pa.default_memory_pool().backend_name)
"""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    processed, backend = out.stdout.split()
    assert processed == "1"
    if "jemalloc" in pa.supported_memory_backends():
        assert backend == "jemalloc"
