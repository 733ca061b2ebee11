import random
import re

import pytest

from overlord.core.task import (
    RunnerState,
    StatusCode,
    TaskRecord,
    check_transition,
    datasource_of,
    generate_id,
    task_type_for,
    validate_id,
)
from overlord.errors import IllegalTransition, InvalidSpec, UnsupportedTaskType


def test_generated_ids_look_like_druids():
    task_id = generate_id("index_parallel", "wikipedia", 1687554448226, random.Random(1))
    assert re.fullmatch(r"index_parallel_wikipedia_[a-z]{8}_2023-06-23T21:07:28\.226Z", task_id)
    assert re.fullmatch(r"noop_[a-z]{8}_1970-01-01T00:00:00\.000Z", generate_id("noop", None, 0))


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (RunnerState.WAITING, RunnerState.PENDING, True),
        (RunnerState.PENDING, RunnerState.RUNNING, True),
        (RunnerState.RUNNING, RunnerState.NONE, True),
        (RunnerState.WAITING, RunnerState.NONE, True),
        (RunnerState.WAITING, RunnerState.RUNNING, False),
        (RunnerState.RUNNING, RunnerState.PENDING, False),
        (RunnerState.NONE, RunnerState.RUNNING, False),
    ],
)
def test_state_machine(old, new, ok):
    if ok:
        check_transition("t", old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"Task\\[t\\] cannot move from {old} to {new}") as caught:
            check_transition("t", old, new)
        assert caught.value.http_status == 500 and caught.value.context == {"task_id": "t"}


def test_status_json_keeps_status_code_coarse():
    rec = TaskRecord("t", "t", "noop", "ds", 0, 0, runner_state=RunnerState.PENDING)
    js = rec.status_json()
    assert js["statusCode"] == js["status"] == "RUNNING" and js["runnerStatusCode"] == "PENDING"
    assert StatusCode.SUCCESS.is_complete and not StatusCode.RUNNING.is_complete


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "tab\there", "x" * 256, 5, None])
def test_validate_id_rejects(bad):
    with pytest.raises(InvalidSpec):
        validate_id(bad)


def test_validate_id_accepts_druid_ids():
    assert validate_id("index_parallel_wiki_abc_2023-06-23T21:07:28.226Z") == (
        "index_parallel_wiki_abc_2023-06-23T21:07:28.226Z"
    )
    assert validate_id("with space") == "with space"


def test_type_lookup_errors():
    import overlord.tasks  # noqa: F401

    with pytest.raises(InvalidSpec, match=r"Missing required field \[type\]"):
        task_type_for(None)
    with pytest.raises(UnsupportedTaskType, match=r"index_hadoop\] is not supported.*noop"):
        task_type_for("index_hadoop")
    assert task_type_for("noop").name == "noop"


def test_datasource_of_shapes():
    assert datasource_of({"dataSource": "a"}) == "a"
    assert datasource_of({"spec": {"dataSchema": {"dataSource": "b"}}}) == "b"
    assert datasource_of({"type": "noop"}) is None
