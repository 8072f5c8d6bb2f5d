"""The web side of shared.metrics: count requests and numbers, flush, serve /metrics."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from shared import background
from shared.metrics import FLUSH_INTERVAL, NUMBERS, Registry

if TYPE_CHECKING:
    from api.fanout import Outcome
    from shared.store import AsyncStore

# A flush that Redis does not take within this long is retried with the next one.
FLUSH_TIMEOUT = 2.0


def count_numbers(registry: Registry, outcome: Outcome) -> None:
    errors = len(outcome.failure) - outcome.timed_out
    registry.inc(NUMBERS, {"outcome": "success"}, len(outcome.success))
    registry.inc(NUMBERS, {"outcome": "failure", "reason": "timeout"}, outcome.timed_out)
    registry.inc(NUMBERS, {"outcome": "failure", "reason": "error"}, errors)


async def flush(registry: Registry, store: AsyncStore) -> None:
    """Add this process's counts to Redis; kept for the next try if Redis fails."""
    with registry.flushing() as counts:
        if counts:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await store.add_metrics(counts)


async def flush_forever(registry: Registry, store: AsyncStore) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        await flush(registry, store)


class Flusher:
    """Flushes in the background while the app runs, and once more on shutdown."""

    def __init__(self, registry: Registry, store: AsyncStore) -> None:
        self._registry = registry
        self._store = store
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            flush_forever(self._registry, self._store), name="metrics-flusher"
        )

    async def stop(self) -> None:
        if self._task is not None:
            # Within a deadline: a cancellation may be lost in a flush (shared.background).
            await background.stop(self._task)
        await flush(self._registry, self._store)
