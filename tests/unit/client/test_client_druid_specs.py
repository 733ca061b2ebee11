"""The client accepts exactly what the server accepts: Druid's own quickstart spec, every tuning field.

Local validation runs the server's submit-time validator; when it refuses, the message says how to
skip it. The CLI path goes through typer's CliRunner against the fake service.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from client_fakes import FAST_RETRY, FakeOverlord, index_spec
from typer.testing import CliRunner

from overlord import client_cli
from overlord.client import Client, IndexParallelTask, SpecValidationError, parse_spec
from overlord.client.specs import TuningConfig

DRUID_QUICKSTART = Path(__file__).parents[2] / "data" / "druid" / "wikipedia-index.json"
runner = CliRunner()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, fake: FakeOverlord) -> None:
    monkeypatch.setattr(client_cli, "make_client", lambda url: Client(url, transport=fake.transport, retry=FAST_RETRY))


def quickstart() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(DRUID_QUICKSTART.read_text())
    return spec


def test_druids_quickstart_spec_passes_local_validation() -> None:
    spec = quickstart()
    assert spec["spec"]["tuningConfig"]["maxRowsPerSegment"] == 5000000  # the field that was refused
    model = parse_spec(spec)
    assert isinstance(model, IndexParallelTask)
    assert model.to_druid()["spec"]["tuningConfig"] == spec["spec"]["tuningConfig"]


def test_client_submit_sends_druids_quickstart_spec_as_written(client: Client, fake: FakeOverlord) -> None:
    tid = client.submit(quickstart())
    sent = fake.tasks[tid].payload
    assert {k: v for k, v in sent.items() if k != "id"} == quickstart()


def test_cli_submits_druids_quickstart_spec(cli: None, fake: FakeOverlord) -> None:
    result = runner.invoke(client_cli.task_app, ["submit", str(DRUID_QUICKSTART)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() in fake.tasks


@pytest.mark.parametrize(
    "tuning",
    [
        {"type": "index_parallel", "maxRowsPerSegment": 1000, "maxTotalRows": 5000},
        {"type": "index_parallel", "numShards": 2, "partitionDimensions": ["page"]},
        {"type": "index_parallel", "indexSpec": {"bitmap": {"type": "roaring"}}},
        {"type": "index_parallel", "splitHintSpec": {"type": "maxSize", "maxSplitSize": 1000}},
        {"type": "index_parallel", "maxRetry": 3, "maxNumConcurrentSubTasks": 2},
        {"type": "index_parallel", "partitionsSpec": {"type": "hashed", "numShards": 2}},
        {"type": "index", "maxRowsInMemory": 1000, "pushTimeout": 0},
    ],
)
def test_every_tuning_field_the_server_takes_passes(tuning: dict[str, Any], client: Client, fake: FakeOverlord) -> None:
    spec = index_spec()
    spec["spec"]["tuningConfig"] = tuning
    assert parse_spec(spec).to_druid()["spec"]["tuningConfig"] == tuning
    client.submit(spec)
    assert len(fake.tasks) == 1


def test_typed_tuning_config_has_the_legacy_partition_fields() -> None:
    tc = TuningConfig(max_rows_per_segment=10, max_total_rows=100, split_hint_spec={"type": "maxSize"})
    assert tc.to_druid() == {
        "type": "index_parallel",
        "maxRowsPerSegment": 10,
        "maxTotalRows": 100,
        "splitHintSpec": {"type": "maxSize"},
    }
    # a Druid field the model does not list passes through as written; the server's rules judge it
    assert TuningConfig.model_validate({"maxPendingPersists": 0}).to_druid()["maxPendingPersists"] == 0


def test_what_the_server_refuses_is_refused_with_how_to_skip(
    cli: None, client: Client, fake: FakeOverlord, tmp_path: Path
) -> None:
    spec = quickstart()
    spec["spec"]["tuningConfig"]["maxRowsPerSegment"] = 0
    with pytest.raises(SpecValidationError) as info:
        client.submit(spec)
    assert info.value.field == "spec.tuningConfig.maxRowsPerSegment"
    assert "validate=False" in str(info.value) and "--no-validate" in str(info.value)
    assert fake.requests == []
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    refused = runner.invoke(client_cli.task_app, ["submit", str(path)])
    assert refused.exit_code == client_cli.EXIT_USAGE
    assert "--no-validate" in refused.stderr
    sent = runner.invoke(client_cli.task_app, ["submit", str(path), "--no-validate"])
    assert sent.exit_code == 0, sent.output
    assert len(fake.tasks) == 1


def test_validation_never_changes_the_spec() -> None:
    spec = quickstart()
    before = copy.deepcopy(spec)
    parse_spec(spec)
    assert spec == before
