"""Overload is refused, not absorbed: a request's tasks are queued only if the workers
can drain the queue ahead of them, and them, within the request's deadline.

Each worker publishes the tasks per second it drains while it has work
(worker.heartbeat); one script on the broker reads the queue's depth and the live
workers' rates and pushes the request's messages, or refuses them, atomically and in
one round trip (shared.broker). A refusal is a 503 problem with Retry-After, the
seconds the queue ahead takes to drain at that rate; nothing of a refused request is
queued. With no live worker, or none that has measured its rate yet, nothing is
refused: the tasks wait for their deadline and fail, as they always did.

While overloaded, the queue sits at the edge of the budget and most requests are
refused. So when this process refused one in the last few seconds, or has other
requests on their way to a queue that may be near its budget, it first asks the broker
(no fsync there) whether a full request would fit, and a refusal costs that one round
trip: not the key's lookup on the store, whose every reply waits for its fsync, nor
the body's parsing or the messages' building, which are most of a request's CPU. A
request on its way holds its room until it is about to push, and the next ones ask for
room beside it; otherwise all those that arrive while room opens (or at once, in a
burst) would pass, take the slow path and, but one, be refused at its end. A lone
request (one client) goes straight on, and so do requests while the queue, as the
broker last told it, and those on their way fill less than NEAR_SHARE of the budget:
there every check would say yes, at a round trip a request (a twentieth of the web's
CPU at 16 clients). And a request that would not fit beside those on their way, into
an empty queue and twice the budget, is refused asking no one: a herd of clients that
come back together reaches the app at once (cli.accepting), and each asking would be
a round trip and, at once, a connection of its own to the broker.

A request's deadline runs from its arrival (api.middleware.arrived): one left, once its
key and body are read, with too little of it for the budget and its own tasks
(LATE_SHARE: a slow upload, or an event loop behind) is refused before its push.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import redis

from api.problems import Problem
from shared.events import MAX_NUMBERS
from shared.settings import whole_number

if TYPE_CHECKING:
    from shared.broker import Admitted, AsyncBroker

# The share of the deadline the queue ahead of a request may take. The rest is for the
# request's own tasks, the web's work, and the estimate's error (a rate measured a few
# seconds ago, when the CPU may have been shared differently).
BUDGET_SHARE = 0.5
# After a refusal, how long requests are first checked against the broker.
WATCHFUL = 5.0
# A request with less than this share of its deadline left when it is about to be
# queued is refused: the queue ahead may take the budget, and its own tasks need some
# time after that.
LATE_SHARE = BUDGET_SHARE + 0.1
# Requests on their way are checked early only while the queue the broker last told
# of and they would fill more than this share of the budget: far below it, every check
# says yes. Half: a burst from a quiet queue lets at most half the budget's worth
# through to be refused at their push, at the CPU of their slow path.
NEAR_SHARE = 0.5
# Requests of one process on their way to the queue may bring at most this many
# budgets' worth of tasks: past it, one more is refused at once. Not one budget: the
# queue drains while they make their way (their keys, their bodies), and with one a
# herd of 512 clients at a 2 s deadline was refused more and answered later (slowest
# 3.8 and 4.0 s against 1.8 and 1.9 s with two; bench/README.md).
ON_THEIR_WAY_MOST = 2.0
# The early check's wait; past it, the request goes on as if there were room.
CHECK_TIMEOUT = 0.5
# Fewer bytes of JSON than any phone number takes in the list (quotes and comma
# included): a body's length bounds how many numbers it can hold before it is parsed.
MIN_NUMBER_BYTES = 8


def most_numbers(content_length: str | None) -> int:
    """At most how many numbers a body of that declared length holds."""
    length = whole_number(content_length or "", 0, sys.maxsize)
    if length is None:
        return MAX_NUMBERS
    return max(1, min(MAX_NUMBERS, length // MIN_NUMBER_BYTES))


class Room:
    """The tasks one request on its way to the queue may bring."""

    def __init__(self, admission: Admission, tasks: int) -> None:
        self._admission = admission
        self.tasks = tasks

    def fit(self, tasks: int) -> None:
        """The request's numbers are known: hold room for exactly these."""
        self._admission.hold(tasks - self.tasks)
        self.tasks = tasks


class Admission:
    def __init__(self, broker: AsyncBroker, timeout: float) -> None:
        self._broker = broker
        self._timeout = timeout
        self._budget = BUDGET_SHARE * timeout
        self._refused_at = -math.inf  # time.monotonic() of this process's last refusal
        # Tasks of this process's requests let through, not yet pushed.
        self._held = 0
        # What the broker said last (a push or a check), if it said anything yet.
        self._seen: Admitted | None = None

    def in_time(self, remaining: float) -> None:
        """Refuse a request left with too little of its deadline: a 503 problem."""
        if remaining < LATE_SHARE * self._timeout:
            waited = self._timeout - remaining
            raise self._refuse(
                f"This request took {waited:.1f} s to arrive and be read, too long to be done "
                "in time; nothing of it was queued.",
                waited,
            )

    @contextlib.asynccontextmanager
    async def room(self, content_length: str | None) -> AsyncIterator[Room]:
        """Around a request's steps before its push: hold room for as many tasks as its
        body can hold (Room.fit once known); when watchful (above), refuse at once
        unless they fit beside those of the requests already on their way."""
        ahead = self._held
        room = Room(self, most_numbers(content_length))
        self.hold(room.tasks)
        try:
            self._beside(ahead, room.tasks)
            if time.monotonic() - self._refused_at <= WATCHFUL or (
                ahead and self._near(room.tasks + ahead)
            ):
                await self._check(room.tasks + ahead)
            yield room
        finally:
            self.hold(-room.tasks)

    def _beside(self, ahead: int, tasks: int) -> None:
        """Refuse at once, asking no one, a request that cannot fit beside those of
        this process already on their way (ON_THEIR_WAY_MOST): a herd of clients come
        back together (all at one turn of the loop, cli.accepting) would otherwise all
        ask the broker, each on a connection of its own, and go on to be refused at
        their push."""
        seen = self._seen
        if not ahead or seen is None or seen.rate is None:
            return
        if ahead + tasks > ON_THEIR_WAY_MOST * seen.rate * self._budget:
            raise self._refuse(
                "More requests are on their way to the queue than the workers can do in "
                "time; nothing of this request was queued.",
                (ahead + tasks) / seen.rate,
            )

    def hold(self, tasks: int) -> None:
        self._held += tasks

    def _near(self, tasks: int) -> bool:
        """Whether `tasks` more may bring the queue near its budget, as far as this
        process knows: yes until the broker has said anything."""
        seen = self._seen
        if seen is None:
            return True
        if seen.rate is None:
            return False  # nothing is refused until a worker has measured its rate
        return seen.depth + tasks > NEAR_SHARE * seen.rate * self._budget

    async def _check(self, tasks: int) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                seen = await self._broker.room(tasks, self._budget)
        except (TimeoutError, redis.RedisError, OSError):
            return  # the request's own steps will meet the broker's trouble
        self._decide(seen, tasks)

    async def push(self, messages: list[str]) -> None:
        """Queue the messages, or raise a 503 problem if they cannot be done in time."""
        pushed = await self._broker.push(messages, self._budget)
        self._decide(pushed, len(messages))

    def _decide(self, seen: Admitted, count: int) -> None:
        self._seen = seen
        if seen.admitted:
            return
        assert seen.rate is not None  # the script refuses only with a measured rate
        # Until the queue ahead has drained: a client told to come back as soon as
        # there is room for it alone comes back with every other refused client and
        # is mostly refused again, at a cost in the web's CPU each time.
        raise self._refuse(
            "More tasks are queued than the workers can do in time; nothing of this "
            "request was queued.",
            (seen.depth + count) / seen.rate,
        )

    def _refuse(self, reason: str, wait: float) -> Problem:
        """The 503 problem of a refusal, from which this process is watchful (WATCHFUL):
        come back in `wait` seconds, at least one, never past a deadline (by which every
        task queued now has been done or has expired)."""
        self._refused_at = time.monotonic()
        seconds = min(max(1, math.ceil(wait)), math.ceil(self._timeout))
        return Problem(
            503,
            f"{reason} Retry in {seconds} s.",
            type="/problems/overloaded",
            headers={"Retry-After": str(seconds)},
        )
