"""Choosing the Dask runner through Druid-style properties: what it needs, and what it hands its peons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.dask_cluster import require_distributed

from overlord.config import load_settings
from overlord.service import Service


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"druid_indexer_runner_type": "dask"}, "overlord.runner.dask.scheduler"),
        ({"druid_indexer_runner_type": "ray"}, "[local] or [dask]"),
    ],
)
def test_bad_runner_settings_stop_the_start_with_a_message(tmp_path: Path, env: dict, message: str) -> None:
    args = [sys.executable, "-m", "overlord", "start", "--port", "1", "--data-dir", str(tmp_path / "var")]
    done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and message in done.stdout + done.stderr, done


def test_dask_properties_build_a_runner_whose_peons_use_the_advertised_url(tmp_path: Path) -> None:
    require_distributed()
    props = tmp_path / "runtime.properties"
    props.write_text(
        "druid.indexer.runner.type=dask\n"
        "overlord.runner.dask.scheduler=tcp://127.0.0.1:1\n"
        "overlord.runner.dask.gateTimeout=PT2M\n"
        "druid.host=0.0.0.0\n"
    )
    settings = load_settings(config_file=props, environ={}, overrides={"data_dir": tmp_path / "var"})
    assert (settings.dask_scheduler, settings.dask_gate_timeout_ms) == ("tcp://127.0.0.1:1", 120_000)
    svc = Service(settings)
    try:
        from overlord.runner.dask import DaskTaskRunner

        assert isinstance(svc.runner, DaskTaskRunner)
        assert svc.runner.runtime.overlord_url == svc.advertised_url != "http://127.0.0.1:8090"
        assert "tcp://127.0.0.1:1" in (svc.runner_health() or "")  # not connected: says so before start
        assert svc.runner.capacity() == 0
    finally:
        svc.store.close()
        svc._lock_file.close()
