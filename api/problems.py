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

MEDIA_TYPE = "application/problem+json"
T = TypeVar("T")


@dataclass
class Problem(Exception):
    """Raised anywhere below the edge; the app turns it into the response."""

    status: int
    detail: str
    # A stable identifier clients can switch on; relative to the service's base URL.
    type: str = "about:blank"
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"

    def response(self) -> Response:
        body: dict[str, Any] = {
            "type": self.type,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return Response(
            json.dumps(body, ensure_ascii=False),
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
