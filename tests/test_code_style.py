"""The house style is part of the suite: ruff's lint and formatting for the whole tree, mypy on src/."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import style_checks

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: it is part of the test extras")
    return [exe]


@pytest.mark.parametrize(
    "args",
    [["check", "src", "tests", "benchmarks"], ["format", "--check", "src", "tests", "benchmarks"]],
    ids=["lint", "format"],
)
def test_ruff(args):
    result = subprocess.run([*_ruff(), *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)  # niced: on a busy machine it waits for the tests' spare CPU
def test_mypy_on_src():
    code, output = style_checks.mypy_result()  # started in the background at collection (style_checks.py)
    assert code == 0, output
