"""One clock for the times that processes compare: the server's that holds them.

A heartbeat, a dispatcher's sign of life, a claimed retry's lease and a retry's due
time are written by one process and compared by another, often on another machine,
whose clock may be off by seconds: a worker 10 s behind was taken for dead, and a
retry came due 10 s early or late. So each such time is the server's (`TIME`), read
in the script that writes or compares it (SERVER_TIME below; a script may read TIME
and then write, since Redis 5 replicates scripts by their effects).

Where a time is needed with no round trip to spare (a task's expiry, set by the web
and checked by the worker, both on the end-contact path; the moment a webhook attempt
is signed), a process keeps its offset to the server's clock (ServerClock), read in a
round trip it makes anyway or now and then in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import redis

from shared import background, lua
from shared.connection import failure

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)

# Lua, at the top of a script: the server's time (`server_time`, `now_ms`).
SERVER_TIME = lua.load("shared", "server_time")

# A process that reads the clock in the background (the web) reads it this often:
# clocks drift by far less than a millisecond in that time; a clock set by hand or by
# NTP is followed within it.
READ_EVERY = 5.0
# A reading that takes longer than this is worth nothing: the next one is soon.
READ_TIMEOUT = 1.0


def seconds(reply: Sequence[Any]) -> float:
    """TIME's reply (seconds, microseconds; numbers or strings) in seconds."""
    return int(reply[0]) + int(reply[1]) / 1_000_000


class ServerClock:
    """A process's reading of a server's clock: its own, plus the offset measured at
    the last reading (none before the first: its own clock, as if in step)."""

    def __init__(self) -> None:
        self.offset = 0.0  # seconds: the server's clock minus this process's
        self._failing = False  # the last background reading failed (logged once)

    def observe(self, server: float, sent: float, received: float) -> None:
        """The server said its clock was `server` (s) in a round trip that this
        process's clock (time.time()) saw leave at `sent` and come back at `received`.
        Taken as read half-way: off by at most half the round trip."""
        self.offset = server - (sent + received) / 2

    def now(self) -> float:
        """The server's time now, in seconds since the epoch."""
        return time.time() + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    async def read(self, client: redis.asyncio.Redis) -> None:
        """Read the server's clock (TIME) now; a failure is logged, the offset kept."""
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                sent = time.time()
                reply = await client.time()
                self.observe(seconds(reply), sent, time.time())
        except (TimeoutError, redis.RedisError, OSError) as exc:
            if not self._failing:
                log.warning("could not read the server's clock: %s", failure(exc))
            self._failing = True
        else:
            self._failing = False

    @contextlib.asynccontextmanager
    async def kept(self, client: redis.asyncio.Redis) -> AsyncIterator[None]:
        """Read now, then every READ_EVERY seconds in the background, while inside."""
        await self.read(client)
        task = asyncio.create_task(self._keep_reading(client), name="clock-reader")
        try:
            yield
        finally:
            # Within a deadline: a cancellation may be lost in a reading (shared.background).
            await background.stop(task)

    async def _keep_reading(self, client: redis.asyncio.Redis) -> None:
        while True:
            await asyncio.sleep(READ_EVERY)
            await self.read(client)
