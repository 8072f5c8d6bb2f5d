"""Logging for web and worker alike, one line per event: a JSON object, or for a person
at a terminal a line of text (ENDCONTACT_LOG_FORMAT: auto, the default, is text when
stderr is a terminal and JSON otherwise).

Fields passed with `extra=` (request_id, key_id, company, campaign, counts, duration…)
become top-level keys in JSON, key=value in text. Both formats print what fields()
gives, so what one hides the other does: an exception by its type only, never its
message. Nothing here masks numbers: callers never pass a key or a full number.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from traceback import extract_tb
from types import TracebackType
from typing import IO, TextIO

from shared.settings import SettingsError, log_format

# Set by the web for the request being served; every line logged meanwhile carries it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Record attributes that are not ours to print ("color_message": uvicorn's ANSI copy).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def fields(record: logging.LogRecord) -> dict[str, object]:
    """What a line says of a record, in both formats: time, level, logger, message, the
    request's id, the record's extra fields and the name of its exception."""
    entry: dict[str, object] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    current = request_id.get()
    if current is not None:
        entry["request_id"] = current
    entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
    if record.exc_info and record.exc_info[0] is not None:
        # The type and frames, not the message: it can carry request data.
        entry["exception"] = record.exc_info[0].__name__
        entry["traceback"] = _frames(record.exc_info[2])
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), default=str)


# Line breaks and the spaces around them (Celery's warnings are paragraphs); other
# control characters, which a terminal would act on.
_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A value printed as it is; any other is quoted as a JSON string.
_PLAIN = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def _value(value: object) -> str:
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _short(logger: str) -> str:
    # uvicorn logs everything of its own, "started" included, as "uvicorn.error".
    if logger.startswith("uvicorn"):
        return "uvicorn"
    return logger.rsplit(".", 1)[-1]


class TextFormatter(logging.Formatter):
    """`2026-12-07 09:41:07.123 INFO    api: end-contact key_id=key_… numbers=2`: time
    (UTC), level, the logger's last name, the message on one line, then the rest of
    fields() as key=value; an exception's frames, if any, on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        entry = fields(record)
        # Frames under the line, as Python prints them: a reader's eye finds them there.
        frames = str(entry.pop("traceback", ""))
        when = str(entry.pop("time"))
        message = _BREAKS.sub(" ", str(entry.pop("message")).strip())
        line = (
            f"{when[:10]} {when[11:23]} {entry.pop('level'):<7} "
            f"{_short(str(entry.pop('logger')))}: {_CONTROL.sub(_escaped, message)}"
        )
        line = " ".join([line, *(f"{key}={_value(value)}" for key, value in entry.items())])
        return f"{line}\n{frames.rstrip()}" if frames else line


def formatter(stream: IO[str], env: Mapping[str, str] | None = None) -> logging.Formatter:
    """The formatter ENDCONTACT_LOG_FORMAT chooses for lines written to `stream`."""
    try:
        chosen = log_format(os.environ if env is None else env)
    except SettingsError:
        # Reported by the entry point's Settings.from_env, with exit status 2.
        chosen = "auto"
    if chosen == "text" or (chosen == "auto" and stream.isatty()):
        return TextFormatter()
    return JsonFormatter()


# The formatter configure() chose: for lines written outside logging (worker/app.py).
_current: logging.Formatter = JsonFormatter()


def as_line(record: logging.LogRecord) -> str:
    """`record` as a line of the process's logs, without its line end."""
    return _current.format(record)


def _frames(tb: TracebackType | None) -> str:
    """Python's traceback without the source lines (a line may hold a literal)."""
    lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in extract_tb(tb)]
    return "Traceback (most recent call last):\n" + "".join(lines)


def configure(level: int = logging.INFO) -> None:
    global _current
    handler = logging.StreamHandler(sys.stderr)
    _current = formatter(sys.stderr)
    handler.setFormatter(_current)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Warnings (Celery's SecurityWarning, deprecations) as log lines, not raw text.
    warnings.showwarning = _log_warning


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # As logging.captureWarnings does, without the source line it adds, and a paragraph
    # (Celery's) said on one line in both formats.
    said = _BREAKS.sub(" ", str(message).strip())
    logging.getLogger("py.warnings").warning(
        "%s: %s", category.__name__, said, extra={"source": f"{filename}:{lineno}"}
    )
