"""``overlord sql``: Druid SQL from a terminal.

A query prints as a table for people, or ``--format csv|json`` for scripts. An ``INSERT`` or
``REPLACE`` (SQL-based ingestion) is submitted to ``/druid/v2/sql/task`` instead; ``--wait`` then
follows the controller task with the same live progress as ``overlord task submit --wait``.
Exit codes are those of ``overlord task``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from overlord import client_cli
from overlord.client.client import DEFAULT_URL

FORMATS = ("table", "csv", "json")


def _read_query(query: str | None, file: str | None) -> str:
    if (query is None) == (file is None):
        client_cli._fail("give either a QUERY or --file (use --file - for stdin)", client_cli.EXIT_USAGE)
    if file is not None:
        try:
            return sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            client_cli._fail(f"cannot read {file}: {exc.strerror or exc}", client_cli.EXIT_USAGE)
    assert query is not None
    return query


def _context(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse as JSON (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            client_cli._fail(f"--context takes key=value, got [{pair}]", client_cli.EXIT_USAGE)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _table(rows: list[list[Any]]) -> Table:
    names, sql_types, *data = rows
    table = Table(*[f"{n}\n[dim]{t}[/]" for n, t in zip(names, sql_types, strict=True)], show_lines=False)
    for row in data:
        table.add_row(*["[dim]null[/]" if v is None else str(v) for v in row])
    return table


def sql(
    query: Annotated[str | None, typer.Argument(help="The SQL statement (or use --file).")] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Read the statement from a file (- for stdin).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table (default), csv or json.")] = "table",
    wait: Annotated[bool, typer.Option("--wait", help="INSERT/REPLACE: wait for the task, showing progress.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    context: Annotated[list[str] | None, typer.Option("--context", "-c", help="Query context key=value.")] = None,
    url: client_cli.Url = DEFAULT_URL,
) -> None:
    """Run a Druid SQL query, or submit SQL-based ingestion (INSERT/REPLACE)."""
    if fmt not in FORMATS:
        client_cli._fail(f"--format must be one of {', '.join(FORMATS)}", client_cli.EXIT_USAGE)
    text = _read_query(query, file)
    ctx = _context(context or [])
    out = client_cli._out()
    with client_cli._session(url) as client:
        from overlord.sql.dialect import is_ingestion  # sqlglot loads only when a query is sent

        if is_ingestion(text):
            task_id = client.sql_task(text, context=ctx)
            as_json = fmt == "json"
            if not wait:
                client_cli._print_json({"taskId": task_id}) if as_json else out.print(task_id)
                return
            if not as_json:
                out.print(f"submitted [bold]{task_id}[/]")
            result, failure = client_cli._wait_with_progress(client, task_id, timeout, out, quiet=as_json)
            if as_json:
                kind = failure.kind if failure else None
                client_cli._print_json(client_cli._result_json(result.status, result.report, kind))
            else:
                out.print(client_cli._summary(result.status, result.report))
            if failure is not None:
                raise typer.Exit(client_cli.EXIT_TASK_FAILED)
            return
        if fmt == "csv":
            body = client.sql(text, context=ctx, result_format="csv", header=True)
            typer.echo(str(body).rstrip("\n"))
        elif fmt == "json":
            client_cli._print_json(client.sql(text, context=ctx))
        else:
            rows = client.sql(text, context=ctx, result_format="array", header=True, sql_types_header=True)
            out.print(_table(rows))
