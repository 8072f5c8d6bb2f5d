"""The Dispatcher: the follow loop (first attempts) and the claim loop (retries), each
in a thread and on a Redis client of its own, sharing how attempts are made."""

from __future__ import annotations

import contextlib
import threading

import redis

from shared.connection import sync_client
from shared.metrics import Registry
from shared.settings import Settings
from worker.deliveries import STOP_GRACE
from worker.deliveries.attempt import Attempts
from worker.deliveries.follower import Follower
from worker.deliveries.retries import Retries
from worker.yielding import Yielding


class Dispatcher:
    def __init__(
        self, settings: Settings, name: str, metrics: Registry, yielding: Yielding | None = None
    ) -> None:
        # Own clients, one per loop, bounded waits.
        self._clients = [
            sync_client(settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
            for _ in range(2)
        ]
        follows, claims = self._clients
        self._stop = threading.Event()
        self._attempts = Attempts(settings, metrics)
        self._follower = Follower(follows, name, self._attempts, self._stop, yielding)
        self._retries = Retries(claims, self._attempts, self._stop)
        self._threads = [
            threading.Thread(target=self._follower.run, name="webhook-follow", daemon=True),
            threading.Thread(target=self._retries.run, name="webhook-claim", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._retries.wake()
        self._follower.wake()
        for thread in self._threads:
            thread.join(STOP_GRACE + 12)
        self._attempts.close()
        for client in self._clients:
            with contextlib.suppress(redis.RedisError, OSError):
                client.close()
