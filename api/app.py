"""The Starlette app, built by create_app(settings); connections live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import docs
from api import webhooks as hooks
from api.admission import Admission
from api.auth import authenticate, check_shape
from api.body import (
    CHECK_MAX_BODY_BYTES,
    CHECK_MAX_NUMBERS,
    change_request,
    check_content_type,
    phone_numbers,
    read_body,
)
from api.drain import Drain, Draining
from api.fanout import FanOut
from api.metrics import Flusher, count_numbers
from api.middleware import RequestContext, answer_with
from api.openapi import DOCUMENT
from api.problems import Problem, invalid, or_unavailable
from api.publisher import TaskPublisher
from api.ratelimit import RateLimiter
from api.reads import CsvExport, after_ahead, export_query, feed_query, page_query, wants_csv
from api.results import ResultListener
from shared import logs, metrics
from shared.apikeys import ApiKey
from shared.broker import AsyncBroker
from shared.clock import ServerClock
from shared.connection import async_client
from shared.events import ENDED, RESUMED, Context, FeedAhead, FeedTrimmed
from shared.phones import InvalidPhoneNumber, to_e164
from shared.settings import Settings, exit_on_bad_settings
from shared.store import AsyncStore
from shared.webhooks import AsyncWebhooks

log = logging.getLogger("endcontact.api")
T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    store: AsyncStore
    # The queue, results, heartbeats and rate limits: REDIS_URL's server unless
    # ENDCONTACT_BROKER_URL names another (shared.broker).
    broker: AsyncBroker
    admission: Admission
    fanout: FanOut
    metrics: metrics.Registry
    webhooks: AsyncWebhooks
    results: ResultListener
    rates: RateLimiter


def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result


async def admit(request: Request, svc: Services) -> ApiKey:
    """The caller's key, with the request counted against its rate limit; from then
    on every answer to it carries the RateLimit headers, a 400 or 404 as a 201."""
    key = await authenticate(request, svc.store)
    answer_with(request.scope, await svc.rates.check(key))
    return key


async def change(request: Request, kind: str) -> Response:
    """End or resume contact (`kind`) with the body's numbers, through the workers."""
    svc = services(request)
    started = time.perf_counter()
    # While overloaded, refused before the key is looked up, the body and the messages
    # (api.admission); a key missing or malformed is a 401 all the same.
    check_shape(request)
    async with svc.admission.room(request.headers.get("content-length")) as room:
        key = await admit(request, svc)
        check_content_type(request.headers.get("content-type"))
        phones, reason = change_request(await read_body(request), svc.settings.default_region)
        room.fit(len(phones))
    # The middleware has set the request's id (X-Request-ID) before any handler runs.
    context = Context(key.id, logs.request_id.get() or "", reason)
    outcome = await svc.fanout.change(kind, key.scope, phones, context)
    count_numbers(svc.metrics, outcome)
    log.info(
        "end-contact" if kind == ENDED else "resume-contact",
        extra={
            "key_id": key.id,
            "company": key.scope.company,
            "campaign": key.scope.campaign,
            "numbers": len(phones),
            "success": len(outcome.success),
            "failure": len(outcome.failure),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return JSONResponse({"success": outcome.success, "failure": outcome.failure}, 201)


async def resume_contact(request: Request) -> Response:
    return await change(request, RESUMED)


def path_phone(request: Request, svc: Services) -> str:
    text = request.path_params["phoneNumber"]
    try:
        return to_e164(text, svc.settings.default_region)
    except InvalidPhoneNumber as exc:
        raise invalid(
            "phoneNumber is not a valid phone number.",
            [{"parameter": "phoneNumber", "value": text, "reason": str(exc)}],
        ) from None


async def lookup(request: Request) -> Response:
    svc = services(request)
    key = await admit(request, svc)
    phone = path_phone(request, svc)
    ended_at = await or_unavailable(
        svc.store.ended_at(key.scope, phone), "The lookup cannot be made right now; retry shortly."
    )
    if ended_at is None:
        raise Problem(
            404,
            "Contact with this number has not been ended for this campaign.",
            type="/problems/not-ended",
        )
    return JSONResponse({"phoneNumber": phone, "endedAt": ended_at})


async def history(request: Request) -> Response:
    """Every change of one number's mark, oldest first (shared.events)."""
    svc = services(request)
    key = await admit(request, svc)
    phone = path_phone(request, svc)
    found = await or_unavailable(
        svc.store.history(key.scope, phone), "The history cannot be read right now; retry shortly."
    )
    return JSONResponse({"phoneNumber": phone, "events": [event.to_json() for event in found]})


async def feed(request: Request) -> Response:
    """The campaign's change feed from a cursor: poll with `after=next`."""
    svc = services(request)
    key = await admit(request, svc)
    after, limit = feed_query(request.query_params)
    try:
        page = await or_unavailable(
            svc.store.feed(key.scope, after, limit),
            "The feed cannot be read right now; retry shortly.",
        )
    except FeedTrimmed as exc:
        raise Problem(
            410,
            "Events after this cursor are no longer kept (after "
            f"{svc.settings.events_retention_days:g} days they leave the feed). Read the "
            "marks again (the list or the CSV export), then follow the feed without `after`.",
            type="/problems/cursor-expired",
            errors=[
                {
                    "parameter": "after",
                    "value": str(after),
                    "reason": f"events up to {exc} have left the feed",
                }
            ],
        ) from None
    except FeedAhead:
        raise after_ahead(str(after)) from None
    events = [event.to_json() for event in page.events]
    return JSONResponse({"events": events, "next": str(page.next)})


async def check(request: Request) -> Response:
    """Which of up to 1000 numbers are ended: one HMGET, no Celery."""
    svc = services(request)
    key = await admit(request, svc)
    check_content_type(request.headers.get("content-type"))
    raw = await read_body(request, CHECK_MAX_BODY_BYTES)
    phones = phone_numbers(raw, svc.settings.default_region, CHECK_MAX_NUMBERS)
    found = await or_unavailable(
        svc.store.ended_at_many(key.scope, phones),
        "The check cannot be made right now; retry shortly.",
    )
    ended = [
        {"phoneNumber": phone, "endedAt": ended_at}
        for phone, ended_at in zip(phones, found, strict=True)
        if ended_at is not None
    ]
    not_ended = [phone for phone, ended_at in zip(phones, found, strict=True) if ended_at is None]
    return JSONResponse({"ended": ended, "notEnded": not_ended})


async def list_marks(request: Request) -> Response:
    """A page of the campaign's marks, or with Accept: text/csv all of them, streamed."""
    svc = services(request)
    key = await admit(request, svc)
    if wants_csv(request.headers.get("accept")):
        export_query(request.query_params)
        chunks = svc.store.export(key.scope)
        # The first read before the 200: a Redis that is down is still a 503.
        first = await or_unavailable(
            anext(chunks), "The export cannot start right now; retry shortly."
        )
        return CsvExport(first, chunks)
    limit, cursor = page_query(request.query_params)
    page = await or_unavailable(
        svc.store.page(key.scope, cursor, limit),
        "The list cannot be read right now; retry shortly.",
    )
    items = [{"phoneNumber": phone, "endedAt": ended_at} for phone, ended_at in page.items]
    following = None if page.next is None else page.next.encode()
    return JSONResponse({"items": items, "next": following}, headers={"Vary": "Accept"})


async def leads(request: Request) -> Response:
    # One route for both methods, so that a 405 on this path allows both.
    if request.method == "POST":
        return await change(request, ENDED)
    return await list_marks(request)


async def webhooks(request: Request) -> Response:
    """A campaign's webhooks: create one (POST) or list them (api.webhooks)."""
    svc = services(request)
    key = await admit(request, svc)
    if request.method == "POST":
        return await hooks.create(request, svc, key)
    return await hooks.listing(svc, key)


async def webhook(request: Request) -> Response:
    svc = services(request)
    return await hooks.delete(request, svc, await admit(request, svc))


async def rotate_webhook_secret(request: Request) -> Response:
    svc = services(request)
    return await hooks.rotate_secret(request, svc, await admit(request, svc))


async def webhook_deliveries(request: Request) -> Response:
    svc = services(request)
    return await hooks.deliveries(request, svc, await admit(request, svc))


async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)


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


async def problem_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return Problem(exc.status_code, exc.detail, headers=dict(exc.headers or {})).response()


# Per client: a connection per command in flight. At a few hundred concurrent requests
# redis-py's default of 100 runs out, and a request then fails outright
# (MaxConnectionsError) where it would have waited a moment.
MAX_CONNECTIONS = 2000


def create_app(settings: Settings) -> Starlette:
    # Counting is in memory; the lifespan's flusher adds it to Redis.
    registry = metrics.Registry()
    drain = Drain(settings.drain_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Whatever fails, at start-up or shutdown, everything opened so far is closed,
        # in reverse order: the flusher's last flush still has its client.
        async with contextlib.AsyncExitStack() as opened:
            options = {
                "decode_responses": True,
                "socket_connect_timeout": 2,
                "health_check_interval": 30,
                "max_connections": MAX_CONNECTIONS,
            }
            client = async_client(settings, **options)
            opened.push_async_callback(client.aclose)
            broker_client = async_client(settings.broker(), **options)
            opened.push_async_callback(broker_client.aclose)
            # Tasks expire, and rate-limit windows turn, on the broker's clock.
            broker_clock = ServerClock()
            await opened.enter_async_context(broker_clock.kept(broker_client))
            listener = ResultListener(broker_client)
            await listener.start()
            opened.push_async_callback(listener.stop)
            store = AsyncStore(client)
            flusher = Flusher(registry, store)
            flusher.start()
            opened.push_async_callback(flusher.stop)
            broker = AsyncBroker(broker_client)
            admission = Admission(broker, settings.result_timeout)
            app.state.services = Services(
                settings=settings,
                store=store,
                broker=broker,
                admission=admission,
                fanout=FanOut(
                    TaskPublisher(broker_client, admission),
                    listener,
                    settings.result_timeout,
                    broker_clock,
                ),
                metrics=registry,
                webhooks=AsyncWebhooks(client),
                results=listener,
                rates=RateLimiter(broker, settings, broker_clock),
            )
            # What start-up made lives as long as the process: out of the garbage
            # collector's sight, full collections stay short (worker/app.py).
            gc.freeze()
            drain.install()
            yield

    app = Starlette(
        routes=[
            Route("/api/v1/leads/end-contact", leads, methods=["GET", "POST"]),
            Route("/api/v1/leads/end-contact/check", check, methods=["POST"]),
            # Before the lookup, whose path would take "events" as a number.
            Route("/api/v1/leads/end-contact/events", feed, methods=["GET"]),
            Route("/api/v1/leads/end-contact/{phoneNumber}", lookup, methods=["GET"]),
            Route("/api/v1/leads/end-contact/{phoneNumber}/history", history, methods=["GET"]),
            Route("/api/v1/leads/resume-contact", resume_contact, methods=["POST"]),
            # One route per path, so that a 405 names every method the path allows.
            Route("/api/v1/webhooks", webhooks, methods=["GET", "POST"]),
            Route("/api/v1/webhooks/{id}", webhook, methods=["DELETE"]),
            Route("/api/v1/webhooks/{id}/rotate-secret", rotate_webhook_secret, methods=["POST"]),
            Route("/api/v1/webhooks/{id}/deliveries", webhook_deliveries, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *docs.ROUTES,
        ],
        # No handler for Exception: RequestContext answers an unhandled error itself.
        exception_handlers={Problem: problem_response, HTTPException: http_error},
        middleware=[
            Middleware(RequestContext, metrics=registry),
            Middleware(Draining, drain=drain),
        ],
        lifespan=lifespan,
    )
    app.state.drain = drain
    # Starlette answers /path/ with a redirect to /path built from the Host header: an
    # open redirect. An unknown path is a 404 problem, as any other.
    app.router.redirect_slashes = False
    return app


def create_app_from_env() -> Starlette:
    """The factory uvicorn imports (`api.app:create_app_from_env`), once per process."""
    logs.configure()
    with exit_on_bad_settings():
        return create_app(Settings.from_env())
