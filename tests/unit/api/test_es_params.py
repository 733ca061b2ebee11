"""Elasticsearch's parameter rules, reproduced: booleans, time values, task ids, node specs, unknown params."""

from __future__ import annotations

import pytest

from overlord.api.elasticsearch.errors import EsError
from overlord.api.elasticsearch.params import (
    check_params,
    format_time_nanos,
    group_by,
    node_selected,
    parse_bool,
    parse_size,
    parse_task_id,
    parse_time_nanos,
    simple_match,
    split_list,
)


@pytest.mark.parametrize(("raw", "expected"), [(None, False), ("", True), ("true", True), ("false", False)])
def test_booleans_accept_bare_key_true_false(raw, expected):
    params = {} if raw is None else {"detailed": raw}
    assert parse_bool(params, "detailed") is expected


@pytest.mark.parametrize("raw", ["yes", "1", "True", "on"])
def test_other_booleans_are_rejected_in_es_words(raw):
    with pytest.raises(EsError) as err:
        parse_bool({"v": raw}, "v")
    assert err.value.reason == f"Failed to parse value [{raw}] as only [true] or [false] are allowed."
    assert err.value.status == 400 and err.value.type == "illegal_argument_exception"


@pytest.mark.parametrize(
    ("raw", "nanos"),
    [("7nanos", 7), ("3micros", 3000), ("5ms", 5_000_000), ("10s", 10**10), ("2m", 120 * 10**9), ("1h", 3600 * 10**9),
     ("1d", 86400 * 10**9), ("-1", -1), ("0", 0), ("10S", 10**10)],
)  # fmt: skip
def test_time_values_take_es_units(raw, nanos):
    assert parse_time_nanos(raw, "timeout") == nanos


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("10", "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized"),
        ("1w", "failed to parse setting [timeout] with value [1w] as a time value: unit is missing or unrecognized"),
        ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
        (
            "-5s",
            "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported",
        ),
        ("xs", "failed to parse [xs]"),
    ],
)
def test_bad_time_values_are_400_with_es_message(raw, reason):
    with pytest.raises(EsError) as err:
        parse_time_nanos(raw, "timeout")
    assert err.value.reason == reason and err.value.status == 400


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0s"),
        (47402, "47.4micros"),
        (13991383, "13.9ms"),
        (1_500_000_000, "1.5s"),
        (300 * 10**9, "5m"),
        (999, "999nanos"),
    ],
)
def test_durations_render_like_timevalue_tostring(nanos, text):
    assert format_time_nanos(nanos) == text


def test_task_ids_parse_and_malformed_ones_are_named():
    tid = parse_task_id("oTUltX4IQMOUUVeiohTt8A:124")
    assert tid is not None and tid.node == "oTUltX4IQMOUUVeiohTt8A" and tid.number == 124
    assert str(tid) == "oTUltX4IQMOUUVeiohTt8A:124"
    assert parse_task_id(None) is None and parse_task_id("") is None and parse_task_id("unset") is None
    for bad in ("foo", "node:abc", "a:1:2", "node:"):
        with pytest.raises(EsError) as err:
            parse_task_id(bad)
        assert err.value.reason == f"malformed task id {bad}"


def test_unknown_group_by_is_worded_as_es_does():
    assert group_by({}) == "nodes" and group_by({"group_by": "parents"}) == "parents"
    with pytest.raises(EsError) as err:
        group_by({"group_by": "x"})
    assert err.value.reason == "[group_by] must be one of [nodes], [parents] or [none] but was [x]"


def test_unrecognized_parameters_get_did_you_mean():
    check_params("/_tasks", {"detailed": "", "pretty": "", "filter_path": "x"}, {"detailed"})
    with pytest.raises(EsError) as err:
        check_params("/_tasks", {"detaild": ""}, {"detailed", "nodes"})
    assert (
        err.value.reason == "request [/_tasks] contains unrecognized parameter: [detaild] -> did you mean [detailed]?"
    )
    with pytest.raises(EsError) as err:
        check_params("/_tasks", {"zzz": "", "qqq": ""}, {"detailed"})
    assert err.value.reason == "request [/_tasks] contains unrecognized parameters: [qqq], [zzz]"


def test_node_specification():
    node = {
        "node_id": "abcDEF123",
        "name": "box1",
        "host": "box1.local",
        "ip": "10.0.0.5",
        "roles": ("ingest", "master"),
    }
    yes = [
        "_all",
        "*",
        "_local",
        "_master",
        "abcDEF123",
        "box1",
        "box*",
        "abc*",
        "10.0.0.5",
        "master:true",
        "ingest:true",
    ]
    for spec in yes:
        assert node_selected([spec], **node), spec
    for spec in ["other", "zzz*", "data:true", "_all,master:false", "rack:r1"]:
        assert not node_selected(split_list(spec), **node), spec
    assert node_selected([], **node)


def test_action_wildcards_and_lists():
    assert simple_match(["*index*"], "indexer:data/write/index_parallel")
    assert simple_match(["cluster:*", "indexer:admin/noop"], "indexer:admin/noop")
    assert not simple_match(["*search"], "indexer:admin/noop")
    assert simple_match(["a[1]?"], "a[1]?") and not simple_match(["a[1]*"], "a1x")
    assert split_list(" a, ,b ") == ["a", "b"]


def test_size_must_be_positive():
    assert parse_size({}) is None and parse_size({"size": "3"}) == 3
    for bad in ("0", "-1", "x"):
        with pytest.raises(EsError):
            parse_size({"size": bad})
