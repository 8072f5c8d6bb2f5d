"""The client's pure parts: chunking, the deadline, backoff with full jitter, Retry-After."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# What one request may carry: the service's own limits (shared.events.MAX_NUMBERS,
# api.body.CHECK_MAX_NUMBERS; a longer list is a 400), written here because the client
# imports nothing of the service; tests/unit/test_client_retry.py checks they are equal.
CHANGE_CHUNK = 50
CHECK_CHUNK = 1000
_SECONDS = re.compile(r"[0-9]+")
# A share of Retry-After a client waits beyond it, at most (wait_before_retry).
RETRY_AFTER_SPREAD = 0.5


@dataclass(frozen=True)
class Chunk:
    """A slice of the caller's list and where it starts in it (for pointers and order)."""

    offset: int
    numbers: list[str]


def chunks(numbers: Sequence[str], size: int) -> list[Chunk]:
    """`numbers` in slices of at most `size`, in order. An empty list is one empty chunk:
    the service, not the client, says what is wrong with it."""
    if size < 1:
        raise ValueError("size must be at least 1")
    if not numbers:
        return [Chunk(0, [])]
    return [Chunk(i, list(numbers[i : i + size])) for i in range(0, len(numbers), size)]


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock after which no request is started."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + max(0.0, seconds))

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th wait (from 0) is uniform in
    [0, min(cap, base * 2**n)], so that clients that failed together do not come back
    together."""

    base: float = 0.25
    cap: float = 10.0

    def ceiling(self, attempt: int) -> float:
        # 2**60 seconds is past any cap; the exponent stops there, so no overflow.
        return min(self.cap, self.base * 2.0 ** min(attempt, 60))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        # Jitter, not cryptography.
        return (rng or _random).uniform(0.0, self.ceiling(attempt))


_random = random.Random()  # noqa: S311


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110 10.2.3); a date
    in the past is 0. None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" reads as naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


def wait_before_retry(
    retry_after: float | None,
    attempt: int,
    backoff: Backoff,
    remaining: float,
    rng: random.Random | None = None,
) -> float | None:
    """How long to wait before trying again, or None to give up: when the wait (the
    service's Retry-After if it gave one, else the backoff's) would end past the
    deadline, waiting is pointless.

    Retry-After is the least wait. The clients the service refused together were told
    the same, and each waits up to RETRY_AFTER_SPREAD of it longer, at random, so that
    they do not come back together to be refused together again (unless the spread
    would take the wait past the deadline: then exactly Retry-After)."""
    if retry_after is None:
        delay = backoff.delay(attempt, rng)
    else:
        delay = retry_after + (rng or _random).uniform(0.0, RETRY_AFTER_SPREAD * retry_after)
        if delay >= remaining:
            delay = retry_after
    return delay if delay < remaining else None
