"""A Dask worker pushes what a killed peon could not (its log, its report) to S3 task logs too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overlord.runner.toolbox import LOG_FILE, REPORT_FILE
from overlord.storage.s3 import S3Location
from tests.dask_cluster import require_distributed


def test_leftovers_of_a_killed_peon_go_to_s3_task_logs(s3_env: Any, tmp_path: Path) -> None:
    require_distributed()
    from overlord.runner.dask_worker import push_leftovers

    bucket = s3_env.new_bucket()
    uri = S3Location(bucket, "druid/indexing-logs", s3_env.endpoint, "us-east-1", path_style=True).uri
    (tmp_path / LOG_FILE).write_text("Running task[t1]\nkilled\n")
    (tmp_path / REPORT_FILE).write_text("{}")
    assert push_leftovers("t1", tmp_path, uri, None) is None
    assert s3_env.keys(bucket) == ["druid/indexing-logs/t1/log", "druid/indexing-logs/t1/report.json"]
    body = s3_env.client().get_object(Bucket=bucket, Key="druid/indexing-logs/t1/log")["Body"].read()
    assert body == b"Running task[t1]\nkilled\n"
