"""Each worker says it is alive on the broker every few seconds, so the web's /readyz can
tell whether anyone will run its tasks without a broadcast round to every worker, and
says how many tasks a second it runs, so the web can refuse what cannot be done in
time (api.admission); on the same beat it adds its metrics to everyone's in the store
(shared.metrics), and now and then it trims the change feeds nobody writes to
(Store.trim_feeds: writes trim their own campaign's as they go). Each beat also reads
the broker's clock, on which the web sets a task's expiry, and the store's, on which
the write script checks it (shared.clock, worker.celery_seam.batch)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import redis

from shared.broker import Broker
from shared.clock import ServerClock
from shared.connection import failure
from shared.metrics import TASKS, Registry
from shared.store import Store

INTERVAL = 2.0
# Seconds between two sweeps of every feed, by whichever worker asks first: an idle
# campaign's events leave its feed at most about this long after their retention.
TRIM_EVERY = 60.0
log = logging.getLogger(__name__)
# A pause between two tasks shorter than this is the fetch of the next message, which
# is part of the work; a longer one is waiting for work, which is not.
FETCH_GAP = 0.05
# The drain rate is measured over the last few beats (about 6 s).
WINDOW_BEATS = 3


@dataclass(frozen=True)
class Beat:
    """What one worker did between two heartbeats."""

    tasks: float
    busy: float  # seconds in tasks, and in short gaps between them
    wall: float  # seconds
    saturated: bool  # the queue had work waiting at both heartbeats


class DrainMeter:
    """Tasks this worker drains from the queue per second while it has work.

    When the queue had work waiting at both ends of the last beat, the worker was busy
    throughout: its rate is tasks per wall-clock second over such beats, which counts
    everything (fetching messages, sharing the CPU). Otherwise it is tasks per second
    of work, so an idle worker keeps the rate it showed when busy (a rate per
    wall-clock second would fall to zero, and the web would refuse the first requests
    after a quiet spell): run time from Celery's task_prerun to task_postrun (the task
    and its result's store) plus short gaps between tasks. Tasks are the registry's
    `endcontact_tasks_total` that ran (success or error), however many numbers one
    execution carries.
    """

    def __init__(self, metrics: Registry) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._busy = 0.0
        self._started: float | None = None
        self._finished = -math.inf
        self._window: deque[Beat] = deque(maxlen=WINDOW_BEATS)
        # Tasks run, busy seconds, time and whether work was waiting, at the last beat.
        self._last = (0.0, 0.0, time.perf_counter(), False)
        self._rate: float | None = None

    def task_started(self, **kwargs: object) -> None:
        now = time.perf_counter()
        with self._lock:
            if now - self._finished < FETCH_GAP:
                self._busy += now - self._finished
            self._started = now

    def task_finished(self, **kwargs: object) -> None:
        now = time.perf_counter()
        with self._lock:
            if self._started is not None:
                self._busy += now - self._started
            self._started = None
            self._finished = now

    def rate(self, waiting: bool) -> float | None:
        """At a heartbeat (`waiting`: the queue has work now), the rate over the last
        beats; the last one measured, while idle; None before the first task."""
        ran = sum(self._metrics.total(TASKS, {"outcome": o}) for o in ("success", "error"))
        now = time.perf_counter()
        with self._lock:
            busy = self._busy
        ran_before, busy_before, before, waited = self._last
        self._window.append(
            Beat(ran - ran_before, busy - busy_before, now - before, waited and waiting)
        )
        self._last = (ran, busy, now, waiting)
        full = [beat for beat in self._window if beat.saturated]
        if self._window[-1].saturated and sum(beat.tasks for beat in full) > 0:
            self._rate = sum(beat.tasks for beat in full) / sum(beat.wall for beat in full)
        else:
            tasks = sum(beat.tasks for beat in self._window)
            seconds = sum(beat.busy for beat in self._window)
            if tasks > 0 and seconds > 0:
                self._rate = tasks / seconds
        return self._rate


class Heartbeat:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        name: str,
        metrics: Registry,
        meter: DrainMeter,
        clock: ServerClock,
        store_clock: ServerClock,
    ) -> None:
        self._store = store
        self._broker = broker
        self._clock = clock
        self._store_clock = store_clock
        self._name = name
        self._metrics = metrics
        self._meter = meter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        # The first beat before the worker takes a task: it reads the broker's clock.
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(INTERVAL * 2)
        self._flush()
        # If Redis is away, the entry ages out of /readyz's window by itself.
        with contextlib.suppress(redis.RedisError, OSError):
            self._broker.forget_worker(self._name)

    def _run(self) -> None:
        trimmed = -math.inf  # a first sweep at start-up
        while True:
            self._flush()
            try:
                # At start-up, not at the first batch: a webhook made meanwhile would
                # write beside names the upgrade moves (shared.migrations).
                self._store.upgrade_keyspace()
            except (redis.RedisError, OSError) as exc:
                log.warning("the keyspace's upgrade failed: %s", failure(exc))
            if time.monotonic() - trimmed >= TRIM_EVERY:
                trimmed = time.monotonic()
                try:
                    self._store.trim_feeds(every_ms=int(TRIM_EVERY * 1000))
                except (redis.RedisError, OSError) as exc:
                    log.warning("trimming the feeds failed: %s", failure(exc))
            if self._stop.wait(INTERVAL):
                return
            self._beat()

    def _beat(self) -> None:
        try:
            waiting = self._broker.queued() > 0
            rate = self._meter.rate(waiting)
            sent = time.time()
            server = self._broker.heartbeat(self._name, rate)
            self._clock.observe(server, sent, time.time())
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeat failed: %s", failure(exc))
        try:
            sent = time.time()
            server = self._store.time()
            self._store_clock.observe(server, sent, time.time())
        except (redis.RedisError, OSError) as exc:
            log.warning("reading the store's clock failed: %s", failure(exc))

    def _flush(self) -> None:
        with self._metrics.flushing() as counts:
            if counts:
                self._store.add_metrics(counts)
