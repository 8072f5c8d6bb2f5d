"""The Starlette app, built by create_app(settings); connections live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from api.admission import Admission
from api.drain import Drain, Draining
from api.fanout import FanOut
from api.metrics import Flusher
from api.middleware import RequestContext
from api.problems import Problem
from api.publisher import TaskPublisher
from api.ratelimit import RateLimiter
from api.results import ResultListener
from api.routes import ROUTES
from api.services import Services
from shared import background, logs, metrics
from shared.broker import AsyncBroker
from shared.clock import ServerClock
from shared.connection import async_client
from shared.settings import Settings, exit_on_bad_settings
from shared.store import AsyncStore
from shared.waiting import servers, until_answering
from shared.webhook_store import AsyncWebhooks


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
            # Compose may start the web before its servers: it answers meanwhile (not
            # ready), and says at each attempt which server it waits for.
            store_server, *broker_server = servers(settings)
            waited = [(store_server, client)] + [(b, broker_client) for b in broker_server]
            waiting = asyncio.create_task(until_answering(waited), name="server-wait")
            opened.push_async_callback(background.stop, waiting)
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
        routes=ROUTES,
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
