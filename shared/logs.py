"""Logging as one JSON object per line, for web and worker alike.

Fields passed with `extra=` (request_id, key_id, company, campaign, counts, duration…)
become top-level keys. Nothing here masks: callers never pass a key or a full number.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from traceback import extract_tb
from types import TracebackType

# Set by the web for the request being served; every line logged meanwhile carries it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Record attributes that are not ours to print ("color_message": uvicorn's ANSI copy).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
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
        return json.dumps(entry, default=str)


def _frames(tb: TracebackType | None) -> str:
    """Python's traceback without the source lines (a line may hold a literal)."""
    lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in extract_tb(tb)]
    return "Traceback (most recent call last):\n" + "".join(lines)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Warnings (Celery's SecurityWarning, deprecations) as log lines, not raw text.
    logging.captureWarnings(True)
