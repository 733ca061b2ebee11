"""Deterministic ids and attaching to an existing task after a lost answer."""

from __future__ import annotations

import pytest
from client_fakes import FakeOverlord, index_spec

from overlord.client import Client, SpecMismatchError, deterministic_task_id, is_same_spec, spec_hash


def test_id_depends_on_content_not_tuning_context_or_key_order() -> None:
    a = index_spec()
    b = index_spec()
    b["spec"]["tuningConfig"] = {"type": "index_parallel", "maxNumConcurrentSubTasks": 9}
    b["context"] = {"priority": 90}
    reordered = {"spec": dict(reversed(list(a["spec"].items()))), "type": "index_parallel"}
    assert deterministic_task_id(a) == deterministic_task_id(b) == deterministic_task_id(reordered)
    assert deterministic_task_id(a) != deterministic_task_id(index_spec(interval="2015-09-13/2015-09-14"))
    assert deterministic_task_id(a) != deterministic_task_id(index_spec(data='{"ts":2}'))
    assert deterministic_task_id(a) != deterministic_task_id(index_spec(ds="other"))
    assert deterministic_task_id(a) == f"index_parallel_wiki_{spec_hash(a)}"
    assert deterministic_task_id(a, attempt=2).endswith("_a2")


def test_id_of_compact_and_kill_and_unsafe_names() -> None:
    kill = {"type": "kill", "dataSource": "my ds/x", "interval": "2020/2021"}
    assert deterministic_task_id(kill).startswith("kill_my_ds_x_")


def test_resubmit_after_dropped_answer_attaches(client: Client, fake: FakeOverlord) -> None:
    fake.drop_answer("POST", "/task")
    tid = client.submit(index_spec())
    assert list(fake.tasks) == [tid]  # one task, not two
    assert fake.count("POST", "/task") == 2  # the retry got "already exists"
    assert fake.count("GET", f"/task/{tid}") == 0  # a derived id proves the content


def test_dropped_answer_with_chosen_id_checks_stored_spec(client: Client, fake: FakeOverlord) -> None:
    fake.drop_answer("POST", "/task")
    assert client.submit(index_spec(), task_id="mine") == "mine"
    assert fake.count("POST", "/task") == 2 and fake.count("GET", "/task/mine") == 1


def test_derived_id_attaches_even_if_the_service_normalised_the_spec(client: Client, fake: FakeOverlord) -> None:
    tid = client.submit(index_spec())
    fake.tasks[tid].payload["spec"]["dataSchema"]["granularitySpec"]["intervals"] = [
        "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z"
    ]
    assert client.submit(index_spec()) == tid


def test_resubmit_in_a_new_process_attaches(client: Client, fake: FakeOverlord) -> None:
    first = client.submit(index_spec())
    again = client.submit(index_spec())
    assert first == again and len(fake.tasks) == 1


def test_same_id_with_different_spec_is_refused(client: Client, fake: FakeOverlord) -> None:
    spec = index_spec()
    client.submit(spec, task_id="mine")
    with pytest.raises(SpecMismatchError) as info:
        client.submit(index_spec(ds="other"), task_id="mine")
    assert info.value.status_code == 400


def test_explicit_and_embedded_ids_win(client: Client, fake: FakeOverlord) -> None:
    assert client.submit(index_spec(), task_id="chosen") == "chosen"
    assert client.submit({**index_spec(ds="b"), "id": "embedded"}) == "embedded"
    assert fake.tasks["chosen"].payload["id"] == "chosen"


def test_rerun_after_failure_uses_a_new_deterministic_id(client: Client, fake: FakeOverlord) -> None:
    first = client.submit(index_spec())
    rerun = client.submit(index_spec(), attempt=1)
    assert rerun == f"{first}_a1" and len(fake.tasks) == 2


def test_same_spec_tolerates_server_defaults() -> None:
    ours = index_spec()
    stored = index_spec()
    stored["spec"]["ioConfig"]["appendToExisting"] = False
    stored["spec"]["dataSchema"]["timestampSpec"]["missingValue"] = None
    stored["context"] = {"forceTimeChunkLock": True}
    assert is_same_spec(ours, stored)
    assert not is_same_spec(ours, index_spec(interval="2016-01-01/2016-01-02"))
    changed = index_spec()
    changed["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"] = ["page", "user"]
    assert not is_same_spec(ours, changed)
    assert is_same_spec({"type": "x", "n": 1}, {"type": "x", "n": 1.0})
    assert not is_same_spec({"type": "x", "flag": True}, {"type": "x", "flag": 1})
