"""The ``overlord`` entry point: the client commands are always there, and a broken import says so."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlord.cli import app


def test_the_client_commands_are_mounted() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "task" in result.output and "datasource" in result.output


def test_an_import_error_inside_the_client_commands_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    # the client commands load on first use: with one of their dependencies made unimportable,
    # running one fails with that import error rather than the command silently missing
    monkeypatch.delitem(sys.modules, "overlord.client_cli", raising=False)
    monkeypatch.setitem(sys.modules, "rich.live", None)
    fresh = importlib.reload(importlib.import_module("overlord.cli")).app
    result = CliRunner().invoke(fresh, ["task", "ls"])
    assert isinstance(result.exception, ImportError) and "rich.live" in str(result.exception)


def test_start_does_not_import_the_client_commands() -> None:
    # `overlord start` answers ~0.25 s sooner without the client's models, rich tables and httpx
    probe = "import sys, overlord.cli; print(sorted(m for m in sys.modules if m.startswith('overlord.client')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_start_refuses_an_unknown_log_format_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["start", "--data-dir", str(tmp_path / "var"), "--log-format", "xml"])
    assert result.exit_code == 2
    assert "Invalid log format [xml]" in result.output
    assert not (tmp_path / "var").exists()
