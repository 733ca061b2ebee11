"""Task ids, group ids, data sources and supervisor ids by Druid's rules: a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from overlord.core.ids import validate_id
from overlord.errors import InvalidSpec
from tests.api.conftest import Api, P, assert_druid_error, index_spec, sub_task_spec

pytestmark = pytest.mark.anyio

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("a/b", id="slash"),
    pytest.param("../../../../tmp/x", id="climb"),
    pytest.param("/../../tmp/x", id="absolute-climb"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\x01b", id="control"),
    pytest.param("a\x7fb", id="del"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\u2028b", id="line-separator"),
    pytest.param("a\ue000b", id="private-use"),
    pytest.param("x" * 256, id="256-ascii"),
    pytest.param("é" * 128, id="256-bytes-utf8"),
]


def _noop(**fields: Any) -> dict[str, Any]:
    return {"type": "noop", "runTime": 0, **fields}


SUBMITS = {
    "id": lambda bad: _noop(id=bad),
    "groupId": lambda bad: _noop(groupId=bad),
    "dataSource": lambda bad: _noop(dataSource=bad),
    "spec.dataSchema.dataSource": lambda bad: index_spec(data_source=bad),
    "supervisorTaskId": lambda bad: sub_task_spec([{"data": "{}"}], supervisor=bad),
}


@pytest.mark.parametrize("field", list(SUBMITS))
@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_names_are_refused_naming_the_field(shared_api: Api, field: str, bad: str) -> None:
    before = len((await shared_api.http.get(f"{P}/tasks")).json())
    r = await shared_api.http.post(f"{P}/task", json=SUBMITS[field](bad))
    body = assert_druid_error(r, 400, field)
    assert body["category"] == "INVALID_INPUT" and body["context"]["field"] == field
    assert len((await shared_api.http.get(f"{P}/tasks")).json()) == before


async def test_a_generated_id_over_255_bytes_is_refused_naming_id(shared_api: Api) -> None:
    r = await shared_api.http.post(f"{P}/task", json=_noop(dataSource="d" * 250))
    assert_druid_error(r, 400, "[id]", "255 bytes")


@pytest.mark.parametrize(
    "good", ["with space", "index_parallel_wiki_abc_2023-06-23T21:07:28.226Z", "a.b..c", "日本語", "x" * 255]
)
async def test_druid_style_names_are_accepted(shared_api: Api, good: str) -> None:
    r = await shared_api.http.post(f"{P}/task", json=_noop(id=good, groupId=good, dataSource=good, runTime=0))
    assert r.status_code == 200, r.text
    assert r.json() == {"task": good}
    status = await shared_api.http.get(f"{P}/task/{good}/status")
    assert status.status_code == 200 and status.json()["status"]["dataSource"] == good


@pytest.mark.parametrize("bad", BAD_IDS)
def test_validate_id_is_druids_idutils(bad: str) -> None:
    with pytest.raises(InvalidSpec, match=r"\[someField\]") as info:
        validate_id(bad, "someField")
    assert info.value.context == {"field": "someField"}
