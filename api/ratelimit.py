"""Per-key rate limit, shared by every web process: a counter per key and window in Redis."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import redis

from api.problems import Problem, unavailable

if TYPE_CHECKING:
    from shared.apikeys import ApiKey
    from shared.settings import Settings
    from shared.store import AsyncStore

# One Redis round trip; past this, Redis is in trouble (as for the key check).
COUNT_TIMEOUT = 2.0


async def check_rate(store: AsyncStore, key: ApiKey, settings: Settings) -> dict[str, str]:
    """Count this request against its key; the RateLimit headers, or a 429.

    Fixed windows: simple, one INCR, and at worst twice the limit across a window's
    edge, which is fine for a generous limit meant to stop runaway clients.
    """
    limit, window = settings.rate_limit, settings.rate_window
    if limit == 0:
        return {}
    now = time.time()
    slot = int(now // window)
    try:
        async with asyncio.timeout(COUNT_TIMEOUT):
            count = await store.count_request(key.id, slot, window)
    except (TimeoutError, redis.RedisError, OSError):
        raise unavailable("The request cannot be counted right now; retry shortly.") from None
    reset = max(1, int((slot + 1) * window - now + 0.999))
    headers = {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, limit - count)),
        "RateLimit-Reset": str(reset),
    }
    if count > limit:
        raise Problem(
            429,
            f"More than {limit} requests in {window} s for this key; retry in {reset} s.",
            type="/problems/rate-limited",
            headers={**headers, "Retry-After": str(reset)},
        )
    return headers
