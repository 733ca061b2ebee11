"""Log lines carry their ``extra`` fields, in plain text or JSON; the setting picks the format."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlord.config import load_settings
from overlord.errors import ConfigError
from overlord.log_format import JsonFormatter, PlainFormatter, configure_logging, extra_fields


def record(msg: str = "Task[%s] is RUNNING", *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise OSError("disk full")
        except OSError:
            exc_info = sys.exc_info()
    rec = logging.getLogger("overlord.core.queue").makeRecord(
        "overlord.core.queue", logging.INFO, __file__, 1, msg, args or ("t1",), exc_info, extra=extra or None
    )
    rec.created = 1_700_000_000.25
    return rec


def test_extra_fields_are_only_what_the_caller_passed() -> None:
    assert extra_fields(record(task_id="t1", action="run")) == {"task_id": "t1", "action": "run"}
    assert extra_fields(record()) == {}


def test_plain_appends_the_extra_fields_in_order() -> None:
    line = PlainFormatter().format(record(task_id="t1", action="run"))
    assert line.endswith("INFO overlord.core.queue - Task[t1] is RUNNING [task_id=t1 action=run]")


def test_plain_without_extras_is_the_usual_line() -> None:
    assert PlainFormatter().format(record()).endswith("overlord.core.queue - Task[t1] is RUNNING")


def test_plain_quotes_values_that_would_break_the_key_value_list() -> None:
    line = PlainFormatter().format(record(row='a b"c', empty="", bracket="x]", count=3))
    assert line.endswith('[row="a b\\"c" empty="" bracket="x]" count=3]')


def test_plain_puts_the_extras_on_the_message_line_and_the_traceback_after() -> None:
    lines = PlainFormatter().format(record(exc=True, task_id="t1")).splitlines()
    assert lines[0].endswith("Task[t1] is RUNNING [task_id=t1]")
    assert lines[-1] == "OSError: disk full"


def test_json_is_one_object_a_line_with_the_extras() -> None:
    line = JsonFormatter().format(record(task_id="t1", action="run", path=Path("/x")))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2023-11-14T22:13:20.250+00:00",
        "level": "INFO",
        "logger": "overlord.core.queue",
        "message": "Task[t1] is RUNNING",
        "task_id": "t1",
        "action": "run",
        "path": "/x",
    }


def test_json_keeps_the_base_keys_when_an_extra_has_their_name() -> None:
    entry = json.loads(JsonFormatter().format(record(level="fake", logger="fake", time="fake")))
    assert (entry["level"], entry["logger"]) == ("INFO", "overlord.core.queue")
    assert entry["time"].startswith("2023-11-14T")


def test_json_carries_the_exception_and_survives_values_orjson_refuses() -> None:
    entry = json.loads(JsonFormatter().format(record(exc=True, big=2**70)))
    assert entry["exception"].splitlines()[-1] == "OSError: disk full"
    assert entry["big"] == 2**70


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_configure_logging_routes_every_logger_to_one_handler(root_logger: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    configure_logging("json", "warning", stream=out)  # twice: still one line a record
    logging.getLogger("uvicorn.error").warning("Uvicorn running", extra={"color_message": "\x1b[1mUvicorn\x1b[0m"})
    logging.getLogger("overlord.core.queue").info("below the level")
    [line] = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "Uvicorn running" and "color_message" not in entry
    assert root_logger.level == logging.WARNING and len(root_logger.handlers) == 1


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, "plain"), ({"overlord_log_format": "JSON"}, "json"), ({"OVERLORD_LOG_FORMAT": "plain"}, "plain")],
)
def test_the_setting_from_the_environment(environ: dict[str, str], expected: str) -> None:
    assert load_settings(environ=environ).log_format == expected


def test_the_setting_from_a_properties_file_and_a_flag(tmp_path: Path) -> None:
    props = tmp_path / "runtime.properties"
    props.write_text("overlord.log.format=json\n")
    assert load_settings(config_file=props, environ={}).log_format == "json"
    assert load_settings(config_file=props, environ={}, overrides={"log_format": "plain"}).log_format == "plain"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Invalid log format \[xml\]: expected one of plain, json"):
        load_settings(environ={"overlord_log_format": "xml"})
