"""RFC 9457 problem details: every error response of the service has this shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import redis
from starlette.responses import Response

from shared.text import is_text

MEDIA_TYPE = "application/problem+json"
T = TypeVar("T")
# An error tells a client what was wrong, not its input back: an echoed value is cut to
# this many characters, and a body never weighs more than MAX_BODY_BYTES, whatever came in.
MAX_ECHO = 64
MAX_BODY_BYTES = 2048
ELLIPSIS = "…"


def cut(value: Any) -> Any:
    """What an error may echo of a client's value: itself if short, else its start."""
    if not isinstance(value, str):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (ValueError, RecursionError):
            # Infinity or NaN (a body's 1e999 is one; JSON has neither), or nested
            # deeper than we print.
            return "(a value that cannot be shown)"
        if len(text) <= MAX_ECHO:
            return value
        value = text
    return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + ELLIPSIS


@dataclass
class Problem(Exception):
    """Raised anywhere below the edge; the app turns it into the response."""

    status: int
    detail: str
    # A stable identifier clients can switch on; relative to the service's base URL.
    type: str = "about:blank"
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Here, so that no error anywhere can echo a whole input.
        self.errors = [
            {**error, "value": cut(error["value"])} if "value" in error else error
            for error in self.errors
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"

    def body(self) -> bytes:
        """The problem as JSON, at most MAX_BODY_BYTES: errors that do not fit are
        left out and counted in `errorsOmitted`."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        shown = len(self.errors)
        while True:
            if shown:
                body["errors"] = self.errors[:shown]
            if shown < len(self.errors):
                body["errorsOmitted"] = len(self.errors) - shown
            encoded = _encode(body)
            if len(encoded) <= MAX_BODY_BYTES or shown == 0:
                return encoded
            # Each entry is small (its value is cut), so this stops within a few rounds.
            shown -= 1
            body.pop("errors", None)

    def response(self) -> Response:
        return Response(
            self.body(),
            status_code=self.status,
            headers=self.headers,
            media_type=MEDIA_TYPE,
        )


def invalid(detail: str, errors: list[dict[str, Any]]) -> Problem:
    return Problem(400, detail, type="/problems/invalid-request", errors=errors)


def unauthorized() -> Problem:
    # The same words for a missing, unknown or revoked key: a 401 never tells which.
    return Problem(401, "A valid x-api-key header is required.", type="/problems/unauthorized")


def unavailable(detail: str) -> Problem:
    return Problem(503, detail, type="/problems/unavailable", headers={"Retry-After": "1"})


# One Redis read or write; past this, Redis is in trouble and the client is better told
# to come back (503) than kept waiting.
REDIS_TIMEOUT = 2.0


async def or_unavailable(call: Awaitable[T], detail: str) -> T:
    """The call's result, or a 503 (`detail`) if Redis fails or is too slow."""
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            return await call
    except (TimeoutError, redis.RedisError, OSError):
        raise unavailable(detail) from None


def _encode(body: dict[str, Any]) -> bytes:
    """UTF-8 JSON; with \\u escapes where a client's value has no UTF-8 (a lone
    surrogate, which a JSON body may send as "\\ud800"): still JSON, never a 500."""
    text = json.dumps(body, ensure_ascii=False)
    return (text if is_text(text) else json.dumps(body)).encode()
