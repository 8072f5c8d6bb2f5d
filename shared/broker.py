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

# Say a worker is alive, with its drain rate once measured, and forget the workers
# silent for WORKER_FORGOTTEN. KEYS: workers, drain. ARGV: the worker, WORKER_FORGOTTEN,
# its rate ('' for none). Returns the broker's TIME.
_HEARTBEAT = (
    SERVER_TIME
    + """
local now = now_ms / 1000
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
return server_time
"""
)

# Lua: `live`, the workers that beat within the last ARGV[1] seconds (WORKER_SILENCE)
# of the broker's clock. KEYS[2]: the workers' sorted set.
_LIVE_WORKERS = (
    SERVER_TIME
    + """
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now_ms / 1000 - tonumber(ARGV[1]), '+inf')
"""
)

# The live workers' names, and the queue's length. KEYS: queue, workers. ARGV:
# WORKER_SILENCE.
_LIVE = (
    _LIVE_WORKERS
    + """
return {live, redis.call('LLEN', KEYS[1])}
"""
)

# Push the request's tasks unless the queue cannot drain them within the budget.
# KEYS: queue, workers, drain. ARGV: WORKER_SILENCE, budget (s), tasks, messages...
# (none: only say whether there is room for that many tasks).
# Returns {admitted (1 or 0), depth before, drain rate of the live workers ("" if
# none)}. The rate of live workers that have not measured one yet is taken as their
# peers' mean; with no live worker, or none measured, nothing is refused (the tasks
# wait for the deadline and fail, as without this check). A request that finds the
# queue empty is always taken.
_ADMIT = (
    _LIVE_WORKERS
    + """
local depth = redis.call('LLEN', KEYS[1])
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
)


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
        self._beat = client.register_script(_HEARTBEAT)
        self._live = client.register_script(_LIVE)

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
        self._admit = client.register_script(_ADMIT)
        self._live = client.register_script(_LIVE)

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
