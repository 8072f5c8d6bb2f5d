"""The broker's keyspace besides Celery's own, and the admission of a request's tasks.

The broker is ENDCONTACT_BROKER_URL's server, or REDIS_URL's when that is unset. It
holds what lives for seconds, so it needs no fsync (README, "Durability"):

  endcontact                      list: Celery's task queue (shared.tasks.QUEUE)
  celery-task-meta-<task id>      Celery's results, and their pub/sub channels
  ec:workers                      sorted set: worker name -> time of its last heartbeat
  ec:drain                        hash: worker name -> tasks it runs per second of work
  ec:rate:<key id>:<window>       a key's request count in one rate-limit window

Heartbeats and drain rates are here, next to the queue they describe, so that one
script reads the queue's depth and the workers' rates and pushes a request's tasks,
atomically and in one round trip (`AsyncBroker.push`). Rate-limit counters are here
because they are counted on every request: on the store each would be a write fsynced
in the request's path, and a counter lost with the broker only lets a key past its
limit for one window.

`Broker` is synchronous (worker, CLI); `AsyncBroker` is the web's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from shared.connection import sync_client
from shared.tasks import QUEUE

if TYPE_CHECKING:
    import redis.asyncio

    from shared.settings import Settings

# Sorted set: worker name -> time of its last heartbeat (seconds since the epoch).
WORKERS = "ec:workers"
# Hash: worker name -> the tasks per second it runs while it has work (worker.heartbeat).
DRAIN = "ec:drain"
# Workers beat every 2 s (worker/heartbeat.py): one silent this long is taken as gone.
WORKER_SILENCE = 10.0
# A worker silent this long is forgotten, with its drain rate.
WORKER_FORGOTTEN = 60.0

# Push the request's tasks unless the queue cannot drain them within the budget.
# KEYS: queue, workers, drain. ARGV: oldest live heartbeat, budget (s), tasks,
# messages... (none: only say whether there is room for that many tasks).
# Returns {admitted (1 or 0), depth before, drain rate of the live workers ("" if
# none)}. The rate of live workers that have not measured one yet is taken as their
# peers' mean; with no live worker, or none measured, nothing is refused (the tasks
# wait for the deadline and fail, as without this check). A request that finds the
# queue empty is always taken.
_ADMIT = """
local depth = redis.call('LLEN', KEYS[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local rate, known = 0, 0
if #live > 0 then
  for _, r in ipairs(redis.call('HMGET', KEYS[3], unpack(live))) do
    if r then
      rate = rate + tonumber(r)
      known = known + 1
    end
  end
end
if known > 0 then
  rate = rate / known * #live
  if depth > 0 and depth + tonumber(ARGV[3]) > rate * tonumber(ARGV[2]) then
    return {0, depth, tostring(rate)}
  end
end
if #ARGV > 3 then
  redis.call('LPUSH', KEYS[1], unpack(ARGV, 4))
end
if known > 0 then
  return {1, depth, tostring(rate)}
end
return {1, depth, ''}
"""


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

    @classmethod
    def connect(cls, settings: Settings) -> Broker:
        """On its own client with bounded waits, to the broker of `settings`."""
        client = sync_client(
            settings.broker(), decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(client)

    def close(self) -> None:
        self._redis.close()

    def heartbeat(self, worker: str, now: float, rate: float | None) -> None:
        """Say `worker` is alive (and its drain rate, once measured); forget workers
        silent for a minute."""
        gone = self._redis.zrangebyscore(WORKERS, "-inf", now - WORKER_FORGOTTEN)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(WORKERS, {worker: now})
            if rate is not None:
                pipe.hset(DRAIN, worker, repr(rate))
            if gone:
                pipe.zrem(WORKERS, *gone)
                pipe.hdel(DRAIN, *gone)
            pipe.execute()

    def queued(self) -> int:
        """Task messages waiting in the queue."""
        return int(self._redis.llen(QUEUE))

    def live_workers_on(self, host: str, since: float) -> int:
        """How many workers named `...@host` sent a heartbeat at or after `since`."""
        names = self._redis.zrangebyscore(WORKERS, since, "+inf")
        return sum(1 for name in names if str(name).endswith(f"@{host}"))

    def forget_worker(self, worker: str) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(WORKERS, worker)
            pipe.hdel(DRAIN, worker)
            pipe.execute()


class AsyncBroker:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._admit = client.register_script(_ADMIT)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def live_workers(self, since: float) -> int:
        """How many workers sent a heartbeat at or after `since`."""
        return int(await self._redis.zcount(WORKERS, since, "+inf"))

    async def gauges(self, since: float) -> tuple[int, int]:
        """The workers alive since `since`, and the queue's length."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(WORKERS, since, "+inf")
            pipe.llen(QUEUE)
            workers, queued = await pipe.execute()
        return int(workers), int(queued)

    async def push(self, messages: list[str], since: float, budget: float) -> Admitted:
        """LPUSH the messages unless the workers alive since `since` cannot drain the
        queue and them within `budget` seconds (the script above)."""
        return await self._run(len(messages), messages, since, budget)

    async def room(self, tasks: int, since: float, budget: float) -> Admitted:
        """Whether `push` of that many tasks would be admitted now; pushes nothing."""
        return await self._run(tasks, [], since, budget)

    async def _run(self, tasks: int, messages: list[str], since: float, budget: float) -> Admitted:
        admitted, depth, rate = await self._admit(
            keys=[QUEUE, WORKERS, DRAIN], args=[since, budget, tasks, *messages]
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
