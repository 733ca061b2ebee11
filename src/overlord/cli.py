"""The ``overlord`` command: ``start`` runs the service; ``task`` and ``datasource`` talk to one."""

from __future__ import annotations

import importlib
import logging
import signal
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from typer.main import TyperGroup, get_command

from overlord import __version__

# name -> (module, attribute, help): commands that talk to a running service, imported on first use.
# They bring in the client's pydantic models and rich (~0.25 s), which `overlord start` never needs.
_CLIENT_COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "sql": ("overlord.sql_cli", "sql", None),
    "quickstart": ("overlord.quickstart", "quickstart", None),
    "task": ("overlord.client_cli", "task_app", "Submit, watch and manage tasks on a running service."),
    "datasource": ("overlord.client_cli", "datasource_app", "Data sources and their segments."),
}


def _no_options() -> None:
    """The callback of the throwaway group a lazily loaded command is built under."""


class _LazyCommands(TyperGroup):
    """The top-level group, loading the client commands' modules only when one is run or listed.

    Click's documented lazy-subcommand pattern: ``start`` answers sooner, and ``--help`` still lists
    everything (listing imports them).
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *_CLIENT_COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _CLIENT_COMMANDS or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module, attribute, help_text = _CLIENT_COMMANDS[cmd_name]
        target = getattr(importlib.import_module(module), attribute)
        # Built as registering it on the app would: under a group, with no completion options of its own.
        holder = typer.Typer(add_completion=False)
        holder.callback()(_no_options)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=cmd_name, help=help_text)
        else:
            holder.command(cmd_name)(target)
        command = cast(TyperGroup, get_command(holder)).commands[cmd_name]
        self.commands[cmd_name] = command
        return command


app = typer.Typer(
    cls=_LazyCommands,
    help=(
        "Overlord: a small, fast task service for data ingestion (Druid's Tasks API, Elasticsearch's _tasks API).\n\n"
        "First steps: 'overlord start', then in another terminal 'overlord quickstart' (generates sample "
        "wikiticker data and a spec, ingests it, lists the segments)."
    ),
    no_args_is_help=True,
    add_completion=False,
)


EXIT_BAD_SETTINGS = 2
EXIT_PORT_IN_USE = 7


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Overlord: Druid's Tasks API and Elasticsearch's _tasks API over native batch ingestion."""


@app.command()
def start(
    host: Annotated[str | None, typer.Option(help="Address to listen on (druid.host). Default 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Port (druid.plaintextPort). Default 8090")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Metadata, deep storage and logs live here. Default ./var")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="A runtime.properties-style file of settings")] = None,
    capacity: Annotated[
        int | None, typer.Option(help="Worker slots (druid.worker.capacity). Default: CPU count")
    ] = None,
    metadata_url: Annotated[
        str | None, typer.Option(help="PostgreSQL URL for metadata, e.g. postgresql://user@host/db")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
    log_format: Annotated[
        str | None, typer.Option(help="plain (extra fields as \\[key=value]) or json (overlord.log.format)")
    ] = None,
) -> None:
    """Run the service in the foreground; stops cleanly on SIGTERM or Ctrl-C."""
    from overlord.config import load_settings
    from overlord.errors import ConfigError
    from overlord.listen import PortInUse, bind_listening_socket
    from overlord.log_format import configure_logging

    ignored: list[str] = []
    try:
        settings = load_settings(
            warnings=ignored,
            config_file=config,
            overrides={
                "host": host,
                "port": port,
                "data_dir": data_dir,
                "worker_capacity": capacity,
                "metadata_url": metadata_url,
                "log_format": log_format,
            },
        )
        configure_logging(settings.log_format, log_level)  # before the service logs anything
        for line in ignored:
            logging.getLogger("overlord.config").warning("%s: %s", config, line)
        # Listen before the service starts, so "started" is logged only once the port listens
        # and a busy port is reported before anything else is touched.
        sock = bind_listening_socket(settings.host, settings.port)
        if settings.runner_type == "local":  # its imports overlap ours below, on another core
            from overlord.runner import fork_server

            fork_server.start(s3="s3" in (settings.storage_type, settings.logs_type))
        import uvicorn

        from overlord.api.app import create_app
        from overlord.api.task_status import status_responder
        from overlord.http_protocol import CoalescingHttpToolsProtocol
        from overlord.service import Service

        service = Service(settings)
    except PortInUse as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_PORT_IN_USE) from None
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    # uvicorn shuts down gracefully, then re-raises the signal to the handler it found: make that
    # handler end the process with status 0, since stopping on SIGTERM or Ctrl-C is a clean stop.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    server_config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, one send() per small response; plain status polls answered by the protocol itself
        http=CoalescingHttpToolsProtocol.answering(status_responder(service)),
        ws="none",
        log_level=log_level.lower(),
        log_config=None,  # uvicorn's records go through the handler above, in the same format
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(server_config).run(sockets=[sock])


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
