"""Runners: the threads that make first attempts, a webhook's events one after the
other, shared fairly between campaigns (InFlight, which the claim loop counts its
retries with too)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shared import deliveries
from shared.apikeys import Scope
from shared.events import iso
from shared.webhooks import Webhook
from worker.deliveries.attempt import Attempts, Finished, Job
from worker.deliveries.followed import Follow, Followed, Todo
from worker.deliveries.leases import may_start
from worker.senders import ATTEMPT_TIMEOUT
from worker.yielding import Yielding

# Senders are shared fairly (issue 19: six campaigns with ten webhooks each, to
# receivers that answered a byte every 2 s, held every one of 128 runners, and another
# company's delivery waited more than 30 s). First attempts in flight (runners, threads)
# per webhook, per campaign, and in all: a campaign whose receivers all hang holds at
# most CAMPAIGN_RUNNERS of them for 10 s each (two webhooks' windows: a campaign has at
# most 10 webhooks), so 31 such campaigns leave a 32nd its runners at once. Threads
# are made as runners need them, up to RUNNERS. Past that, threads go to the campaigns
# with the fewest first, and a runner gives its thread up after its attempt while a
# campaign waits for one: that campaign waits for the next attempt to end (with 512
# that hang, one every 20 ms on average).
WINDOW = 8
CAMPAIGN_RUNNERS = 16
RUNNERS = 512
# A runner's turn, in attempts: then it ends, and the next runner goes where it is due.
TURN = 64

K = TypeVar("K")


def _less(counts: Counter[K], key: K) -> None:
    counts[key] -= 1
    if not counts[key]:
        del counts[key]


class InFlight:
    """This process's attempts in flight (or runners), per webhook and per campaign:
    what a campaign may add within its cap."""

    def __init__(self) -> None:
        self._hooks: Counter[str] = Counter()
        self._campaigns: Counter[Scope] = Counter()
        self.total = 0

    def add(self, webhook: Webhook) -> None:
        self._hooks[webhook.id] += 1
        self._campaigns[webhook.scope] += 1
        self.total += 1

    def remove(self, webhook: Webhook) -> None:
        _less(self._hooks, webhook.id)
        _less(self._campaigns, webhook.scope)
        self.total -= 1

    def of_campaign(self, scope: Scope) -> int:
        return self._campaigns[scope]

    def claim_args(self) -> list[str | int]:
        """CLAIM_SCRIPT's: how many webhooks have attempts in flight, then per webhook
        its id and how many, then per campaign its company, campaign and how many."""
        args: list[str | int] = [len(self._hooks)]
        for webhook_id, started in self._hooks.items():
            args.extend((webhook_id, started))
        for scope, started in self._campaigns.items():
            args.extend((scope.company, scope.campaign, started))
        return args


class Runners:
    """The runners of the webhooks followed: started by the follow loop where events
    wait, each sets `woken` when it ends."""

    def __init__(
        self,
        followed: Followed,
        attempts: Attempts,
        stop: threading.Event,
        woken: threading.Event,
        yielding: Yielding | None,
    ) -> None:
        self._followed = followed
        self._attempts = attempts
        self._stop = stop
        self._woken = woken
        self._yielding = yielding
        # The runners, per webhook and campaign; and whether a campaign waits for one
        # because all RUNNERS are taken (then runners give theirs up after an attempt).
        self._running = InFlight()
        self._starved = False
        self._pool = ThreadPoolExecutor(RUNNERS, thread_name_prefix="webhook")

    def _wants_runner(self, follow: Follow, now: float) -> bool:
        """Whether a webhook has events for another runner, and room for it (the lock
        held)."""
        return (
            not follow.releasing
            and follow.runners < WINDOW
            and len(follow.todo) > follow.runners - follow.sending
            and may_start(follow.lease_until, now)
        )

    def start(self) -> None:
        """Runners where events wait, within the caps, a runner at a time to the
        campaign with the fewest (then to its webhook with the fewest)."""
        now = time.monotonic()
        with self._followed.lock:
            order = itertools.count()
            waiting = [
                (
                    self._running.of_campaign(follow.webhook.scope),
                    follow.runners,
                    next(order),
                    follow,
                )
                for follow in self._followed.follows.values()
                if self._wants_runner(follow, now)
            ]
            heapq.heapify(waiting)
            while waiting and self._running.total < RUNNERS:
                campaign, runners, _, follow = heapq.heappop(waiting)
                now_campaign = self._running.of_campaign(follow.webhook.scope)
                if now_campaign >= CAMPAIGN_RUNNERS:
                    continue
                if (now_campaign, follow.runners) != (campaign, runners):  # others started
                    heapq.heappush(waiting, (now_campaign, follow.runners, next(order), follow))
                    continue
                follow.runners += 1
                self._running.add(follow.webhook)
                self._pool.submit(self._run, follow)
                if self._wants_runner(follow, now):
                    heapq.heappush(waiting, (campaign + 1, follow.runners, next(order), follow))
            self._starved = any(
                self._running.of_campaign(follow.webhook.scope) < CAMPAIGN_RUNNERS
                for *_, follow in waiting
            )

    def shutdown(self) -> None:
        """No new runners; those running end after their attempt."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, follow: Follow) -> None:
        """A runner: the webhook's next events, one after the other, for a turn."""
        lock = self._followed.lock
        try:
            for _ in range(TURN):
                if self._yielding is not None:
                    self._yielding.wait(self._stop.wait)
                with lock:
                    now = time.monotonic()
                    if (
                        follow.gone
                        or follow.releasing
                        or not follow.todo
                        or self._stop.is_set()
                        or not may_start(follow.lease_until, now)
                    ):
                        return
                    todo = follow.todo.popleft()
                    job = Job(follow.webhook, todo.event_id, 0, todo.body)
                    deadline = now + ATTEMPT_TIMEOUT
                    follow.sending += 1
                    follow.sending_until = max(follow.sending_until, deadline)
                try:
                    finished = self._attempts.make(job, deadline)
                finally:
                    with lock:
                        follow.sending -= 1
                result = self._finished(follow, todo, finished)
                self._attempts.count(finished, result)
                if self._starved:
                    return  # its thread to a campaign waiting for one
        finally:
            with lock:
                follow.runners -= 1
                self._running.remove(follow.webhook)
            self._woken.set()

    def _finished(self, follow: Follow, todo: Todo, finished: Finished) -> str:
        """What a first attempt leaves for the follow loop to write (follower.py)."""
        outcome = self._attempts.outcome(finished)
        with self._followed.lock:
            follow.logs.append(outcome.log_entry)
            todo.entry.left -= 1
            if outcome.result == deliveries.RETRY:
                follow.retries.extend((todo.event_id, outcome.delay_ms, todo.body))
            elif outcome.result == deliveries.DISABLED and follow.disabled_at is None:
                follow.disabled_at = iso(self._attempts.store_clock.now_ms())
                follow.todo.clear()
        return outcome.result
