"""``overlord task ...`` and ``overlord datasource ...``: the client from a terminal.

Tables for people, ``--json`` for scripts. Exit codes say what went wrong without parsing text:
0 ok, 1 task failed, 2 usage or bad input, 3 not found, 4 cannot connect, 5 service error,
6 wait timed out.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from overlord.client import Backoff, Client, WaitPolicy, errors
from overlord.client.classify import explain_failure
from overlord.client.client import DEFAULT_URL
from overlord.client.models import DataSegment, Submission, TaskReport, TaskStatus, WaitResult

EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_SERVICE_ERROR = 5
EXIT_TIMEOUT = 6


def _interactive_client(url: str) -> Client:
    """A client for a person watching: polls back off to at most 2 s, not the library's 10 s."""
    return Client(url, wait_policy=WaitPolicy(poll=Backoff(initial=0.25, max_interval=2.0, min_interval=0.05)))


make_client: Callable[[str], Client] = _interactive_client
"""How commands build their client; tests replace it to inject a transport and a fake clock."""

task_app = typer.Typer(help="Submit, inspect and stop tasks.", no_args_is_help=True)
datasource_app = typer.Typer(help="Data sources and their segments.", no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", envvar="OVERLORD_URL", help="Overlord base URL (env OVERLORD_URL).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
TaskId = Annotated[str, typer.Argument(help="Task id.")]
DataSourceArg = Annotated[str, typer.Argument(help="Data source name.")]


def _out() -> Console:
    # Piped output has no terminal width: use $COLUMNS when set (rich reads it), else a wide page
    # rather than rich's 80, so scripts that grep tables get whole rows.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 240
    return Console(highlight=False, soft_wrap=True, width=width)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> NoReturn:
    _err().print(f"[bold red]error:[/] {escape(message)}", markup=True)
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


@contextmanager
def _session(url: str) -> Iterator[Client]:
    """A client for one command; maps client errors to exit codes and one line on stderr."""
    try:
        with make_client(url) as client:
            yield client
    except typer.Exit:
        raise
    except errors.ServiceUnavailable as exc:
        _fail(f"cannot reach the Overlord at {url}: {exc}", EXIT_UNREACHABLE)
    except (errors.NotFoundError, errors.TaskLostError) as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
    except (errors.SpecValidationError, errors.BadRequest) as exc:
        _fail(str(exc), EXIT_USAGE)
    except errors.WaitTimeoutError as exc:
        _fail(str(exc), EXIT_TIMEOUT)
    except errors.TaskFailedError as exc:
        _fail(str(exc), EXIT_TASK_FAILED)
    except errors.ClientError as exc:
        _fail(str(exc), EXIT_SERVICE_ERROR)


# --- rendering --------------------------------------------------------------------------------


def _status_table(statuses: list[TaskStatus], width: int) -> Table:
    """One line per task; ids (copied into the next command) and states are always whole."""
    names = ["id", "state", "dataSource", "type", "duration", "created", "errorMsg", "location"]
    return _fit_table(names, [_status_cells(st) for st in statuses], width, whole=("id", "state"))


def _fit_table(names: list[str], rows: list[dict[str, str]], width: int, *, whole: tuple[str, ...]) -> Table:
    """A table that stays one line per row at ``width`` (80 columns included).

    Columns are kept in order while they fit (the ``whole`` ones always, never cut); the rest of
    a kept column's text is cut with an ellipsis rather than wrapped.
    """
    need = {name: max([len(name), *(len(r[name]) for r in rows)]) for name in names}
    shown: list[str] = []
    used = 0
    for name in names:
        # a column, its padding and divider; a column that may be cut asks for at most 40
        cost = (need[name] if name in whole else min(need[name], 40)) + 3
        if name in whole or used + cost <= width:
            shown.append(name)
            used += cost
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in shown:
        if name in whole or need[name] <= 40:
            table.add_column(name, no_wrap=True, min_width=need[name])
        else:
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=40)
    for r in rows:
        table.add_row(*(Text(r[name]) for name in shown))  # Text: "Task[x]" in a message is not markup
    return table


def _status_cells(st: TaskStatus) -> dict[str, str]:
    loc = st.location
    return {
        "id": st.id,
        "state": st.state,
        "type": st.type or "",
        "dataSource": st.data_source or "",
        "duration": f"{st.duration / 1000:.1f}s" if st.duration >= 0 else "",
        "created": st.created_time or "",
        "location": f"{loc.host}:{loc.port}" if loc and loc.host else "",
        "errorMsg": (st.error_msg or "").replace("\n", " "),
    }


def _status_lines(st: TaskStatus) -> Table:
    """One task's status as ``key  value`` lines (long values wrap in their column)."""
    cells = _status_cells(st)
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key in ("id", "state", "type", "dataSource", "created", "duration", "location"):
        table.add_row(key, Text(cells[key] or "-"))
    if st.group_id and st.group_id != st.id:
        table.add_row("groupId", Text(st.group_id))
    if st.error_msg:
        table.add_row("errorMsg", Text(st.error_msg))
    return table


_ROW_KEYS = ("processed", "processedBytes", "processedWithError", "unparseable", "thrownAway")


def _progress(status: TaskStatus, report: TaskReport | None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_row("task", status.id)
    table.add_row("state", status.state)
    table.add_row("ingestion", (report.ingestion_state if report else None) or "-")
    rows = report.build_segments if report else {}
    for key in _ROW_KEYS:
        if key in rows:
            table.add_row(key, f"{rows[key]:,}" if isinstance(rows[key], int) else str(rows[key]))
    return table


def _summary(status: TaskStatus, report: TaskReport | None, segments: list[DataSegment] | None = None) -> Table:
    table = _progress(status, report)
    if segments is not None:
        intervals = len({seg.interval for seg in segments})
        table.add_row("segments", f"{len(segments)} published in {intervals} interval{'s' * (intervals != 1)}")
    if status.duration >= 0:
        table.add_row("duration", f"{status.duration / 1000:.1f}s")
    warning = _nothing_ingested(report)
    if warning:
        table.add_row("[bold yellow]warning[/]", escape(warning))
    message = status.error_msg or (report.error_msg if report else None)
    if status.status_code == "FAILED":
        verdict = explain_failure(status, report)
        table.add_row("errorMsg", Text(message or "-"))
        table.add_row("failure", f"{verdict.kind} ({verdict.reason})")
    return table


def _nothing_ingested(report: TaskReport | None) -> str | None:
    """A warning when rows were read but none was kept: every one unparseable or thrown away."""
    rows = report.build_segments if report else {}
    processed, bad, dropped = (rows.get(k, 0) or 0 for k in ("processed", "unparseable", "thrownAway"))
    if processed or not (bad or dropped):
        return None
    return (
        f"no row was ingested: {bad:,} unparseable, {dropped:,} thrown away (outside the spec's intervals or "
        "filtered out); check timestampSpec, granularitySpec.intervals and transformSpec.filter"
    )


_INGESTION_TYPES = ("index_parallel", "index", "compact", "merge", "append", "same_interval_merge")


def _published(client: Client, status: TaskStatus, report: TaskReport | None) -> list[DataSegment] | None:
    """What a successful ingestion task published, for the summary.

    Druid answers ``/task/{id}/segments`` with a 404 nowadays, so: the data source's used segments
    versioned since the task was created (a segment's version is its lock's start time), unless
    the completion report counts them (``segmentsPublished``, then only the count is known).
    """
    if status.status_code != "SUCCESS" or status.type not in _INGESTION_TYPES or not status.data_source:
        return None
    try:
        found = client.segments(status.data_source)
    except errors.ClientError:
        return None
    mine = [seg for seg in found if status.created_time and seg.version >= status.created_time]
    counted = report.payload.get("segmentsPublished") if report else None
    if isinstance(counted, int) and counted != len(mine):
        return None  # the heuristic disagrees with the task's own count: show nothing rather than a wrong figure
    return mine


def _result_json(
    status: TaskStatus,
    report: TaskReport | None,
    kind: str | None = None,
    segments: list[DataSegment] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"task": status.id, "status": status.to_wire()}
    body["report"] = report.to_wire() if report else None
    if kind:
        body["failure"] = kind
    if segments is not None:
        body["segments"] = {"published": len(segments), "intervals": sorted({seg.interval for seg in segments})}
    warning = _nothing_ingested(report)
    if warning:
        body["warning"] = warning
    return body


# --- task commands ----------------------------------------------------------------------------


def _read_spec(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{path} is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(spec, dict) or "type" not in spec:
        _fail(f"{path} must hold a JSON object with a 'type'", EXIT_USAGE)
    return spec


@task_app.command()
def submit(
    spec_file: Annotated[str, typer.Argument(metavar="SPEC.json", help="Task spec file, or - for stdin.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the task to end, showing progress.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    task_id: Annotated[str | None, typer.Option("--id", help="Task id (default: derived from the spec).")] = None,
    attempt: Annotated[int, typer.Option(help="Rerun number: a new deterministic id after a failure.")] = 0,
    validate: Annotated[bool, typer.Option(help="Validate known spec types locally first.")] = True,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Submit a task (idempotent: the same spec attaches to the task already submitted)."""
    spec = _read_spec(spec_file)
    out = _out()
    with _session(url) as client:
        done = client.submission(spec, task_id=task_id, attempt=attempt, validate=validate)
        tid = done.task_id
        if done.attached and not as_json:
            _err().print(_attached_note(done), markup=False)
        if not wait:
            answer: dict[str, Any] = {"task": tid, **({"attached": True} if done.attached else {})}
            _print_json(answer) if as_json else out.print(tid)
            return
        if not as_json:
            out.print(f"submitted [bold]{tid}[/]")
        result, failure = _wait_with_progress(client, tid, timeout, out, quiet=as_json)
        status = result.status
        report = result.report
        segments = _published(client, status, report)
        if as_json:
            _print_json(_result_json(status, report, failure.kind if failure else None, segments))
        else:
            out.print(_summary(status, report, segments))
        if failure is not None:
            raise typer.Exit(EXIT_TASK_FAILED)


def _attached_note(done: Submission) -> str:
    """One line saying the submit queued nothing new, and how to run the spec again."""
    st = done.existing
    facts = [st.state] if st is not None else []
    if st is not None and st.created_time:
        facts.append(f"created {st.created_time}")
    if st is not None and st.duration >= 0:
        facts.append(f"ran {st.duration / 1000:.1f}s")
    state = f" ({', '.join(facts)})" if facts else ""
    again = (
        f"use --attempt {done.next_attempt} to run it again"
        if done.next_attempt is not None
        else "use another --id to run it again"
    )
    return f"attached to existing task {done.task_id}{state}; {again}"


def _wait_with_progress(
    client: Client, task_id: str, timeout: float | None, out: Console, *, quiet: bool
) -> tuple[WaitResult, errors.TaskFailedError | None]:
    """Wait, redrawing row stats live on a terminal, or printing state changes elsewhere."""
    last_state: list[str] = []

    def on_plain(status: TaskStatus, report: TaskReport | None) -> None:
        if quiet or (last_state and last_state[-1] == status.state) or status.is_terminal:
            return
        last_state.append(status.state)
        processed = report.build_segments.get("processed") if report else None
        suffix = f" (processed {processed:,})" if isinstance(processed, int) else ""
        out.print(f"{task_id}: {status.state}{suffix}")

    live_display = out.is_terminal and not quiet
    grace = client.wait_policy.not_found_grace  # the task was just submitted

    def run(hook: Callable[[TaskStatus, TaskReport | None], None]) -> tuple[WaitResult, Any]:
        try:
            return client.wait(task_id, timeout=timeout, not_found_grace=grace, on_update=hook, live_report=True), None
        except errors.TaskFailedError as exc:
            return WaitResult(status=exc.status, report=exc.report), exc

    if not live_display:
        return run(on_plain)
    with Live(console=out, transient=True, refresh_per_second=4) as live:
        return run(lambda status, report: live.update(_progress(status, report)))


@task_app.command("ls")
def list_tasks(
    state: Annotated[str | None, typer.Option(help="pending, waiting, running or complete.")] = None,
    datasource: Annotated[str | None, typer.Option(help="Only this data source.")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Only this task type.")] = None,
    max_tasks: Annotated[int | None, typer.Option("--max", help="At most this many complete tasks.")] = None,
    created: Annotated[str | None, typer.Option(help="Created within this ISO interval (a/b).")] = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """List tasks as a table."""
    if state is not None and state not in ("pending", "waiting", "running", "complete"):
        _fail(f"--state must be pending, waiting, running or complete, not {state!r}", EXIT_USAGE)
    with _session(url) as client:
        found = client.tasks(
            state=state, datasource=datasource, type=task_type, max=max_tasks, created_time_interval=created
        )
    if as_json:
        _print_json([st.to_wire() for st in found])
    else:
        out = _out()
        out.print(_status_table(found, out.width))


@task_app.command()
def status(task_id: TaskId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show one task's status."""
    with _session(url) as client:
        st = client.status(task_id)
    if as_json:
        _print_json(st.to_wire())
    else:
        _out().print(_status_lines(st))


@task_app.command()
def payload(task_id: TaskId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Print the stored task spec (always JSON)."""
    with _session(url) as client:
        body = client.payload(task_id)
    if as_json:
        typer.echo(json.dumps(body))
    else:
        _print_json(body)


@task_app.command()
def report(task_id: TaskId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show the task's live or completion report."""
    with _session(url) as client:
        rep = client.report(task_id)
    if as_json:
        _print_json(rep.to_wire())
        return
    stats = rep.row_stats.get("totals") if isinstance(rep.row_stats.get("totals"), dict) else rep.row_stats
    phases = {name: counts for name, counts in (stats or {}).items() if isinstance(counts, dict)}
    table = Table("rows", *phases, title=f"{task_id}: {rep.ingestion_state or '-'}")
    for key in _ROW_KEYS:
        if any(key in counts for counts in phases.values()):
            table.add_row(key, *(str(counts.get(key, "")) for counts in phases.values()))
    out = _out()
    out.print(table)
    if rep.error_msg:
        out.print(f"errorMsg: {rep.error_msg}")


@task_app.command()
def logs(
    task_id: TaskId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the task ends.")] = False,
    offset: Annotated[int | None, typer.Option(help="Start at this byte; negative: the last bytes.")] = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Print the task log (raw text; --json wraps it)."""
    with _session(url) as client:
        if follow:
            chunks = []
            for chunk in client.follow_log(task_id, offset=offset or 0):
                if as_json:
                    chunks.append(chunk)
                else:
                    typer.echo(chunk, nl=False)
                    sys.stdout.flush()
            text = "".join(chunks)
        else:
            text = client.log(task_id, offset=offset)
            if not as_json:
                typer.echo(text, nl=False)
    if as_json:
        _print_json({"task": task_id, "log": text})


@task_app.command()
def kill(task_id: TaskId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Shut a task down (a finished task is left as it is, and says so)."""
    with _session(url) as client:
        before = client.status(task_id)
        if before.is_terminal:
            if as_json:
                _print_json({"task": task_id, "alreadyFinished": True, "statusCode": str(before.status_code)})
            else:
                _out().print(f"task {task_id} had already finished ({before.state}); nothing to shut down")
            return
        tid = client.shutdown(task_id)
    _print_json({"task": tid}) if as_json else _out().print(f"shutdown requested for {tid}")


@task_app.command("kill-all")
def kill_all(datasource: DataSourceArg, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Shut down every active task of a data source."""
    with _session(url) as client:
        ds = client.shutdown_all(datasource)
    _print_json({"dataSource": ds}) if as_json else _out().print(f"shutdown requested for all tasks of {ds}")


@task_app.command("pending-segments-clean")
def pending_segments_clean(datasource: DataSourceArg, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Delete a data source's pending segments."""
    with _session(url) as client:
        n = client.delete_pending_segments(datasource)
    _print_json({"numDeleted": n}) if as_json else _out().print(f"deleted {n} pending segments of {datasource}")


# --- datasource commands ----------------------------------------------------------------------


@datasource_app.command("ls")
def datasource_ls(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List data sources that have segments."""
    with _session(url) as client:
        names = client.datasources()
    if as_json:
        _print_json(names)
    else:
        out = _out()
        for name in names:
            out.print(name)


@datasource_app.command("segments")
def datasource_segments(datasource: DataSourceArg, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List a data source's published segments."""
    with _session(url) as client:
        found = client.segments(datasource)
    if as_json:
        _print_json([seg.to_wire() for seg in found])
        return
    out = _out()
    out.print(segments_table(datasource, found, out.width))


def segments_table(datasource: str, found: list[DataSegment], width: int) -> Table:
    """A data source's segments, one line each at ``width``; interval and partition always whole
    (whole-day intervals written ``2015-09-12/2015-09-13`` below 120 columns)."""
    rows = []
    for seg in found:
        dims = seg.dimensions if isinstance(seg.dimensions, str) else ",".join(seg.dimensions)
        mets = seg.metrics if isinstance(seg.metrics, str) else ",".join(seg.metrics)
        part = seg.shard_spec.get("partitionNum", "")
        rows.append(
            {
                "interval": _short_interval(seg.interval) if width < 120 else seg.interval,
                "version": seg.version,
                "partition": str(part),
                "size": f"{seg.size:,}",
                "dimensions": dims,
                "metrics": mets,
            }
        )
    names = ["interval", "partition", "size", "version", "metrics", "dimensions"]
    table = _fit_table(names, rows, width, whole=("interval", "partition"))
    table.title = f"{datasource}: {len(found)} segment{'s' * (len(found) != 1)}"
    return table


def _short_interval(interval: str) -> str:
    """``2015-09-12/2015-09-13`` for whole UTC days (still ISO-8601), else the interval as given."""
    midnight = "T00:00:00.000Z"
    start, _, end = interval.partition("/")
    if start.endswith(midnight) and end.endswith(midnight):
        return f"{start.removesuffix(midnight)}/{end.removesuffix(midnight)}"
    return interval
