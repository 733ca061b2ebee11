"""``overlord quickstart``: Druid's quickstart tutorial in one command, against a running service.

It writes the sample data (rows generated in the shape of Druid's wikiticker sample by
``overlord.ingest.wikiticker``, no download) and an ingestion spec shaped like Druid's own
quickstart spec into a directory, submits the spec with live progress and lists the segments it
published. Without a running service it says how to start one. ``--data-only`` stops after
writing the files, for those who want to type the commands themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from overlord import client_cli
from overlord.client import errors
from overlord.client.client import DEFAULT_URL
from overlord.ingest import wikiticker

DATA_DIR = Path("quickstart") / "tutorial"
DATA_FILE = "wikiticker-2015-09-12-sampled.json.gz"
SPEC_FILE = "wikipedia-index.json"
DATA_SOURCE = "wikipedia"
DEFAULT_ROWS = 39_244  # as many as Druid's sample file holds
_DIMENSIONS: list[Any] = [
    "channel", "cityName", "comment", "countryIsoCode", "countryName", "isAnonymous", "isMinor", "isNew",
    "isRobot", "isUnpatrolled", "metroCode", "namespace", "page", "regionIsoCode", "regionName", "user",
    {"name": "added", "type": "long"}, {"name": "deleted", "type": "long"}, {"name": "delta", "type": "long"},
]  # fmt: skip


def quickstart_spec(base_dir: Path) -> dict[str, Any]:
    """Druid's quickstart spec (``quickstart/tutorial/wikipedia-index.json``) reading ``base_dir``.

    The path is absolute: the service resolves a relative ``baseDir`` against the directory it
    was started in, which need not be where the quickstart ran.
    """
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": DATA_SOURCE,
                "dimensionsSpec": {"dimensions": _DIMENSIONS},
                "timestampSpec": {"column": "time", "format": "iso"},
                "metricsSpec": [],
                "granularitySpec": {
                    "type": "uniform",
                    "segmentGranularity": "day",
                    "queryGranularity": "none",
                    "intervals": ["2015-09-12/2015-09-13"],
                    "rollup": False,
                },
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "baseDir": str(base_dir), "filter": DATA_FILE},
                "inputFormat": {"type": "json"},
                "appendToExisting": False,
            },
            "tuningConfig": {"type": "index_parallel", "maxRowsPerSegment": 5_000_000, "maxRowsInMemory": 25_000},
        },
    }


def write_files(directory: Path, rows: int) -> tuple[Path, Path]:
    """The sample data and the spec under ``directory``; returns their paths."""
    data_dir = (directory / DATA_DIR).resolve()
    data = wikiticker.write_file(data_dir / DATA_FILE, rows)
    spec = directory.resolve() / SPEC_FILE
    spec.write_text(json.dumps(quickstart_spec(data_dir), indent=2) + "\n", encoding="utf-8")
    return data, spec


def _sql_command_exists() -> bool:
    """Whether this build has ``overlord sql`` (the quickstart then shows a first query)."""
    from overlord.cli import app

    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    return "sql" in names


def quickstart(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the sample data and the spec (created if missing).")
    ] = Path("."),
    rows: Annotated[int, typer.Option(min=1, help="How many sample rows to generate.")] = DEFAULT_ROWS,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="Only write the data and the spec; print the commands to run.")
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    url: client_cli.Url = DEFAULT_URL,
) -> None:
    """Load Druid's quickstart data: generate sample wikiticker rows, write a spec, ingest, list segments.

    The rows are generated locally in the shape of Druid's wikiticker sample
    (overlord.ingest.wikiticker), into DIRECTORY/quickstart/tutorial/; the spec is
    DIRECTORY/wikipedia-index.json. Needs a running service (overlord start) that may read
    DIRECTORY: start it in DIRECTORY or a parent of it.
    """
    out = client_cli._out()
    directory.mkdir(parents=True, exist_ok=True)
    data, spec_path = write_files(directory, rows)
    out.print(f"wrote {rows:,} generated sample rows to {data}")
    out.print(f"wrote the ingestion spec {spec_path}")
    submit_cmd = f"overlord task submit {spec_path} --wait"
    if data_only:
        out.print("\nnext, with a service running (overlord start, from this directory or a parent):")
        for cmd in (submit_cmd, "overlord task ls", f"overlord datasource segments {DATA_SOURCE}"):
            out.print(f"    {cmd}")
        return
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    with client_cli._session(url) as client:
        try:
            client.health()
        except errors.ServiceUnavailable:
            client_cli._err().print(
                f"no Overlord answers at {url}. Start one in another terminal, where it may read "
                f"{directory.resolve()}:\n    cd {directory.resolve()} && overlord start\n"
                f"then run this again, or: {submit_cmd}",
                markup=False,
            )
            raise typer.Exit(client_cli.EXIT_UNREACHABLE) from None
        try:
            done = client.submission(spec)
        except errors.BadRequest as exc:
            if "allowed directories" in str(exc) or "data directory" in str(exc):
                client_cli._fail(
                    f"{exc}\nthe service may only read below the directory it was started in: start it in "
                    f"{directory.resolve()} (or a parent), or allow the folder: "
                    f"overlord_ingest_allowedDirs={data.parent} overlord start",
                    client_cli.EXIT_USAGE,
                )
            raise
        if done.attached:
            client_cli._err().print(client_cli._attached_note(done), markup=False)
        out.print(f"submitted [bold]{done.task_id}[/] to {client.url}")
        result, failure = client_cli._wait_with_progress(client, done.task_id, timeout, out, quiet=False)
        segments = client_cli._published(client, result.status, result.report)
        out.print(client_cli._summary(result.status, result.report, segments))
        if failure is not None:
            raise typer.Exit(client_cli.EXIT_TASK_FAILED)
        found = client.segments(DATA_SOURCE)
    out.print(client_cli.segments_table(DATA_SOURCE, found, out.width))
    out.print("\nnext:")
    if _sql_command_exists():
        out.print(f'    overlord sql "SELECT channel, COUNT(*) AS edits FROM {DATA_SOURCE} GROUP BY 1 ORDER BY 2 DESC"')
    out.print(f"    overlord task ls --datasource {DATA_SOURCE}")
    out.print(f"    overlord datasource segments {DATA_SOURCE}")
