"""The claim loop: retries claimed when due, sent in a pool of their own, recorded."""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis

from shared.connection import failure
from shared.deliveries import DUE, PENDING
from shared.events import iso
from shared.webhooks import LOG_LENGTH, Webhook, from_record, log_key
from worker.deliveries import BACKOFF, STOP_GRACE, log
from worker.deliveries.attempt import Attempts, Finished, Job
from worker.deliveries.leases import LEASE_MS, may_start
from worker.deliveries.runners import WINDOW, InFlight
from worker.deliveries.scripts import CLAIM_SCRIPT, RECORD_SCRIPT, hooks_pipeline, prefixes
from worker.senders import ATTEMPT_TIMEOUT

# Retries in flight per webhook (WINDOW), per campaign and in all, for the same reason
# as first attempts' runners: 15 campaigns whose retries all hang leave room for a
# 16th's at once; past that, the claim skips campaigns at their cap, in the order the
# retries came due.
CAMPAIGN_RETRIES = 8
RETRY_SENDERS = 128
# Retries claimed at once: webhooks with due ones looked at, deliveries dropped of a
# deleted or disabled webhook per claim (the rest at the next).
SCAN = 1000
DROP_CHUNK = 1000
RETRY_POLL = 0.25


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[x]): _text(flat[x + 1]) for x in range(0, len(flat), 2)}


def parse_claim(reply: Sequence[Any]) -> tuple[list[Job], int]:
    """CLAIM_SCRIPT's reply as jobs, and how many deliveries it dropped."""
    claimed, records, dropped = reply
    hooks: dict[str, Webhook] = {}
    for x in range(0, len(records), 2):
        found = from_record(_pairs(records[x + 1]))
        if found is not None:
            hooks[_text(records[x])] = found
    jobs = []
    for x in range(0, len(claimed), 4):
        hook = hooks.get(_text(claimed[x]))
        if hook is not None:
            attempts = int(_text(claimed[x + 2]))
            jobs.append(Job(hook, _text(claimed[x + 1]), attempts, _text(claimed[x + 3])))
    return jobs, int(dropped)


class Retries:
    """The claim loop (`run`), on a client of its own, `client`."""

    def __init__(self, client: redis.Redis, attempts: Attempts, stop: threading.Event) -> None:
        self._client = client
        self._attempts = attempts
        self._stop = stop
        # Set when an attempt ends.
        self._wake = threading.Event()
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._record = client.register_script(RECORD_SCRIPT)
        # Claimed retries that ended: their attempt, or None when none was made.
        self._done: queue.SimpleQueue[tuple[Job, Finished | None]] = queue.SimpleQueue()
        self._unrecorded: list[Finished] = []
        self._in_flight = InFlight()
        self._pool = ThreadPoolExecutor(RETRY_SENDERS, thread_name_prefix="webhook-retry")

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = self._step(claim=True)
            except (redis.RedisError, OSError) as exc:
                log.warning("webhook deliveries: store failed: %s", failure(exc))
                self._stop.wait(BACKOFF)
                continue
            if not busy:
                self._wake.wait(RETRY_POLL)
        self._finish()

    def _finish(self) -> None:
        """On the way out: no new attempts; record those that end within STOP_GRACE.
        The others' leases run out and another worker makes them again."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + STOP_GRACE
        while self._in_flight.total and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
            self._collect()
        with contextlib.suppress(redis.RedisError, OSError):
            self._step(claim=False)

    def _collect(self) -> None:
        while True:
            try:
                job, finished = self._done.get_nowait()
            except queue.Empty:
                return
            self._in_flight.remove(job.webhook)
            if finished is not None:
                self._unrecorded.append(finished)

    def _step(self, claim: bool) -> bool:
        """Record what finished and claim what is due, in one round trip. True if
        there may be more to do at once."""
        self._collect()
        recording = self._unrecorded
        room = RETRY_SENDERS - self._in_flight.total if claim else 0
        if not recording and room <= 0:
            return False
        outcomes = [self._outcome(finished) for finished in recording]
        with hooks_pipeline(self._client) as pipe:
            for _, args in outcomes:
                self._record(keys=[DUE, PENDING], args=args, client=pipe)
            # Before the claim's "now": its lease lasts at least LEASE_MS from here.
            asked = time.monotonic()
            if room > 0:
                args = [*prefixes(), LEASE_MS, room, SCAN, WINDOW, DROP_CHUNK]
                args += [CAMPAIGN_RETRIES, *self._in_flight.claim_args()]
                self._claim(keys=[DUE, PENDING], args=args, client=pipe)
            replies = pipe.execute()
        self._unrecorded = []
        for finished, (result, _) in zip(recording, outcomes, strict=True):
            self._attempts.count(finished, result)
        if room <= 0:
            return False
        jobs, _ = parse_claim(replies[-1])
        for job in jobs:
            self._in_flight.add(job.webhook)
            future = self._pool.submit(self._retry, job, asked + LEASE_MS / 1000)
            future.add_done_callback(functools.partial(self._attempted, job))
        return bool(jobs) or bool(recording)

    def _retry(self, job: Job, lease_until: float) -> Finished | None:
        """A claimed retry's attempt, or None when its claim would run out before the
        attempt's deadline: it is left to be claimed again then."""
        now = time.monotonic()
        if not may_start(lease_until, now):
            log.warning(
                "webhook %s, event %s: not attempted, its claim runs out too soon",
                job.webhook.id,
                job.event_id,
                extra={"webhook": job.webhook.id, "event": job.event_id},
            )
            return None
        return self._attempts.make(job, now + ATTEMPT_TIMEOUT)

    def _attempted(self, job: Job, future: Future[Finished | None]) -> None:
        if not future.cancelled():
            self._done.put((job, future.result()))
        else:
            self._done.put((job, None))
        self._wake.set()

    def _outcome(self, finished: Finished) -> tuple[str, list[str | int]]:
        """The outcome of an attempt, and RECORD_SCRIPT's arguments to record it."""
        job = finished.job
        outcome = self._attempts.outcome(finished)
        hook = job.webhook.id
        args: list[str | int] = [
            *prefixes(),
            hook,
            job.event_id,
            outcome.result,
            outcome.delay_ms,
            job.attempts + 1,
            outcome.log_entry,
            iso(self._attempts.store_clock.now_ms()),
            LOG_LENGTH,
            log_key(hook),
        ]
        return outcome.result, args
