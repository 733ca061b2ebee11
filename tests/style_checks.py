"""mypy for the suite's style test, started as soon as collection shows the test will run.

mypy on src/ takes ~30 s of one core. The suite runs on one core most of the time (pytest is
single-threaded; in-process API tests keep only that core busy), so mypy runs beside the first
tests at low priority and the style test only collects its result.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MYPY_TEST = "test_code_style.py::test_mypy_on_src"

_NICE_MYPY = (
    "import os, sys; os.nice(10); sys.argv = ['mypy', 'src']; from mypy.__main__ import console_entry; console_entry()"
)

_run: tuple[subprocess.Popen[bytes], tempfile._TemporaryFileWrapper[bytes]] | None = None


def start_mypy() -> None:
    """Start mypy on src/ in the background (once), niced so it yields to the tests beside it."""
    global _run
    if _run is not None:
        return
    out = tempfile.NamedTemporaryFile(prefix="overlord-mypy-", suffix=".log")  # noqa: SIM115 (kept open until read)
    process = subprocess.Popen([sys.executable, "-c", _NICE_MYPY], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    _run = (process, out)


def start_if_selected(items: list[pytest.Item]) -> None:
    """Called after collection: start mypy early when its test is among the selected ones."""
    if any(item.nodeid.endswith(MYPY_TEST) for item in items):
        start_mypy()


def mypy_result(timeout: float = 600) -> tuple[int, str]:
    """mypy's exit code and output, waiting for the run started early (or starting one now)."""
    start_mypy()
    assert _run is not None
    process, out = _run
    code = process.wait(timeout)
    out.seek(0)
    return code, out.read().decode(errors="replace")


def stop() -> None:
    """Kill an unfinished run (the session ended before the style test, e.g. ``-x``)."""
    if _run is not None and _run[0].poll() is None:
        _run[0].kill()
        _run[0].wait()
