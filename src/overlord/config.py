"""Settings, read the way Druid operators expect: Druid property names where Druid has one.

Precedence (highest first): command-line flags, environment variables, the config file
(Java-properties ``key=value`` lines, like Druid's ``runtime.properties``), built-in defaults.
Environment variables use Druid's container convention: ``druid_worker_capacity`` for
``druid.worker.capacity``; ``OVERLORD_DATA_DIR``, ``OVERLORD_HOST``, ``OVERLORD_PORT`` and
``OVERLORD_METADATA_URL`` are accepted as friendlier aliases.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from overlord.errors import ConfigError
from overlord.log_format import LOG_FORMATS, LogFormat

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_PERIOD = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse Druid's human-readable byte sizes: ``300GiB``, ``500m``, ``1000000``."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"Invalid size [{text}]: expected a number with an optional unit such as 300GiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_duration_ms(text: str | int) -> int:
    """Parse a duration given in milliseconds or as an ISO-8601 period (``PT1H``, ``P7D``)."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    m = _PERIOD.match(s)
    if not m or s.upper() in ("P", "PT"):
        raise ConfigError(f"Invalid duration [{text}]: expected milliseconds or an ISO-8601 period like PT1H")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return int(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)


def _parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"Invalid boolean [{text}]")


def _parse_log_format(text: str) -> LogFormat:
    value = str(text).strip().lower()
    for known in LOG_FORMATS:
        if value == known:
            return known
    raise ConfigError(f"Invalid log format [{text}]: expected one of {', '.join(LOG_FORMATS)}")


def _parse_list(text: str | list) -> list[str]:
    if isinstance(text, list):
        return [str(x) for x in text]
    s = str(text).strip()
    if s.startswith("["):
        return [str(x) for x in orjson.loads(s)]
    return [p.strip() for p in s.split(",") if p.strip()]


@dataclass
class Settings:
    """Everything the service can be told. Field metadata ``prop`` is the Druid property name."""

    data_dir: Path = field(default=Path("var"), metadata={"prop": "overlord.dataDir"})
    host: str = field(default="127.0.0.1", metadata={"prop": "druid.host"})
    port: int = field(default=8090, metadata={"prop": "druid.plaintextPort"})
    log_format: LogFormat = field(default="plain", metadata={"prop": "overlord.log.format"})
    metadata_url: str | None = field(default=None, metadata={"prop": "druid.metadata.storage.connector.connectURI"})
    worker_capacity: int = field(
        default_factory=lambda: os.cpu_count() or 1, metadata={"prop": "druid.worker.capacity"}
    )
    base_task_dirs: list[Path] = field(default_factory=list, metadata={"prop": "druid.worker.baseTaskDirs"})
    base_task_dir_size: int | None = field(default=None, metadata={"prop": "druid.worker.baseTaskDirSize"})
    task_logs_dir: Path | None = field(default=None, metadata={"prop": "druid.indexer.logs.directory"})
    logs_kill_enabled: bool = field(default=False, metadata={"prop": "druid.indexer.logs.kill.enabled"})
    logs_kill_duration_to_retain_ms: int = field(
        default=7_776_000_000, metadata={"prop": "druid.indexer.logs.kill.durationToRetain"}
    )
    logs_kill_initial_delay_ms: int = field(default=300_000, metadata={"prop": "druid.indexer.logs.kill.initialDelay"})
    logs_kill_delay_ms: int = field(default=21_600_000, metadata={"prop": "druid.indexer.logs.kill.delay"})
    queue_max_size: int = field(default=2**31 - 1, metadata={"prop": "druid.indexer.queue.maxSize"})
    force_time_chunk_lock: bool = field(default=True, metadata={"prop": "druid.indexer.tasklock.forceTimeChunkLock"})
    batch_segment_allocation: bool = field(
        default=True, metadata={"prop": "druid.indexer.tasklock.batchSegmentAllocation"}
    )
    store_empty_columns: bool = field(default=True, metadata={"prop": "druid.indexer.task.storeEmptyColumns"})
    default_task_context: dict = field(default_factory=dict, metadata={"prop": "druid.indexer.task.default.context"})
    shutdown_grace_ms: int = field(default=5_000, metadata={"prop": "druid.indexer.runner.taskShutdownLinkTimeout"})
    http_max_idle_time_ms: int = field(default=300_000, metadata={"prop": "druid.server.http.maxIdleTime"})
    recently_finished_threshold_ms: int = field(
        default=86_400_000, metadata={"prop": "druid.indexer.storage.recentlyFinishedThreshold"}
    )
    restore_tasks_on_restart: bool = field(default=False, metadata={"prop": "druid.indexer.task.restoreTasksOnRestart"})
    compaction_period_ms: int = field(default=1_800_000, metadata={"prop": "druid.coordinator.period.indexingPeriod"})
    allowed_input_dirs: list[Path] = field(default_factory=list, metadata={"prop": "overlord.ingest.allowedDirs"})
    max_request_body_bytes: int = field(
        default=10 * 1024 * 1024, metadata={"prop": "druid.server.http.maxRequestBodySize"}
    )
    start_dir: Path = field(default_factory=Path.cwd, metadata={"prop": "overlord.startDir"})
    runner_type: str = field(default="local", metadata={"prop": "druid.indexer.runner.type"})
    storage_type: str = field(default="local", metadata={"prop": "druid.storage.type"})
    storage_directory: Path | None = field(default=None, metadata={"prop": "druid.storage.storageDirectory"})
    logs_type: str = field(default="file", metadata={"prop": "druid.indexer.logs.type"})
    log_max_bytes: int = field(default=100 * 1024 * 1024, metadata={"prop": "overlord.indexer.logs.maxBytes"})
    action_retry_ms: int = field(default=180_000, metadata={"prop": "overlord.peon.actionRetryPeriod"})
    leader_lease_ms: int = field(default=10_000, metadata={"prop": "overlord.leader.leaseDuration"})
    leader_renew_ms: int = field(default=2_000, metadata={"prop": "overlord.leader.renewPeriod"})
    sql_timeout_ms: int = field(default=300_000, metadata={"prop": "druid.server.http.defaultQueryTimeout"})
    sql_max_rows: int = field(default=500_000, metadata={"prop": "overlord.sql.maxResultRows"})
    sql_threads: int = field(default=2, metadata={"prop": "overlord.sql.threads"})
    storage_bucket: str | None = field(default=None, metadata={"prop": "druid.storage.bucket"})
    storage_base_key: str = field(default="", metadata={"prop": "druid.storage.baseKey"})
    logs_s3_bucket: str | None = field(default=None, metadata={"prop": "druid.indexer.logs.s3Bucket"})
    logs_s3_prefix: str = field(default="", metadata={"prop": "druid.indexer.logs.s3Prefix"})
    s3_endpoint_url: str | None = field(default=None, metadata={"prop": "druid.s3.endpoint.url"})
    s3_signing_region: str | None = field(default=None, metadata={"prop": "druid.s3.endpoint.signingRegion"})
    s3_path_style: bool = field(default=False, metadata={"prop": "druid.s3.enablePathStyleAccess"})
    dask_scheduler: str = field(default="", metadata={"prop": "overlord.runner.dask.scheduler"})
    dask_base_task_dir: str = field(default="", metadata={"prop": "overlord.runner.dask.baseTaskDir"})
    dask_gate_timeout_ms: int = field(default=600_000, metadata={"prop": "overlord.runner.dask.gateTimeout"})

    @property
    def deep_storage_dir(self) -> Path:
        return self.storage_directory or self.data_dir / "deep-storage"

    @property
    def effective_task_logs_dir(self) -> Path:
        return self.task_logs_dir or self.data_dir / "task-logs"

    @property
    def effective_base_task_dirs(self) -> list[Path]:
        return self.base_task_dirs or [self.data_dir / "task"]

    @property
    def effective_metadata_url(self) -> str:
        return self.metadata_url or f"sqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def effective_allowed_input_dirs(self) -> list[Path]:
        """Where input may be read: the listed directories, else only the directory the service started in.

        Never the data directory, even when an allowed directory contains it (the default ``./var``
        inside the start directory): its metadata database, logs and segments are refused unless a
        folder inside it is listed explicitly (``ingest.sources.DATA_DIR_MARKER``).
        """
        return self.allowed_input_dirs or [self.start_dir]


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "data_dir": Path,
    "host": str,
    "port": int,
    "log_format": _parse_log_format,
    "metadata_url": str,
    "worker_capacity": int,
    "base_task_dirs": lambda v: [Path(p) for p in _parse_list(v)],
    "base_task_dir_size": parse_size,
    "task_logs_dir": Path,
    "logs_kill_enabled": _parse_bool,
    "logs_kill_duration_to_retain_ms": parse_duration_ms,
    "logs_kill_initial_delay_ms": parse_duration_ms,
    "logs_kill_delay_ms": parse_duration_ms,
    "queue_max_size": int,
    "force_time_chunk_lock": _parse_bool,
    "batch_segment_allocation": _parse_bool,
    "store_empty_columns": _parse_bool,
    "default_task_context": lambda v: v if isinstance(v, dict) else orjson.loads(v),
    "shutdown_grace_ms": parse_duration_ms,
    "http_max_idle_time_ms": parse_duration_ms,
    "recently_finished_threshold_ms": parse_duration_ms,
    "restore_tasks_on_restart": _parse_bool,
    "compaction_period_ms": parse_duration_ms,
    "allowed_input_dirs": lambda v: [Path(p) for p in _parse_list(v)],
    "max_request_body_bytes": parse_size,
    "start_dir": Path,
    "runner_type": str,
    "storage_type": str,
    "storage_directory": Path,
    "logs_type": str,
    "log_max_bytes": parse_size,
    "action_retry_ms": parse_duration_ms,
    "leader_lease_ms": parse_duration_ms,
    "leader_renew_ms": parse_duration_ms,
    "sql_timeout_ms": parse_duration_ms,
    "sql_max_rows": int,
    "sql_threads": int,
    "storage_bucket": str,
    "storage_base_key": str,
    "logs_s3_bucket": str,
    "logs_s3_prefix": str,
    "s3_endpoint_url": str,
    "s3_signing_region": str,
    "s3_path_style": _parse_bool,
    "dask_scheduler": str,
    "dask_base_task_dir": str,
    "dask_gate_timeout_ms": parse_duration_ms,
}
_PROP_TO_FIELD: dict[str, str] = {str(f.metadata["prop"]): f.name for f in fields(Settings)}
_ENV_ALIASES = {
    "OVERLORD_DATA_DIR": "data_dir",
    "OVERLORD_HOST": "host",
    "OVERLORD_PORT": "port",
    "OVERLORD_METADATA_URL": "metadata_url",
    "OVERLORD_CAPACITY": "worker_capacity",
    "OVERLORD_LOG_FORMAT": "log_format",
}


def read_properties(path: Path) -> dict[str, str]:
    """Read a Java-properties file (``key=value`` or ``key: value``, ``#``/``!`` comments)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from None
    props: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"^([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if not m:
            raise ConfigError(f"{path}:{lineno}: expected key=value, got [{line}]")
        props[m.group(1)] = m.group(2).strip()
    return props


def _apply(values: dict[str, object], name: str, raw: object, source: str) -> None:
    try:
        values[name] = _CONVERTERS[name](raw)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"Invalid value [{raw}] for {source}: {exc}") from None


# Druid values this service cannot honour: the property is ignored with a warning saying what is
# used instead, so a runtime.properties written for a Druid Overlord starts the service as is.
_DRUID_ONLY_VALUES: dict[str, tuple[frozenset[str], str]] = {
    "druid.indexer.runner.type": (
        frozenset({"remote", "httpremote"}),
        "peons run on this machine (local); a cluster's workers need druid.indexer.runner.type=dask",
    ),
    "druid.storage.type": (
        frozenset({"hdfs", "google", "azure", "cassandra", "c*", "cloudfiles", "noop"}),
        "segments go to a local folder (local); s3 is supported too",
    ),
    "druid.indexer.logs.type": (
        frozenset({"hdfs", "google", "azure", "noop", "switching"}),
        "task logs go to a local folder (file); s3 is supported too",
    ),
}
_ALIASES = {"druid.port": "druid.plaintextPort"}  # Druid's name before plaintextPort
_CONNECTOR = "druid.metadata.storage.connector."


def _jdbc_url(props: Mapping[str, str], warn: Callable[[str], None]) -> str | None:
    """Druid's metadata connection as a SQLAlchemy URL: PostgreSQL's JDBC URL translated (with
    the connector's user and password), Derby and MySQL ignored for the embedded SQLite store."""
    uri = props.get(f"{_CONNECTOR}connectURI")
    kind = props.get("druid.metadata.storage.type", "").lower()
    if uri is None:
        if kind not in ("", "postgresql"):
            warn(f"druid.metadata.storage.type={kind} ignored: metadata is kept in SQLite in the data directory")
        return None
    m = re.fullmatch(r"jdbc:postgresql://([^/?;]+)/([^?;]+)(?:[?;].*)?", uri)
    if m:
        user, password = props.get(f"{_CONNECTOR}user"), props.get(f"{_CONNECTOR}password")
        from urllib.parse import quote

        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@" if user else ""
        return f"postgresql://{auth}{m.group(1)}/{m.group(2)}"
    if uri.startswith("jdbc:"):
        warn(
            f"{_CONNECTOR}connectURI={uri.split(';')[0]} ignored: only PostgreSQL is supported "
            "(or the embedded SQLite store in the data directory, used instead)"
        )
        return None
    return uri


def druid_properties(
    props: Mapping[str, str], source: object, warn: Callable[[str], None]
) -> dict[str, tuple[str, object]]:
    """The properties of a runtime.properties file that apply here, as ``field -> (property, value)``.

    Druid properties that do not apply (other services', ZooKeeper, extensions, emitters, remote
    runners, cloud storage) are ignored with one warning each; only a malformed value is an error,
    and so is a name in this service's own ``overlord.`` namespace or one a letter or two away from a
    known property, which is a typo (``druid.worker.capacityy``).
    """
    out: dict[str, tuple[str, object]] = {}
    known = list(_PROP_TO_FIELD)
    for prop, raw in props.items():
        name = _PROP_TO_FIELD.get(_ALIASES.get(prop, prop))
        if prop.startswith(_CONNECTOR) or prop == "druid.metadata.storage.type":
            continue  # read together below
        if name is None:
            close = difflib.get_close_matches(prop, known, n=1, cutoff=0.9)
            if prop.startswith("overlord.") or close:
                hint = f"; did you mean [{close[0]}]?" if close else ""
                raise ConfigError(f"{source}: unknown property [{prop}]{hint}")
            warn(f"{prop} ignored: it does not apply to this service")
            continue
        ignored = _DRUID_ONLY_VALUES.get(prop)
        if ignored is not None and raw.strip().lower() in ignored[0]:
            warn(f"{prop}={raw} ignored: {ignored[1]}")
            continue
        out[name] = (prop, raw)
    if any(p.startswith(_CONNECTOR) or p == "druid.metadata.storage.type" for p in props):
        url = _jdbc_url(props, warn)
        if url is not None:
            out["metadata_url"] = (f"{_CONNECTOR}connectURI", url)
    return out


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    warnings: list[str] | None = None,
) -> Settings:
    """Build Settings from defaults, an optional properties file, the environment and flag overrides.

    Properties of the file that do not apply here are ignored; each adds one line to ``warnings``
    (the caller logs them once logging is set up).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    warned = warnings if warnings is not None else []
    if config_file is not None:
        for name, (prop, raw) in druid_properties(read_properties(config_file), config_file, warned.append).items():
            _apply(values, name, raw, f"{prop} in {config_file}")
    for prop, name in _PROP_TO_FIELD.items():
        env_key = prop.replace(".", "_")
        if env_key in environ:
            _apply(values, name, environ[env_key], env_key)
    for env_key, name in _ENV_ALIASES.items():
        if env_key in environ:
            _apply(values, name, environ[env_key], env_key)
    for flag, value in dict(overrides or {}).items():
        if value is not None:
            _apply(values, flag, value, f"--{flag.replace('_', '-')}")
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.worker_capacity < 1:
        raise ConfigError("druid.worker.capacity must be at least 1")
    if settings.max_request_body_bytes < 1:
        raise ConfigError("druid.server.http.maxRequestBodySize must be at least 1 byte")
    if settings.leader_renew_ms < 1 or settings.leader_lease_ms < 2 * settings.leader_renew_ms:
        raise ConfigError(
            "overlord.leader.leaseDuration must be at least twice overlord.leader.renewPeriod (a positive duration)"
        )
    return settings
