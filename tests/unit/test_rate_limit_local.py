"""The rate limit while the broker does not answer (api.ratelimit), in process: its
counts go to a port where nothing listens, so each is refused at once and the web
process counts on its own (issue 19: reads must go on without the broker, still
limited, in bounded memory). tests/test_faults.py has the whole web with its broker
killed and stopped."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from api import ratelimit
from api.problems import Problem
from api.ratelimit import RateLimiter
from shared.apikeys import ApiKey, Scope
from shared.broker import AsyncBroker
from shared.clock import ServerClock
from shared.embedded import free_port
from shared.settings import Settings

# A day's window: the few requests of a test never straddle two.
SETTINGS = Settings.from_env({"ENDCONTACT_RATE_LIMIT": "2", "ENDCONTACT_RATE_WINDOW": "86400"})


def key(n: int) -> ApiKey:
    return ApiKey(f"key_{n:016x}", Scope("acme", "spring"), "", "2026-12-07T00:00:00Z", None)


def answers(keys: list[ApiKey]) -> list[str | int]:
    """Each request's RateLimit-Remaining, or the status it was refused with."""

    async def run() -> list[str | int]:
        client = redis.asyncio.Redis(port=free_port())  # nothing listens there
        limiter = RateLimiter(AsyncBroker(client), SETTINGS, ServerClock())
        said: list[str | int] = []
        try:
            for one in keys:
                try:
                    said.append((await limiter.check(one))["RateLimit-Remaining"])
                except Problem as refused:
                    said.append(refused.status)
        finally:
            await client.aclose()
        return said

    return asyncio.run(run())


def test_without_the_broker_each_key_is_still_limited() -> None:
    assert answers([key(1), key(1), key(1), key(2)]) == ["1", "0", 429, "1"]


def test_what_is_counted_without_the_broker_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "LOCAL_KEYS", 2)
    # Two keys counted; a third goes uncounted for the window rather than growing the
    # counts or being refused for what others did.
    assert answers([key(1), key(2), key(3), key(3), key(3), key(1)]) == [
        *["1", "1"],
        *["1", "1", "1"],
        "0",
    ]
