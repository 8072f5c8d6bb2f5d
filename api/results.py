"""Waiting for Celery results without polling and without blocking the event loop.

Celery's Redis result backend stores each result at `celery-task-meta-<task id>` and,
in the same transaction, publishes it on a channel of that name. Task ids are ours to
choose, so every task a web process publishes gets an id that starts with that
process's listener id, and one pattern subscription, made at start-up and confirmed
before any task is published, receives exactly this process's results: no
subscribe or unsubscribe per request, and no one else's traffic. Our workers announce
a batch's results to a process in one message on a channel inside that pattern
(shared.tasks.batch_channel); results Celery itself announces (a task that expired
in the queue, or a stock worker) come one message per task; both are read here.

Whatever the connection may miss (it dropped and came back) is read from the result
keys: after a reconnect for every waiting request, and at the deadline for whoever is
still waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis

from shared import background
from shared.connection import failure
from shared.tasks import RESULT_KEY_PREFIX, batch_channel, task_id

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client

log = logging.getLogger(__name__)

# Celery's ready states, and which of them is a success.
_OUTCOMES = {"SUCCESS": True, "FAILURE": False, "REVOKED": False}
_RECONNECT_DELAY = 0.2


def result_key(task_id: str) -> str:
    return RESULT_KEY_PREFIX + task_id


def outcome(raw: str | bytes | None) -> bool | None:
    """True for success, False for failure, None while the task is not done."""
    if raw is None:
        return None
    try:
        status = json.loads(raw).get("status")
    except (ValueError, AttributeError, RecursionError):
        # Not JSON, not an object, or nested past what the parser follows.
        return False
    return _OUTCOMES.get(status) if isinstance(status, str) else False


class Watch:
    """The outcomes of one request's tasks, filled in as their results arrive.

    One future for the request, set when the last outcome is in: a future a task, waited
    on with asyncio.wait, cost 71 µs a request of 50 (a twentieth of the web's CPU)."""

    def __init__(self, task_ids: list[str]) -> None:
        self.keys = [result_key(task_id) for task_id in task_ids]
        self._outcomes: dict[str, bool | None] = dict.fromkeys(self.keys)
        self._left = len(self._outcomes)
        self._all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._left:
            self._all_in.set_result(None)

    async def wait(self) -> None:
        """Until every task is done; the caller bounds it with its deadline."""
        await self._all_in

    def pending(self) -> list[str]:
        return [key for key, result in self._outcomes.items() if result is None]

    def settle(self, key: str, raw: str | bytes | None) -> None:
        self.settle_state(key, outcome(raw))

    def settle_state(self, key: str, result: bool | None) -> None:
        if result is None or self._outcomes.get(key, False) is not None:
            return  # not done yet, not this request's, or known already
        self._outcomes[key] = result
        self._left -= 1
        if not self._left and not self._all_in.done():
            self._all_in.set_result(None)

    def results(self) -> list[bool | None]:
        """Per task, in order: True (succeeded), False (failed) or None (not done)."""
        return list(self._outcomes.values())

    def close(self) -> None:
        self._all_in.cancel()


class ResultListener:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._pubsub: redis.asyncio.client.PubSub = client.pubsub()
        self.id = uuid.uuid4().hex
        self._pattern = f"{RESULT_KEY_PREFIX}{self.id}-*"
        self._batch_channel = batch_channel(self.id)
        self._counter = itertools.count()
        self._watches: dict[str, Watch] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # The connection dropped (or was dropped): sweep the keys once resubscribed.
        self._lost = False
        # Set by stop(): the loops end at their next turn even if a cancellation is lost
        # (shared.background).
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()

    def new_task_id(self) -> str:
        # Unique without a uuid4 per task (which costs a system call): this process's
        # random id and a counter.
        return task_id(self.id, next(self._counter))

    async def start(self) -> None:
        # Does not wait for Redis: a web process that starts before Redis (or while
        # it is down) serves 503s and failures until it is back, then recovers.
        self._task = asyncio.create_task(self._listen(), name="result-listener")

    async def stop(self) -> None:
        """Within a deadline, whatever redis-py does with a cancellation (issue 20)."""
        self._stopping = True
        tasks = [*self._background, *([self._task] if self._task is not None else [])]
        await asyncio.gather(*(background.stop(task) for task in tasks))
        # Once the tasks are over, so that none uses the connection as it closes (one that
        # would not stop has its read fail then, and ends: it is stopping).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(background.STOP_TIMEOUT):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def ready(self) -> None:
        """Returns once the subscription is confirmed: tasks may be published then."""
        await self._subscribed.wait()

    @contextlib.contextmanager
    def watch(self, task_ids: list[str]) -> Iterator[Watch]:
        """Route the tasks' results to a Watch while the block runs; then forget them."""
        watch = Watch(task_ids)
        for key in watch.keys:
            self._watches[key] = watch
        try:
            yield watch
        finally:
            for key in watch.keys:
                self._watches.pop(key, None)
            watch.close()

    async def sweep(self, watch: Watch) -> None:
        """Read the result keys of the tasks still pending (a last look)."""
        keys = watch.pending()
        if keys:
            for key, raw in zip(keys, await self._redis.mget(keys), strict=True):
                watch.settle(key, raw)

    @property
    def listening(self) -> bool:
        """Subscribed and reading: results reach their requests as they come (/readyz)."""
        return self._subscribed.is_set() and self._task is not None and not self._task.done()

    async def _listen(self) -> None:
        """Read results until stopped. Whatever stops the reading, it starts again on a
        new connection: a process whose listener had died would make every request wait
        for its whole deadline while saying it is ready (issue 19)."""
        while not self._stopping:
            try:
                await self._read()
            except Exception as exc:
                # Not Redis going away (_read waits that out): a message redis-py could
                # not decode, or a slip of ours. The connection may be in the middle of
                # a reply, so it is dropped; what was published meanwhile is in the keys.
                log.error(
                    "result listener failed; starting it again",
                    extra={
                        "error": exc.__class__.__name__,
                        "frames": "".join(traceback.format_tb(exc.__traceback__)),
                    },
                )
                self._subscribed.clear()
                self._lost = True
                await self._new_pubsub()
                await asyncio.sleep(_RECONNECT_DELAY)

    async def _read(self) -> None:
        while not self._stopping:
            try:
                if not self._pubsub.patterns:
                    await self._pubsub.psubscribe(self._pattern)
                message = await self._pubsub.get_message(timeout=None)
            except (redis.RedisError, OSError) as exc:
                if not self._lost:
                    log.warning("result listener lost the broker: %s", failure(exc))
                self._lost = True
                self._subscribed.clear()
                # Subscribed afresh, not left to redis-py, which resubscribes a connection
                # it reconnects but keeps the pattern as subscribed if the server refuses
                # that (an ACL, say): the connection stays open and nothing would ever
                # subscribe again (issue 19).
                await self._new_pubsub()
                await asyncio.sleep(_RECONNECT_DELAY)
                continue
            if message is None:
                continue
            if message["type"] == "pmessage":
                if message["channel"] == self._batch_channel:
                    self._settle_batch(message["data"])
                else:
                    watch = self._watches.get(message["channel"])
                    if watch is not None:
                        watch.settle(message["channel"], message["data"])
            elif message["type"] == "psubscribe":
                self._subscribed.set()
                if self._lost:
                    # Back, and resubscribed; what was published while we were away is
                    # only in the keys.
                    self._lost = False
                    log.info("result listener reconnected")
                    self._spawn(self._sweep_all())

    async def _new_pubsub(self) -> None:
        """Drop the subscription's connection, which may be in the middle of a reply,
        for a new one; the next read subscribes on it."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(background.STOP_TIMEOUT):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        self._pubsub = self._redis.pubsub()

    def _settle_batch(self, data: str) -> None:
        """A worker's batch of results for this process: {task id: Celery state}."""
        try:
            states = json.loads(data)
            items = states.items()
        except (ValueError, AttributeError, RecursionError):
            log.warning("result listener: a batch message it cannot read")
            return
        watches = self._watches
        for task, state in items:
            key = RESULT_KEY_PREFIX + task
            watch = watches.get(key)
            if watch is not None:
                watch.settle_state(key, _OUTCOMES.get(state) if isinstance(state, str) else False)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sweep_all(self) -> None:
        for watch in {id(w): w for w in self._watches.values()}.values():
            with contextlib.suppress(redis.RedisError, OSError):
                await self.sweep(watch)
