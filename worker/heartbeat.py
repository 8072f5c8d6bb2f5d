"""Each worker says it is alive in Redis every few seconds, so the web's /readyz can
tell whether anyone will run its tasks without a broadcast round to every worker; on
the same beat it adds its metrics to everyone's (shared.metrics)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis

from shared.metrics import Registry
from shared.store import Store

INTERVAL = 2.0
log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, store: Store, name: str, metrics: Registry) -> None:
        self._store = store
        self._name = name
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(INTERVAL * 2)
        self._flush()
        # If Redis is away, the entry ages out of /readyz's window by itself.
        with contextlib.suppress(redis.RedisError, OSError):
            self._store.forget_worker(self._name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._store.heartbeat(self._name, time.time())
            except (redis.RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc.__class__.__name__)
            self._flush()
            self._stop.wait(INTERVAL)

    def _flush(self) -> None:
        with self._metrics.flushing() as counts:
            if counts:
                self._store.add_metrics(counts)
