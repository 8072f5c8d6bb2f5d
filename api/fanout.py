"""One request's numbers out as Celery tasks, and their outcomes back, by a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis

from shared.phones import mask
from shared.tasks import TASK_NAMES, task_args

if TYPE_CHECKING:
    from api.publisher import TaskPublisher
    from api.results import ResultListener, Watch
    from shared.apikeys import Scope
    from shared.clock import ServerClock
    from shared.events import Context

log = logging.getLogger(__name__)

# After the deadline, one last read of the result keys may take this long: the
# request answers within its timeout plus this margin, whatever Redis does.
SWEEP_TIMEOUT = 0.25


@dataclass
class Outcome:
    success: list[str] = field(default_factory=list)
    failure: list[str] = field(default_factory=list)
    # Of the failures, those whose task was published but not done by the deadline;
    # the rest failed in the worker or never reached the queue (metrics tell them apart).
    timed_out: int = 0


class FanOut:
    def __init__(
        self,
        publisher: TaskPublisher,
        listener: ResultListener,
        broker_clock: ServerClock,
    ) -> None:
        self._publisher = publisher
        self._listener = listener
        self._broker_clock = broker_clock

    async def change(
        self, kind: str, scope: Scope, phones: list[str], context: Context, deadline: float
    ) -> Outcome:
        """Run one task per number to end or resume contact (`kind`, shared.events) by
        `deadline` (time.monotonic()); a task not known to have succeeded is a failure."""
        # Past its request's deadline a task is pointless: the worker discards it, and
        # the store refuses its write. Taken before the deadline, so that it is never
        # later: what is answered as a failure is never made afterwards. On the broker's
        # clock, which the worker reads too (worker.celery_seam): neither machine's clock need
        # be right. Read in the background (ServerClock.kept), not in this request's path.
        remaining = deadline - time.monotonic()
        expires = datetime.fromtimestamp(self._broker_clock.now() + remaining, UTC)
        loop = asyncio.get_running_loop()
        at = loop.time() + remaining
        task_ids = [self._listener.new_task_id() for _ in phones]
        messages = self._publisher.messages(
            task_ids,
            [task_args(scope, phone, context) for phone in phones],
            [repr([mask(phone)]) for phone in phones],
            expires,
            TASK_NAMES[kind],
        )
        with self._listener.watch(task_ids) as watch:
            published = redis_failed = False
            try:
                async with asyncio.timeout_at(at):
                    await self._listener.ready()
                    # Set first: an LPUSH cut off by the deadline may still have landed.
                    published = True
                    await self._publisher.publish(messages)
                    await watch.wait()
            except TimeoutError:
                pass
            except (redis.RedisError, OSError) as exc:
                log.warning("fan-out failed: %s", exc.__class__.__name__)
                redis_failed = True
            if published and watch.pending():
                await self._last_look(watch)
            succeeded = watch.results()
        outcome = Outcome()
        for phone, ok in zip(phones, succeeded, strict=True):
            (outcome.success if ok else outcome.failure).append(phone)
            if ok is None and published and not redis_failed:
                outcome.timed_out += 1
        return outcome

    async def _last_look(self, watch: Watch) -> None:
        """Results can land while the subscription is down: read the keys, briefly."""
        try:
            async with asyncio.timeout(SWEEP_TIMEOUT):
                await self._listener.sweep(watch)
        except (TimeoutError, redis.RedisError, OSError):
            pass
