"""TaskInfo field order, list shapes, filter_path, the cat table, action names and error bodies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from overlord.api.elasticsearch.cat import cat_table, help_text
from overlord.api.elasticsearch.errors import EsError
from overlord.api.elasticsearch.mapping import action_for, describe
from overlord.api.elasticsearch.params import TaskId
from overlord.api.elasticsearch.render import EsTask, apply_filter_path, group_parents, list_body
from overlord.api.elasticsearch.state import NodeInfo, load_node_id

NODE = NodeInfo("nodeAAAAid", "box1", "box1.local", "127.0.0.1", 8090)
STATE = SimpleNamespace(node=NODE)


def task(number: int, parent: int | None = None, start: int = 1000, **kw: object) -> EsTask:
    base: dict = dict(
        node=NODE.id, number=number, type="persistent", action="indexer:admin/noop", start_ms=start,
        running_ns=1_500_000_000, cancellable=True, cancelled=False, headers={},
        parent=TaskId(NODE.id, parent) if parent else None,
    )  # fmt: skip
    base.update(kw)
    return EsTask(**base)


def test_taskinfo_fields_in_es_order():
    full = task(2, parent=1, status={"s": 1}, description="d", headers={"X-Opaque-Id": "o"})
    assert list(full.to_json()) == [
        "node", "id", "type", "action", "status", "description", "start_time_in_millis",
        "running_time_in_nanos", "cancellable", "cancelled", "parent_task_id", "headers",
    ]  # fmt: skip
    plain = task(1, cancellable=False).to_json()
    assert list(plain) == [
        "node", "id", "type", "action", "start_time_in_millis", "running_time_in_nanos", "cancellable", "headers",
    ]  # fmt: skip
    assert plain["headers"] == {}
    human = task(1).to_json(human=True)
    assert human["start_time"] == "1970-01-01T00:00:01.000Z" and human["running_time"] == "1.5s"
    assert list(human).index("start_time") < list(human).index("start_time_in_millis")


def test_group_by_parents_nests_children_and_lifts_orphans():
    tasks = [task(1), task(2, parent=1), task(3, parent=2), task(4, parent=99)]
    body = list_body(STATE, tasks, "parents")  # type: ignore[arg-type]
    top = body["tasks"]
    assert list(top) == [f"{NODE.id}:1", f"{NODE.id}:4"]
    assert "children" not in top[f"{NODE.id}:4"]
    child = top[f"{NODE.id}:1"]["children"][0]
    assert child["id"] == 2 and child["children"][0]["id"] == 3
    assert [g[0].number for g in group_parents(tasks)] == [1, 4]


def test_group_by_nodes_and_none():
    body = list_body(STATE, [task(1)], "nodes", node_failures=[{"type": "x"}])  # type: ignore[arg-type]
    assert list(body) == ["node_failures", "nodes"]
    node = body["nodes"][NODE.id]
    assert list(node) == ["name", "transport_address", "host", "ip", "roles", "tasks"]
    assert node["ip"] == "127.0.0.1:8090" and list(node["tasks"]) == [f"{NODE.id}:1"]
    assert list_body(STATE, [task(1)], "none")["tasks"][0]["id"] == 1  # type: ignore[arg-type]
    assert list_body(STATE, [], "nodes") == {"nodes": {}}  # type: ignore[arg-type]


def test_filter_path_includes_wildcards_and_excludes():
    body = {"nodes": {"n1": {"name": "a", "tasks": {"t1": {"id": 1, "action": "x"}, "t2": {"id": 2, "action": "y"}}}}}
    assert apply_filter_path(body, "nodes.*.tasks.*.id") == {
        "nodes": {"n1": {"tasks": {"t1": {"id": 1}, "t2": {"id": 2}}}}
    }
    assert apply_filter_path(body, "**.action") == {
        "nodes": {"n1": {"tasks": {"t1": {"action": "x"}, "t2": {"action": "y"}}}}
    }
    assert apply_filter_path(body, "-nodes.*.tasks") == {"nodes": {"n1": {"name": "a"}}}
    assert apply_filter_path(body, "nothing") == {}
    assert apply_filter_path({"tasks": [{"id": 1, "x": 2}]}, "tasks.id") == {"tasks": [{"id": 1}]}


def test_cat_text_table_defaults_verbose_and_padding():
    rows = [task(1, start=2000), task(2, parent=1, start=3000), task(3, start=1000, action="cluster:x")]
    text = cat_table(rows, NODE, {"v": ""}, as_json=False)
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[0].split() == ["action", "task_id", "parent_task_id", "type", "start_time", "timestamp",
                                "running_time", "ip", "node"]  # fmt: skip
    assert [ln.split()[1] for ln in lines[1:]] == [f"{NODE.id}:3", f"{NODE.id}:1", f"{NODE.id}:2"]
    assert lines[2].split()[2] == "-" and lines[3].split()[2] == f"{NODE.id}:1"
    assert not any(ln.endswith(" ") for ln in lines)
    assert len({ln.index(f"{NODE.id}:") for ln in lines[1:]}) == 1  # columns aligned


def test_cat_h_aliases_sort_time_units_and_json_strings():
    rows = [task(1, start=2000, headers={"X-Opaque-Id": "me"}), task(2, start=1000)]
    out = cat_table(rows, NODE, {"h": "id,ti,x_opaque_id,time,ni", "s": "id:desc", "time": "ms"}, as_json=True)
    assert out == [
        {"id": "2", "ti": f"{NODE.id}:2", "x_opaque_id": "-", "time": "1500000000", "ni": "node"},
        {"id": "1", "ti": f"{NODE.id}:1", "x_opaque_id": "me", "time": "1500000000", "ni": "node"},
    ]
    out = cat_table(rows, NODE, {"h": "id,running_time", "time": "ms", "full_id": ""}, as_json=True)
    assert out[0]["running_time"] == "1500"
    with pytest.raises(EsError) as err:
        cat_table(rows, NODE, {"s": "bogus"}, as_json=False)
    assert err.value.status == 400 and "Unable to sort by unknown sort key `bogus`" in err.value.reason
    detailed = cat_table([task(1, description="hello")], NODE, {"detailed": "", "h": "desc"}, as_json=True)
    assert detailed == [{"desc": "hello"}]


def test_cat_help_lists_columns_with_aliases():
    text = help_text(False)
    assert text.splitlines()[1].split("|")[0].strip() == "action"
    timestamp = next(line for line in text.splitlines() if line.startswith("timestamp "))
    assert [part.strip() for part in timestamp.split("|")] == ["timestamp", "ts,hms,hhmmss", "start time in HH:MM:SS"]
    assert "description" in help_text(True) and "description" not in text


def test_action_names_are_stable_and_wildcard_friendly():
    assert action_for("index_parallel") == "indexer:data/write/index_parallel"
    assert action_for("single_phase_sub_task") == "indexer:data/write/index_parallel/single_phase_sub_task"
    assert action_for("partial_index_generate").startswith("indexer:data/write/index_parallel/")
    assert action_for("noop") == "indexer:admin/noop"
    assert action_for("something_new") == "indexer:task/something_new"


def test_description_names_task_datasource_interval_and_input():
    payload = {
        "spec": {
            "dataSchema": {"dataSource": "wiki", "granularitySpec": {"intervals": ["2015-09-12/2015-09-13"]}},
            "ioConfig": {"inputSource": {"type": "local", "baseDir": "/data", "filter": "*.json"}},
        }
    }
    text = describe("t1", "index_parallel", "wiki", payload)
    assert text == (
        "task[t1], type[index_parallel], dataSource[wiki], interval[2015-09-12/2015-09-13], "
        "input[local baseDir[/data] filter[*.json]]"
    )
    assert describe("t2", "noop", None, None) == "task[t2], type[noop]"


def test_error_body_shape():
    err = EsError("bad", caused_by={"type": "number_format_exception", "reason": "x"})
    assert err.body() == {
        "error": {
            "root_cause": [{"type": "illegal_argument_exception", "reason": "bad"}],
            "type": "illegal_argument_exception",
            "reason": "bad",
            "caused_by": {"type": "number_format_exception", "reason": "x"},
        },
        "status": 400,
    }


def test_node_id_is_written_once(tmp_path):
    first = load_node_id(tmp_path)
    assert len(first) == 22 and load_node_id(tmp_path) == first
    assert (tmp_path / "node_id").read_text().strip() == first
