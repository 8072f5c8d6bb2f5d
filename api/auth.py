"""Who is calling: the x-api-key header resolved to an active key, or a 401."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import redis

from api.problems import unauthorized, unavailable
from shared.apikeys import looks_like_key

if TYPE_CHECKING:
    from starlette.requests import Request

    from shared.apikeys import ApiKey
    from shared.store import AsyncStore

HEADER = "x-api-key"
# A key check is one Redis read; past this, Redis is in trouble and the client is
# better told to come back (503) than kept waiting.
LOOKUP_TIMEOUT = 2.0


async def authenticate(request: Request, store: AsyncStore) -> ApiKey:
    secret = request.headers.get(HEADER, "")
    if not looks_like_key(secret):
        raise unauthorized()
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            key = await store.find_key(secret)
    except (TimeoutError, redis.RedisError, OSError):
        raise unavailable("The API key cannot be checked right now; retry shortly.") from None
    if key is None or not key.active:
        raise unauthorized()
    return key
