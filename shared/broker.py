"""The broker's keyspace besides Celery's own, and the admission of a request's tasks.

The broker is ENDCONTACT_BROKER_URL's server, or REDIS_URL's when that is unset. It
holds what lives for seconds, so it needs no fsync (docs/durability.md):

  endcontact                      list: Celery's task queue (shared.tasks.QUEUE)
  celery-task-meta-<task id>      Celery's results, and their pub/sub channels
  ec:workers                      sorted set: worker name -> time of its last heartbeat
  ec:drain                        hash: worker name -> tasks it runs per second of work
  ec:rate:<key id>:<window>       a key's request count in one rate-limit window

Heartbeats and drain rates are here, next to the queue they describe, so that one
script reads the queue's depth and the workers' rates and pushes a request's tasks,
atomically and in one round trip (`AsyncBroker.push`). A heartbeat's time is the
broker's, read by the script that writes it and by each that asks who is alive
(shared.clock): a worker whose own clock is off is still alive. Rate-limit counters are here
because they are counted on every request: on the store each would be a write fsynced
in the request's path, and a counter lost with the broker only lets a key past its
limit for one window.

`Broker` is synchronous (worker, CLI); `AsyncBroker` is the web's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from shared import lua
from shared.clock import SERVER_TIME, seconds
from shared.connection import sync_client
from shared.tasks import QUEUE

if TYPE_CHECKING:
    import redis.asyncio

    from shared.settings import Settings

# Sorted set: worker name -> time of its last heartbeat (the broker's, seconds since
# the epoch).
WORKERS = "ec:workers"
# Hash: worker name -> the tasks per second it runs while it has work (worker.heartbeat).
DRAIN = "ec:drain"
# Workers beat every 2 s (worker/heartbeat.py): one silent this long is taken as gone.
WORKER_SILENCE = 10.0
# A worker silent this long is forgotten, with its drain rate.
WORKER_FORGOTTEN = 60.0

# Say a worker is alive; forget those long silent. Returns the broker's TIME.
_HEARTBEAT_SCRIPT = SERVER_TIME + lua.load("shared", "broker_heartbeat")
# `live`, the workers that beat within WORKER_SILENCE: the start of the two below.
_LIVE_WORKERS = SERVER_TIME + lua.load("shared", "broker_live_workers")
# The live workers' names, and the queue's length.
_LIVE_SCRIPT = _LIVE_WORKERS + lua.load("shared", "broker_live")
# Push a request's tasks unless the queue cannot drain them within the budget.
_ADMIT_SCRIPT = _LIVE_WORKERS + lua.load("shared", "broker_admit")


@dataclass(frozen=True)
class Admitted:
    """What the admission script saw: whether there was room, the depth, the rate."""

    admitted: bool
    depth: int
    # Tasks per second the live workers drain; None when no live worker measured one.
    rate: float | None


class Broker:
    def __init__(self, client: redis.Redis) -> None:
        # The client must decode responses.
        self._redis = client
        self._beat = client.register_script(_HEARTBEAT_SCRIPT)
        self._live = client.register_script(_LIVE_SCRIPT)

    @classmethod
    def connect(cls, settings: Settings) -> Broker:
        """On its own client with bounded waits, to the broker of `settings`."""
        client = sync_client(
            settings.broker(), decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(client)

    def close(self) -> None:
        self._redis.close()

    def heartbeat(self, worker: str, rate: float | None) -> float:
        """Say `worker` is alive (and its drain rate, once measured); forget workers
        silent for a minute. Returns the broker's time (s) when it was said."""
        args: list[str | float] = [worker, WORKER_FORGOTTEN, "" if rate is None else repr(rate)]
        return seconds(self._beat(keys=[WORKERS, DRAIN], args=args))

    def queued(self) -> int:
        """Task messages waiting in the queue."""
        return int(self._redis.llen(QUEUE))

    def live_workers_on(self, host: str) -> int:
        """How many workers named `...@host` are alive (a heartbeat in WORKER_SILENCE)."""
        names, _ = self._live(keys=[QUEUE, WORKERS], args=[WORKER_SILENCE])
        return sum(1 for name in names if str(name).endswith(f"@{host}"))

    def forget_worker(self, worker: str) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(WORKERS, worker)
            pipe.hdel(DRAIN, worker)
            pipe.execute()


class AsyncBroker:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._admit = client.register_script(_ADMIT_SCRIPT)
        self._live = client.register_script(_LIVE_SCRIPT)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def live_workers(self) -> int:
        """How many workers are alive (a heartbeat in the last WORKER_SILENCE)."""
        return (await self.gauges())[0]

    async def gauges(self) -> tuple[int, int]:
        """The live workers, and the queue's length."""
        names, queued = await self._live(keys=[QUEUE, WORKERS], args=[WORKER_SILENCE])
        return len(names), int(queued)

    async def push(self, messages: list[str], budget: float) -> Admitted:
        """LPUSH the messages unless the live workers cannot drain the queue and them
        within `budget` seconds (the script above)."""
        return await self._run(len(messages), messages, budget)

    async def room(self, tasks: int, budget: float) -> Admitted:
        """Whether `push` of that many tasks would be admitted now; pushes nothing."""
        return await self._run(tasks, [], budget)

    async def _run(self, tasks: int, messages: list[str], budget: float) -> Admitted:
        admitted, depth, rate = await self._admit(
            keys=[QUEUE, WORKERS, DRAIN], args=[WORKER_SILENCE, budget, tasks, *messages]
        )
        return Admitted(bool(admitted), int(depth), float(rate) if rate else None)

    async def count_request(self, key_id: str, slot: int, window: int) -> int:
        """Count a request of `key_id` in time slot `slot`; the count so far."""
        name = f"ec:rate:{key_id}:{slot}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(name)
            # Kept a little past its window; an old window's counter is never read.
            pipe.expire(name, window + 5)
            count, _ = await pipe.execute()
        return int(count)
