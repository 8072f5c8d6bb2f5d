"""shared.logs, in process: one line per event, a JSON object or text, with the request's
id and our fields."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from shared import logs
from shared.logs import JsonFormatter, TextFormatter
from shared.phones import mask


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


# --- text, for a terminal ----------------------------------------------------------


def text(line: logging.LogRecord) -> str:
    """The text line; an exception's frames, the only thing on lines of their own."""
    shown = TextFormatter().format(line)
    assert "\n" not in shown.split("\nTraceback (most recent call last):\n", 1)[0]
    return shown


def test_text_is_time_level_logger_message_then_the_fields() -> None:
    made = record("took %d tasks from %s", 3, "queue", key_id="key_1", numbers=2, ok=True)
    made.created = datetime(2026, 12, 7, 9, 41, 7, 123_456).timestamp()
    when = JsonFormatter().format(made)[10:33]  # the JSON's time: the same instant
    shown = text(made)
    assert shown == (
        f"{when[:10]} {when[11:]} INFO    test: took 3 tasks from queue "
        "key_id=key_1 numbers=2 ok=true"
    )


def test_text_quotes_what_would_not_read_as_one_value() -> None:
    shown = text(
        record(
            "x",
            empty="",
            spaced="a b",
            quoted='say "hi"',
            equals="a=b",
            queues=["endcontact"],
            nothing=None,
            where=Path("/x y"),
        )
    )
    assert shown.endswith(
        ' x empty="" spaced="a b" quoted="say \\"hi\\"" equals="a=b" '
        'queues=["endcontact"] nothing=null where="/x y"'
    )


def test_text_says_a_paragraph_on_one_line_and_escapes_what_a_terminal_would_run() -> None:
    shown = text(record("one\n\n  two\r\nthree \x1b[31mred\x07", value="\x1b[2J"))
    assert shown.endswith(' test: one two three \\x1b[31mred\\x07 value="\\u001b[2J"')
    assert "\x1b" not in shown


@pytest.mark.parametrize(
    ("logger", "short"),
    [
        ("endcontact.access", "access"),
        ("celery.apps.worker", "worker"),
        ("api.results", "results"),
        ("py.warnings", "warnings"),
        ("uvicorn.error", "uvicorn"),  # uvicorn's every line, "started" included
        ("root", "root"),
    ],
)
def test_text_names_the_logger_by_its_last_name(logger: str, short: str) -> None:
    made = logging.makeLogRecord({"name": logger, "levelname": "INFO", "msg": "m"})
    assert text(made).split()[3] == f"{short}:"


def test_both_formats_hide_and_show_the_same() -> None:
    """One rule for both: the fields, the request's id, a masked number as it was
    given, an exception by its type only."""
    try:
        raise ValueError("+15095551234 is not in the hash")
    except ValueError:
        made = logging.getLogger("endcontact.test").makeRecord(
            "endcontact.test",
            logging.ERROR,
            __file__,
            1,
            "failed for %s",
            (mask("+15095551234"),),
            sys.exc_info(),
            extra={"key_id": "key_1"},
        )
    token = logs.request_id.set("abc-123")
    try:
        shown, entry = text(made), formatted(made)
    finally:
        logs.request_id.reset(token)
    assert entry["message"] == "failed for +15*******34"
    assert entry["exception"] == "ValueError"
    first, *frames = shown.splitlines()
    assert first.endswith(
        " ERROR   test: failed for +15*******34 request_id=abc-123 key_id=key_1 "
        "exception=ValueError"
    )
    assert frames[0] == "Traceback (most recent call last):"
    assert "in test_both_formats_hide_and_show_the_same" in frames[-1]
    assert entry["traceback"] == "\n".join(frames) + "\n"
    for line in (shown, json.dumps(entry)):
        assert "5095551" not in line
        assert "not in the hash" not in line


class Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("setting", "tty", "chosen"),
    [
        ({}, True, TextFormatter),
        ({}, False, JsonFormatter),
        ({"ENDCONTACT_LOG_FORMAT": "auto"}, True, TextFormatter),
        ({"ENDCONTACT_LOG_FORMAT": "json"}, True, JsonFormatter),
        ({"ENDCONTACT_LOG_FORMAT": "text"}, False, TextFormatter),
        # Refused with exit status 2 by the entry point's settings; until then, auto.
        ({"ENDCONTACT_LOG_FORMAT": "yaml"}, True, TextFormatter),
    ],
)
def test_text_on_a_terminal_json_elsewhere_or_as_set(
    setting: dict[str, str], tty: bool, chosen: type[logging.Formatter]
) -> None:
    assert type(logs.formatter(Terminal(tty), setting)) is chosen  # type: ignore[arg-type]


def test_a_warning_is_one_log_line_without_its_source_line(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():  # and the showwarning configure sets, restored
        warnings.simplefilter("always")
        logs.configure()
        warnings.warn_explicit(
            "You're running the worker with superuser privileges: this is\nabsolutely not "
            "recommended!\n\nUser information: uid=0\n",
            UserWarning,
            "/site-packages/celery/platforms.py",
            893,
        )
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "py.warnings"
    assert entry["level"] == "WARNING"
    assert entry["message"] == (
        "UserWarning: You're running the worker with superuser privileges: this is absolutely "
        "not recommended! User information: uid=0"
    )
    assert entry["source"] == "/site-packages/celery/platforms.py:893"
