"""Per-key rate limit, shared by every web process: a counter per key and window on the
broker (shared.broker says why there); counted in this process while the broker does
not answer."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import redis

from api.problems import Problem

if TYPE_CHECKING:
    from shared.apikeys import ApiKey
    from shared.broker import AsyncBroker
    from shared.clock import ServerClock
    from shared.settings import Settings

log = logging.getLogger("endcontact.api")
# The count is one round trip to a server next door; past this, the broker is in trouble.
BROKER_TIMEOUT = 0.25
# After a failure, how long requests are counted here before the broker is asked again:
# with a broker that hangs, each request would otherwise wait BROKER_TIMEOUT first.
LOCAL_FOR = 1.0
# Keys counted here in one window, at most: memory stays bounded whatever the traffic.
LOCAL_KEYS = 100_000


class RateLimiter:
    """Fixed windows: simple, one INCR, and at worst twice the limit across a window's
    edge, which is fine for a generous limit meant to stop runaway clients.

    The broker down must not stop the reads, which need nothing else of it (a sender
    checks before every send; issue 19): meanwhile each web process counts on its own,
    so the limit holds per process, not for the whole service, until the broker is back.
    """

    def __init__(self, broker: AsyncBroker, settings: Settings, broker_clock: ServerClock) -> None:
        self._broker = broker
        self._broker_clock = broker_clock
        self._limit = settings.rate_limit
        self._window = settings.rate_window
        # While the broker did not answer: until when requests are counted here (0: the
        # broker counts).
        self._local_until = 0.0
        self._local_slot = -1
        self._local: dict[str, int] = {}

    async def check(self, key: ApiKey) -> dict[str, str]:
        """Count this request against its key; the RateLimit headers, or a 429."""
        limit, window = self._limit, self._window
        if limit == 0:
            return {}
        # The broker's time, as every web process reads it: their windows begin and
        # end together, whatever their own clocks say.
        now = self._broker_clock.now()
        slot = int(now // window)
        count = await self._count(key.id, slot)
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

    async def _count(self, key_id: str, slot: int) -> int:
        if time.monotonic() < self._local_until:
            return self._count_here(key_id, slot)
        try:
            async with asyncio.timeout(BROKER_TIMEOUT):
                count = await self._broker.count_request(key_id, slot, self._window)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            if not self._local_until:
                log.warning(
                    "rate limit counted in this process: the broker does not answer",
                    extra={"error": exc.__class__.__name__},
                )
            self._local_until = time.monotonic() + LOCAL_FOR
            return self._count_here(key_id, slot)
        if self._local_until:
            log.info("rate limit counted on the broker again")
            self._local_until = 0.0
        return count

    def _count_here(self, key_id: str, slot: int) -> int:
        if slot != self._local_slot:
            self._local_slot, self._local = slot, {}
        if key_id not in self._local and len(self._local) >= LOCAL_KEYS:
            # Full: this key goes uncounted for the rest of the window, rather than an
            # unbounded dictionary or a refusal the key did nothing to earn.
            return 1
        count = self._local.get(key_id, 0) + 1
        self._local[key_id] = count
        return count
