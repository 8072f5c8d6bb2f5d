"""The times that processes compare are the servers' (shared.clock): a worker whose
clock is 10 s off, behind or ahead, is alive and runs end-contact, its dispatcher's
retries come due when they should, and a peer whose clock is past a claimed retry's
lease does not take it from the dispatcher sending it.

Those workers run under libfaketime (Debian's faketime: LD_PRELOAD and FAKETIME are
its own variables), which shifts what the process and its children read as the time
of day, and nothing else; the servers, the web and the other workers keep the
machine's clock. scripts/debian-packages installs it; without it these tests skip,
except in CI, where they fail.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import cast

import httpx
import pytest

from bench.receiver import Received, Receiver, statuses
from shared.deliveries import DISPATCHERS, due_key, lease_key
from shared.events import ENDED, Change, Context
from shared.store import Store
from tests.helpers import TLS, post_numbers, wait_until
from tests.processes import spawn, stop, wait_for, worker_ready
from tests.test_cli import endcontact
from tests.test_webhook_delivery import HookStack
from worker.deliveries.leases import LEASE_MS
from worker.deliveries.retries import RETRY_POLL

# Where Debian's faketime puts it.
_FOUND = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
LIBFAKETIME = _FOUND[0] if _FOUND else None
# The first retry's delay (s): ENDCONTACT_WEBHOOK_RETRY_SCHEDULE.
RETRY = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookStack]:
    """A store, a broker and a web on the machine's clock; each test starts its workers."""
    if LIBFAKETIME is None:
        reason = "needs libfaketime (Debian: apt-get install faketime; scripts/debian-packages)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    stack = HookStack(tmp_path_factory.mktemp("clocks"), schedule=f"{RETRY},{RETRY}")
    stack.start_redis()
    stack.start_broker()
    stack.start_web()
    yield stack
    stack.stop()


class Workers:
    """Workers (each with its dispatcher) that a test starts, stopped after it."""

    def __init__(self, stack: HookStack) -> None:
        self._stack = stack
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, skew: str | None = None) -> subprocess.Popen[bytes]:
        """A worker whose clock is off by `skew` (libfaketime's "+10s", "-10s"), or
        on the machine's; returned once ready."""
        env = self._stack.env
        if skew is not None:
            assert LIBFAKETIME is not None
            # The monotonic clock stays the machine's: a machine's clock that is off
            # is its time of day.
            env = {**env, "LD_PRELOAD": LIBFAKETIME, "FAKETIME": skew, "DONT_FAKE_MONOTONIC": "1"}
        log = self._stack.directory / f"worker-{len(self._started)}.log"
        process = spawn(["worker", "--concurrency=1"], env, log)
        self._started.append(process)
        wait_for(lambda: worker_ready(log), process, log)
        return process

    def stop(self) -> None:
        for process in self._started:
            stop(process)


@pytest.fixture
def workers(stack: HookStack) -> Iterator[Workers]:
    started = Workers(stack)
    yield started
    started.stop()


def _ready(base: str) -> dict[str, object] | None:
    answer = httpx.get(f"{base}/readyz", timeout=5, verify=TLS)
    return cast("dict[str, object]", answer.json()) if answer.status_code == 200 else None


@pytest.mark.parametrize("skew", ["-10s", "+10s"])
def test_a_worker_whose_clock_is_off_is_alive_and_runs_end_contact(
    stack: HookStack, workers: Workers, skew: str
) -> None:
    workers.start(skew)
    # Behind, its heartbeats looked 10 s old: not ready (and `check worker` failed).
    ready = wait_until(
        lambda: _ready(stack.base),
        5,
        "/readyz ready",
        logs=lambda: httpx.get(f"{stack.base}/readyz", verify=TLS).text,
    )
    assert ready == {"status": "ready", "redis": "ok", "broker": "ok", "workers": 1}
    check = endcontact("check", "worker", env=stack.env)
    assert check.returncode == 0, check.stderr
    # Ahead, it took every task for expired: 201 with every number in `failure`.
    caller = stack.caller()
    answer = post_numbers(stack.base, caller.headers, ["(509) 555-0100", "(509) 555-0101"])
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"success": ["+15095550100", "+15095550101"], "failure": []}


@pytest.mark.parametrize("skew", ["-10s", "+10s"])
def test_a_retry_comes_due_after_its_delay_whoever_scheduled_it(
    stack: HookStack, workers: Workers, skew: str
) -> None:
    """A dispatcher whose clock is off schedules the retry (it follows the webhook
    alone, then dies); one on the machine's clock sends it. Each clock used to count
    the delay its own way: sent at once (behind) or 10 s late (ahead)."""
    with Receiver(statuses(500)) as target:
        skewed = workers.start(skew)
        caller = stack.caller()
        hook = stack.hook(caller, target.url)
        wait_until(lambda: stack.client.get(lease_key(hook.id)), 10, "the webhook followed")
        workers.start()
        # Written as a worker writes it, so that only the dispatchers' clocks count.
        change = Change(caller.key.scope, "+15095550102", ENDED, Context(caller.key.id, "clocks"))
        assert Store(stack.client).apply_changes([change]) == [True]
        wait_until(lambda: stack.client.zcard(due_key(hook.id)), 10, "the retry scheduled")
        # Before its own clock says the retry is due, whatever that clock.
        stop(skewed, signal.SIGKILL)
        first, second = wait_until(lambda: _two(target), RETRY + 20, "the retry")
    # The retry's delay is the contract here, not a speed: counted from the failed
    # attempt's record (just after the first request arrived), sent within a few
    # claim polls of coming due.
    assert RETRY - 0.5 <= second.at - first.at <= RETRY + 5


def _two(target: Receiver) -> list[Received] | None:
    received = target.received
    return received[:2] if len(received) >= 2 else None


def test_a_peer_whose_clock_is_ahead_leaves_a_claimed_retry_alone(
    stack: HookStack, workers: Workers
) -> None:
    """A claimed retry's lease ends LEASE_MS after its claim. A peer whose clock is
    past that took it while its attempt was still in flight: sent twice at once."""
    released = threading.Event()

    def answer(n: int, received: Received) -> int:
        if n == 0:
            return 500
        if n == 1:  # the retry: held until the peer had its chance (within a deadline)
            released.wait(8)
        return 200

    with Receiver(answer) as target:
        workers.start()
        caller = stack.caller()
        hook = stack.hook(caller, target.url)
        wait_until(lambda: stack.client.get(lease_key(hook.id)), 10, "the webhook followed")
        stack.end(caller, ["(509) 555-0103"])
        wait_until(lambda: len(target.received) >= 2, RETRY + 20, "the retry in flight")
        before = set(stack.client.zrange(DISPATCHERS, 0, -1))
        workers.start(f"+{LEASE_MS // 1000 + 10}s")
        wait_until(
            lambda: set(stack.client.zrange(DISPATCHERS, 0, -1)) - before, 10, "the peer alive"
        )
        # Nothing to wait for but its claim loop's next looks: it claims nothing.
        time.sleep(4 * RETRY_POLL)
        released.set()
        outcomes = wait_until(
            lambda: _delivered([entry["outcome"] for entry in stack.attempts(hook)]),
            10,
            "the retry delivered",
        )
        assert len(target.received) == 2, "the retry was sent again while in flight"
        assert outcomes == ["retry", "delivered"]


def _delivered(outcomes: list[str]) -> list[str] | None:
    return outcomes if "delivered" in outcomes else None
