"""Per-key rate limit, shared by every web process: a counter per key and window on the
broker (shared.broker says why there)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from api.problems import Problem, or_unavailable

if TYPE_CHECKING:
    from shared.apikeys import ApiKey
    from shared.broker import AsyncBroker
    from shared.settings import Settings


async def check_rate(broker: AsyncBroker, key: ApiKey, settings: Settings) -> dict[str, str]:
    """Count this request against its key; the RateLimit headers, or a 429.

    Fixed windows: simple, one INCR, and at worst twice the limit across a window's
    edge, which is fine for a generous limit meant to stop runaway clients.
    """
    limit, window = settings.rate_limit, settings.rate_window
    if limit == 0:
        return {}
    now = time.time()
    slot = int(now // window)
    count = await or_unavailable(
        broker.count_request(key.id, slot, window),
        "The request cannot be counted right now; retry shortly.",
    )
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
