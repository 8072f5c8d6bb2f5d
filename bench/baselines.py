"""The systems endcontact is measured against, behind the same HTTP stack.

- naive: the same endpoint as most people write it: auth and validation as ours, then
  `group(...).apply_async()` and `GroupResult.get(timeout=...)` in one function run
  in Starlette's threadpool.
- direct: no queue at all: the 50 marks written in one Redis pipeline. The physical
  floor of the business write through this HTTP stack.

uvicorn imports them as factories: `bench.baselines:naive_app`, `bench.baselines:direct_app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis
import redis.asyncio
from celery import group
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import KnownKeys, authenticate
from api.body import check_content_type, phone_numbers, read_body
from api.problems import Problem
from shared.keyspace import ended_key
from shared.settings import Settings
from shared.store import AsyncStore, utc_now
from shared.tasks import TASK_NAME, task_args

PATH = "/api/v1/leads/end-contact"
Handler = Callable[[Request, AsyncStore, Settings], Any]


# As the service's web: the keys the store last vouched for (api.auth).
KNOWN = KnownKeys()


def _app(handler: Handler) -> Starlette:
    settings = Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis.asyncio.Redis.from_url(settings.require_redis_url(), decode_responses=True)
        app.state.store = AsyncStore(client)
        app.state.redis = client
        yield
        await client.aclose()

    async def endpoint(request: Request) -> Response:
        try:
            result: Response = await handler(request, request.app.state.store, settings)
        except Problem as problem:
            return problem.response()
        return result

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route(PATH, endpoint, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def naive_app() -> Starlette:
    from bench.typical import app as celery  # reads REDIS_URL when imported

    settings = Settings.from_env()

    def fan_out(company: str, campaign: str, phones: list[str]) -> tuple[list[str], list[str]]:
        from shared.apikeys import Scope

        scope = Scope(company, campaign)
        job = group(celery.signature(TASK_NAME, args=task_args(scope, p)) for p in phones)
        result = job.apply_async()
        # A timeout leaves the late ones as failures, as in endcontact.
        with contextlib.suppress(Exception):
            result.get(timeout=settings.result_timeout, propagate=False)
        success = [p for p, r in zip(phones, result.results, strict=True) if r.successful()]
        failure = [p for p, r in zip(phones, result.results, strict=True) if not r.successful()]
        return success, failure

    async def handler(request: Request, store: AsyncStore, settings: Settings) -> Response:
        key = await authenticate(request, store, KNOWN)
        check_content_type(request.headers.get("content-type"))
        phones = phone_numbers(await read_body(request), settings.default_region)
        success, failure = await run_in_threadpool(
            fan_out, key.scope.company, key.scope.campaign, phones
        )
        return JSONResponse({"success": success, "failure": failure}, 201)

    return _app(handler)


def direct_app() -> Starlette:
    async def handler(request: Request, store: AsyncStore, settings: Settings) -> Response:
        key = await authenticate(request, store, KNOWN)
        check_content_type(request.headers.get("content-type"))
        phones = phone_numbers(await read_body(request), settings.default_region)
        client: redis.asyncio.Redis = request.app.state.redis
        async with client.pipeline(transaction=False) as pipe:
            now = utc_now()
            for phone in phones:
                pipe.hsetnx(ended_key(key.scope), phone, now)
            await pipe.execute()
        return JSONResponse({"success": phones, "failure": []}, 201)

    return _app(handler)
