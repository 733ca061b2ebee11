"""``GET /_nodes``: Elasticsearch's nodes info, listing this Overlord and every worker of a cluster runner.

Listing tasks by node shows only the nodes that run a listed task; here every node is listed, with its
task slots and those in use as ``attributes``. Only the node fields common to every metric are served
(Overlord has no JVM, thread pools or plugins to describe), so a metric path returns the same fields.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.elasticsearch.params import check_params, node_selected, split_list
from overlord.api.elasticsearch.render import INHERITED_HEADERS, json_response
from overlord.api.elasticsearch.state import Cluster, NodeInfo, es_state, es_version_info

NODES_PARAMS = frozenset({"timeout", "flat_settings", "master_timeout"})
METRICS = frozenset(
    {"_all", "_none", "settings", "os", "process", "jvm", "thread_pool", "transport", "http", "plugins", "ingest",
     "aggregations", "indices", "remote_cluster_server"}
)  # fmt: skip


def node_json(node: NodeInfo) -> dict[str, Any]:
    """A node of the nodes info response; ``ip`` is the bare address here (in a task list it has the port)."""
    version = es_version_info()
    out: dict[str, Any] = {
        "name": node.name,
        "transport_address": node.transport_address,
        "host": node.host,
        "ip": node.ip,
        "version": version["number"],
        "build_flavor": version["build_flavor"],
        "build_type": version["build_type"],
        "build_hash": version["build_hash"],
        "roles": list(node.roles),
    }
    if node.attributes:
        out["attributes"] = dict(node.attributes)
    return out


def _selected(specs: list[str], n: NodeInfo, *, local: bool) -> bool:
    return node_selected(specs, node_id=n.id, name=n.name, host=n.host, ip=n.ip, roles=n.roles, local=local)


def nodes_body(cluster: Cluster, specs: list[str]) -> dict[str, Any]:
    chosen = [n for n in cluster.nodes if _selected(specs, n, local=n is cluster.local)]
    return {
        "_nodes": {"total": len(chosen), "successful": len(chosen), "failed": 0},
        "cluster_name": "overlord",
        "nodes": {n.id: node_json(n) for n in chosen},
    }


async def nodes_info(request: Request) -> Response:
    params = dict(request.query_params)
    check_params(request.url.path, params, NODES_PARAMS)
    specs = split_list(request.path_params.get("node_id"))
    if specs and all(s in METRICS for s in specs):
        specs = []  # /_nodes/{metric}: every node, with the fields we have
    state = es_state(request.app)
    headers = {name: request.headers[name] for name in INHERITED_HEADERS if name in request.headers}
    with state.transport_task("cluster:monitor/nodes/info", headers):
        body = nodes_body(state.cluster(), specs)
    return json_response(params, body)


def routes() -> list[Route]:
    return [
        Route("/_nodes", nodes_info, methods=["GET"]),
        Route("/_nodes/{node_id}", nodes_info, methods=["GET"]),
        Route("/_nodes/{node_id}/{metric}", nodes_info, methods=["GET"]),
    ]
