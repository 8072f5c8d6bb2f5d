"""Draining: on SIGTERM, a web process stays up ENDCONTACT_DRAIN_SECONDS more, answering
every new request with 421 and /readyz with 503, before uvicorn's own graceful shutdown.

Why 421 (Misdirected Request) and not simply closing the listener: in front of several
replicas, compose's proxy (deploy/Caddyfile) learns where replicas are from Docker's DNS,
which keeps a stopping container's address until it has exited, and it cannot run active
health checks on such upstreams (Caddy 2.11). Closing the listener at once loses requests
in two races, both seen: one already written on a kept-alive connection that the server is
closing, and one in the listen queue when the socket closes (1 in 224 requests failed
across one `docker stop` under load, issue 18). A 421 is an answer instead: nothing was
processed, so the proxy may send the same request to another replica (its
`lb_retry_match`), and it marks this replica failed for a while (`unhealthy_status`), so
by the time the listener closes, nothing is sent here any more. `Connection: close` on
each 421 leaves no kept-alive connection to this replica in the proxy's pool.

Requests already in progress when the signal came finish as usual, and /healthz keeps
answering 200: the process is alive, only leaving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType

from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import Problem

log = logging.getLogger("endcontact.api")
# Paths a draining process still serves: liveness, and readiness (which says 503).
STILL_SERVED = frozenset({"/healthz", "/readyz"})


class Drain:
    """Whether this process is draining, and the SIGTERM handler that starts it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    def install(self) -> None:
        """Wrap the SIGTERM handler uvicorn installed: drain first, then call it.

        Called in the lifespan's start-up, after uvicorn's Server.capture_signals has set
        its handler (it does so before the lifespan starts, and puts the previous one back
        on exit). Without a drain, or off the main thread (a test's in-process client),
        uvicorn's handling stays as it is.
        """
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self.draining:
                # A second SIGTERM: stop draining, shut down now.
                previous(sig, frame)
                return
            self.draining = True
            log.info("draining", extra={"seconds": self.seconds})
            loop.call_soon_threadsafe(loop.call_later, self.seconds, previous, sig, None)

        signal.signal(signal.SIGTERM, on_sigterm)


class Draining:
    """ASGI middleware: while draining, a new request gets 421 unless it is a health
    check. Outermost but for the request context, so that nothing is processed."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.drain.draining or scope["type"] != "http" or scope["path"] in STILL_SERVED:
            await self.app(scope, receive, send)
            return
        problem = Problem(
            421,
            "This server is shutting down and processed nothing of this request; "
            "send it again (a proxy in front does so by itself).",
            headers={"Connection": "close"},
        )
        await problem.response()(scope, receive, send)
