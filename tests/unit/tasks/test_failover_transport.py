"""A peon's calls outlive the Overlord that launched it: the other Overlords take them, redirects followed."""

from __future__ import annotations

import httpx
import pytest

from overlord.tasks.action_client import ActionClient, FailoverTransport, failover_transport


class Cluster(httpx.BaseTransport):
    """Overlords by host: ``down`` refuse connections; a follower answers 307 to the leader."""

    def __init__(self, leader: str, down: set[str]) -> None:
        self.leader = leader
        self.down = down
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.seen.append(host)
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if host != self.leader:
            location = str(request.url.copy_with(host=self.leader, port=8090))
            return httpx.Response(307, headers={"Location": location})
        return httpx.Response(200, json={"result": {"host": host, "body": request.read().decode()}})


def client(cluster: Cluster, *others: str) -> ActionClient:
    transport = FailoverTransport(["http://a:8090", *others], inner=cluster)
    return ActionClient("http://a:8090", "t1", transport=transport, retry_for_s=0)


def test_a_dead_overlord_is_replaced_by_the_next_one_and_the_choice_sticks() -> None:
    cluster = Cluster(leader="b", down={"a"})
    actions = client(cluster, "http://b:8090", "http://c:8090")
    assert actions.submit({"type": "lockList"}) == {"host": "b", "body": '{"task":"t1","action":{"type":"lockList"}}'}
    assert actions.submit({"type": "lockList"})["host"] == "b"
    assert cluster.seen == ["a", "b", "b"]  # the second call goes straight to the one that answered


def test_a_follower_redirects_and_the_post_is_replayed_on_the_leader() -> None:
    cluster = Cluster(leader="c", down={"a"})
    actions = client(cluster, "http://b:8090", "http://c:8090")
    assert actions.submit({"type": "lockList"}) == {"host": "c", "body": '{"task":"t1","action":{"type":"lockList"}}'}
    assert cluster.seen == ["a", "b", "c"]


def test_when_every_overlord_is_down_the_call_fails_as_before() -> None:
    actions = client(Cluster(leader="b", down={"a", "b"}), "http://b:8090")
    with pytest.raises(Exception, match="Overlord unreachable"):
        actions.submit({"type": "lockList"})


def test_without_other_overlords_httpx_default_transport_is_kept() -> None:
    assert failover_transport("http://a:8090", []) is None
    assert failover_transport("http://a:8090", ["http://a:8090"]) is None
    assert isinstance(failover_transport("http://a:8090", ["http://b:8090"]), FailoverTransport)
