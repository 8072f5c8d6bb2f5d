"""Per request: an id (from X-Request-ID or new) echoed back, one access log line, and
its count and duration in the metrics."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import request_id
from shared.metrics import REQUEST_SECONDS, REQUESTS, Registry

HEADER = b"x-request-id"
log = logging.getLogger("endcontact.access")
# Methods we name in metrics; anything else is "other", so a client cannot mint series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _accepted(value: bytes) -> str | None:
    """A client's id, if it is short and plain enough to put in our logs."""
    if 0 < len(value) <= 128 and all(33 <= byte <= 126 for byte in value):
        return value.decode("ascii")
    return None


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Registry) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        rid = _accepted(given) or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            log.info(
                "request",
                extra={
                    "method": method,
                    # The route's template, never the path: a lookup's path is a number.
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            self.metrics.inc(REQUESTS, {"method": method, "route": route, "status": str(status)})
            self.metrics.observe(REQUEST_SECONDS, {"method": method, "route": route}, elapsed)
            request_id.reset(token)
