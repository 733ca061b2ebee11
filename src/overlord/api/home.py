"""``GET /`` for people: the service's name, version and links to its main endpoints and docs.

``/`` is also Elasticsearch's cluster-info route, which its clients read when they connect, so the
answer depends on who asks (``wants_home_page``): an Elasticsearch client (its
``application/vnd.elasticsearch+json`` media type, its ``X-Elastic-Client-Meta`` header or an
``elasticsearch``/``elastic-transport`` user agent) gets the banner; a browser (``Accept`` naming
``text/html``) gets this page; anything else, ``curl`` with its ``Accept: */*`` included, gets the
banner too, as from Elasticsearch, since scripts probing a service expect JSON.
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from overlord import __version__

_ES_AGENTS = ("elasticsearch", "elastic-transport")

LINKS: tuple[tuple[str, str, str], ...] = (
    ("Druid Tasks API", "/druid/indexer/v1/tasks", "every task (GET /druid/indexer/v1/tasks)"),
    ("", "/druid/indexer/v1/runningTasks", "running tasks"),
    ("", "/druid/indexer/v1/workers", "worker slots"),
    ("", "/druid/coordinator/v1/metadata/datasources", "data sources with published segments"),
    ("Service", "/status", "version"),
    ("", "/status/health", "health check"),
    ("Elasticsearch _tasks API", "/_tasks?detailed&pretty", "tasks as Elasticsearch tasks"),
    ("", "/_cat/tasks?v", "the same, as a table"),
)
DOCS: tuple[tuple[str, str], ...] = (
    ("Druid's Tasks API", "https://druid.apache.org/docs/latest/api-reference/tasks-api"),
    ("Druid's native batch ingestion", "https://druid.apache.org/docs/latest/ingestion/native-batch"),
    (
        "Elasticsearch's task management API",
        "https://www.elastic.co/guide/en/elasticsearch/reference/current/tasks.html",
    ),
)


def wants_home_page(request: Request) -> bool:
    """True for a browser; False for an Elasticsearch client and for everything else (JSON banner)."""
    headers = request.headers
    accept = headers.get("accept", "").lower()
    agent = headers.get("user-agent", "").lower()
    if "vnd.elasticsearch" in accept or "x-elastic-client-meta" in headers or agent.startswith(_ES_AGENTS):
        return False
    return "text/html" in accept


def home_page(request: Request, *, node_name: str) -> Response:
    """The HTML page; HEAD gets its headers only."""
    rows = []
    for group, path, what in LINKS:
        rows.append(
            f"<tr><th>{escape(group)}</th><td><a href='{escape(path)}'><code>{escape(path)}</code></a></td>"
            f"<td>{escape(what)}</td></tr>"
        )
    docs = "".join(f"<li><a href='{escape(url)}'>{escape(name)}</a></li>" for name, url in DOCS)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Overlord {escape(__version__)}</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}}
th{{text-align:left;padding-right:1rem}}td{{padding:.15rem 1rem .15rem 0}}code{{font-size:.95em}}</style></head>
<body><h1>Overlord <small>{escape(__version__)}</small></h1>
<p>A task service for data ingestion: Apache Druid's Overlord (its Tasks API and native batch
ingestion into Parquet segments) and an Elasticsearch-compatible <code>_tasks</code> API.
Node <code>{escape(node_name)}</code>.</p>
<h2>Endpoints</h2><table>{"".join(rows)}</table>
<h2>Getting started</h2>
<pre>overlord quickstart            # sample data, a spec, an ingestion, its segments
overlord task submit spec.json --wait
overlord task ls</pre>
<h2>Documentation</h2><ul>{docs}</ul>
</body></html>
"""
    return HTMLResponse(body if request.method != "HEAD" else "", headers={"Vary": "Accept, User-Agent"})
