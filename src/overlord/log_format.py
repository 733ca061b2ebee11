"""Log formatters that show a record's ``extra`` fields (``task_id``, ``action``, ``duty``, ...).

The service logs every state change with ``extra={"task_id": ..., "action": ...}``; the standard
formatter drops those fields, so an operator could not grep a task's history. ``plain`` appends
them as ``[task_id=... action=...]``; ``json`` writes one JSON object a line for log shippers.
Chosen by ``overlord.log.format``.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["plain", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s - %(message)s"

# every attribute a bare LogRecord has, plus those Formatter.format adds: the rest came from ``extra``;
# uvicorn's ``color_message`` repeats the message with terminal colours
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed in ``extra``, in the order given."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}


def _plain_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=]' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class PlainFormatter(logging.Formatter):
    """The usual one-line format, then the ``extra`` fields: ``... - message [task_id=x action=run]``."""

    def __init__(self, fmt: str = PLAIN_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = extra_fields(record)
        if not fields:
            return line
        return line + " [" + " ".join(f"{key}={_plain_value(value)}" for key, value in fields.items()) + "]"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO-8601 UTC), level, logger, message, the extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)  # an extra named like a base key must not hide the message
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses outright, such as an int beyond 64 bits
            return json.dumps(entry, default=str)


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return PlainFormatter()


def configure_logging(log_format: LogFormat, level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger's records (uvicorn's too) to one stream handler with the chosen format.

    Replaces the root logger's handlers, so calling it twice does not double each line.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
