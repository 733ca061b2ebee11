"""The ``overlord`` entry point: the client commands are always there, and a broken import says so."""

from __future__ import annotations

import importlib
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
    # re-import both modules with one of the client commands' dependencies made unimportable
    monkeypatch.delitem(sys.modules, "overlord.cli")
    monkeypatch.delitem(sys.modules, "overlord.client_cli")
    monkeypatch.setitem(sys.modules, "rich.live", None)
    with pytest.raises(ImportError, match=r"rich\.live"):
        importlib.import_module("overlord.cli")


def test_start_refuses_an_unknown_log_format_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["start", "--data-dir", str(tmp_path / "var"), "--log-format", "xml"])
    assert result.exit_code == 2
    assert "Invalid log format [xml]" in result.output
    assert not (tmp_path / "var").exists()
