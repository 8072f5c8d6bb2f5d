"""Per request: an id (from X-Request-ID or new) echoed back, one access log line, and
its count and duration in the metrics; an unhandled error becomes a 500 problem here,
inside the request's context, logged once with its id."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem
from shared.logs import request_id
from shared.metrics import REQUEST_SECONDS, REQUESTS, Registry

HEADER = b"x-request-id"
log = logging.getLogger("endcontact.access")
errors = logging.getLogger("endcontact.api")
# Methods we name in metrics; anything else is "other", so a client cannot mint series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where a request's handler leaves headers for every answer from then on, errors included.
EXTRA_HEADERS = "endcontact.headers"
# When the request reached the app (time.monotonic()): its deadline runs from there, not
# from when its handler pushes its tasks, which under load can be seconds later.
ARRIVED = "endcontact.arrived"


def arrived(scope: Scope) -> float:
    """When the request reached the app (now, for one that came another way)."""
    value = scope.get(ARRIVED)
    return value if isinstance(value, float) else time.monotonic()


def answer_with(scope: Scope, headers: Mapping[str, str]) -> None:
    """Every answer to this request carries `headers`, whatever it turns out to be."""
    extra = scope.setdefault(EXTRA_HEADERS, {})
    extra.update((name.lower().encode(), value.encode()) for name, value in headers.items())


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
        scope[ARRIVED] = time.monotonic()
        given = dict(scope["headers"]).get(HEADER, b"")
        rid = _accepted(given) or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [
                    *message.get("headers", []),
                    *scope.get(EXTRA_HEADERS, {}).items(),
                    (HEADER, rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Handled here, not by Starlette's outer ServerErrorMiddleware: inside the
            # request's context, the 500 carries its id and the one log line too (the
            # exception is not re-raised, so neither Starlette nor uvicorn logs it again).
            # The frames, not the message: an exception's text can carry request data.
            errors.error(
                "unhandled %s",
                exc.__class__.__name__,
                extra={"frames": "".join(traceback.format_tb(exc.__traceback__))},
            )
            if not responded:
                problem = Problem(500, "Something went wrong on our side; retry shortly.")
                await problem.response()(scope, receive, send_with_id)
            # Else the answer is under way and cannot become a problem: uvicorn closes
            # the connection once we return.
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
