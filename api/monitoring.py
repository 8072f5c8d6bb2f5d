"""What operators' tools poll: liveness (/healthz), readiness (/readyz) and the
service's Prometheus metrics (/metrics)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.problems import or_unavailable
from api.results import ResultListener
from api.services import services
from shared import metrics

T = TypeVar("T")


async def healthz(request: Request) -> Response:
    """The process is alive (for restarts); says nothing of its dependencies."""
    return JSONResponse({"status": "ok"})


READY_TIMEOUT = 1.0


async def _answers(call: Awaitable[T]) -> T | None:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            return await call
    except (TimeoutError, redis.RedisError, OSError):
        return None


async def readyz(request: Request) -> Response:
    """Ready for traffic: the store takes writes, the broker answers, a worker is alive
    and this process's result listener is subscribed; not while draining."""
    if request.app.state.drain.draining:
        return JSONResponse({"status": "draining"}, 503)
    svc = services(request)
    writes, workers, listening = await asyncio.gather(
        _answers(svc.store.takes_writes()),
        _answers(svc.broker.live_workers()),
        _listening(svc.results),
    )
    store = "ok" if writes else "refuses writes" if await _answers(svc.store.ping()) else "down"
    ready = store == "ok" and bool(workers) and listening
    body: dict[str, object] = {
        "status": "ready" if ready else "unavailable",
        "redis": store,
        "broker": "down" if workers is None else "ok",
    }
    if workers is not None:
        body["workers"] = workers
        if not listening:
            # The broker answers, yet results do not reach this process's requests:
            # every one would wait for its whole deadline.
            body["results"] = "not listening"
    return JSONResponse(body, 200 if ready else 503)


async def _listening(listener: ResultListener) -> bool:
    """The result listener is subscribed and reading (waiting for it as for the rest)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT):
            await listener.ready()
    return listener.listening


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics_text(request: Request) -> Response:
    """Prometheus text for the whole service, from the sums in Redis (shared.metrics)."""
    svc = services(request)
    stored, (workers, queued), pending = await or_unavailable(
        asyncio.gather(
            svc.store.metrics(),
            svc.broker.gauges(),
            svc.store.pending_deliveries(),
        ),
        "Metrics are unavailable right now.",
    )
    gauges = {
        metrics.WORKERS: float(workers),
        metrics.QUEUED: float(queued),
        metrics.WEBHOOK_PENDING: float(pending),
    }
    return Response(metrics.render(stored, gauges), media_type=METRICS_TYPE)
