"""shared.logs, in process: one JSON object a line, with the request's id and our fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from shared import logs
from shared.logs import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("endcontact.test").makeRecord(
        "endcontact.test", logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    return made


def formatted(line: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter().format(line)
    assert "\n" not in text
    entry: dict[str, Any] = json.loads(text)
    return entry


def test_a_line_has_time_level_logger_and_message() -> None:
    entry = formatted(record("took %d tasks from %s", 3, "queue"))
    assert entry == {
        "time": entry["time"],
        "level": "INFO",
        "logger": "endcontact.test",
        "message": "took 3 tasks from queue",
    }
    when = datetime.fromisoformat(entry["time"])
    assert when.utcoffset() is not None
    assert when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert entry["time"].endswith("+00:00")
    assert len(entry["time"].split(".")[1]) == len("123+00:00")  # milliseconds


def test_extra_fields_are_top_level_and_anything_is_printable() -> None:
    entry = formatted(record("end-contact", key_id="key_1", numbers=2, where=Path("/x")))
    assert (entry["key_id"], entry["numbers"], entry["where"]) == ("key_1", 2, "/x")


def test_a_message_over_several_lines_stays_one_line() -> None:
    assert formatted(record("one\ntwo"))["message"] == "one\ntwo"


def test_the_request_id_is_added_while_set() -> None:
    token = logs.request_id.set("abc-123")
    try:
        assert formatted(record("inside"))["request_id"] == "abc-123"
    finally:
        logs.request_id.reset(token)
    assert "request_id" not in formatted(record("outside"))


def test_uvicorns_coloured_copy_is_left_out() -> None:
    assert "color_message" not in formatted(record("GET /", color_message="\x1b[1mGET /\x1b[0m"))


def test_an_exception_is_named_but_its_message_is_not_printed() -> None:
    try:
        raise ValueError("+15095551234 is not in the hash")
    except ValueError:
        line = logging.getLogger("endcontact.test").makeRecord(
            "endcontact.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = JsonFormatter().format(line)
    assert json.loads(text)["exception"] == "ValueError"
    assert "5095551234" not in text


def test_an_exception_comes_with_its_frames() -> None:
    def inner(phone: str) -> None:
        raise KeyError(phone)

    try:
        inner("+15095551234")
    except KeyError:
        line = logging.getLogger("endcontact.test").makeRecord(
            "endcontact.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(line))
    frames = entry["traceback"]
    assert frames.startswith("Traceback (most recent call last):\n")
    # Where it was raised, not the source lines: a line may hold a value.
    assert f'File "{__file__}"' in frames
    assert frames.endswith(", in inner\n")
    assert "raise" not in frames
    assert "5095551234" not in json.dumps(entry)


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger as it was, after the test changed it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_sends_every_logger_through_one_json_handler(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(logging.WARNING)
    assert len(root_logging.handlers) == 1
    assert isinstance(root_logging.handlers[0].formatter, JsonFormatter)
    logging.getLogger("celery.somewhere").info("not shown")
    logging.getLogger("celery.somewhere").warning("shown %s", 1)
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["shown 1"]
