"""A ``local`` input that names nothing fails the task with the resolved path, never a 0-row SUCCESS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from overlord_harness import OverlordHarness

from overlord.errors import TaskFailure
from overlord.tasks import index, parallel


def spec(task_id: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "index_parallel",
        "id": task_id,
        "spec": {
            "dataSchema": {
                "dataSource": "ds",
                "timestampSpec": {"column": "ts", "format": "iso"},
                "granularitySpec": {"segmentGranularity": "day"},
            },
            "ioConfig": {"type": "index_parallel", "inputFormat": {"type": "json"}, "inputSource": source},
        },
    }


@pytest.mark.parametrize("run", [index.run, parallel.run])
def test_missing_base_dir_fails_naming_the_resolved_path(overlord: OverlordHarness, tmp_path: Path, run: Any) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(TaskFailure, match=rf"baseDir: directory '{missing}' does not exist"):
        overlord.run(run, spec("t1", {"type": "local", "baseDir": str(missing), "filter": "*.json"}))
    assert overlord.used() == []


def test_filter_matching_nothing_fails(overlord: OverlordHarness, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("x\n")
    with pytest.raises(TaskFailure, match=rf"filter: '\*.json' matches no file under '{tmp_path}'"):
        overlord.run(index.run, spec("t2", {"type": "local", "baseDir": str(tmp_path), "filter": "*.json"}))


def test_missing_file_in_files_fails(overlord: OverlordHarness, tmp_path: Path) -> None:
    with pytest.raises(TaskFailure, match=rf"files\[0\]: no such file '{tmp_path / 'gone.json'}'"):
        overlord.run(index.run, spec("t3", {"type": "local", "files": [str(tmp_path / "gone.json")]}))


def test_relative_base_dir_is_resolved_against_the_working_directory(
    overlord: OverlordHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = Path(os.path.realpath(tmp_path)) / "quickstart" / "tutorial"
    with pytest.raises(TaskFailure, match=rf"'{expected}' does not exist \(a relative path is resolved against"):
        overlord.run(index.run, spec("t4", {"type": "local", "baseDir": "quickstart/tutorial/", "filter": "*.gz"}))


def test_a_directory_in_files_fails_but_a_pipe_is_read(overlord: OverlordHarness, tmp_path: Path) -> None:
    with pytest.raises(TaskFailure, match=rf"files\[0\]: is a directory, not a file '{tmp_path}'"):
        overlord.run(index.run, spec("t5", {"type": "local", "files": [str(tmp_path)]}))
