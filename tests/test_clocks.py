"""The times that processes compare are the servers' (shared.clock): a worker whose
clock is 10 s off, behind or ahead, is alive and runs end-contact.

Those workers run under libfaketime (Debian's faketime: LD_PRELOAD and FAKETIME are
its own variables), which shifts what the process and its children read as the time
of day, and nothing else; the servers, the web and the other workers keep the
machine's clock. scripts/debian-packages installs it; without it these tests skip,
except in CI, where they fail.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Iterator
from typing import cast

import httpx
import pytest

from tests.helpers import post_numbers, wait_until
from tests.processes import spawn, stop, wait_for, worker_ready
from tests.test_cli import endcontact
from tests.test_webhook_delivery import HookStack

# Where Debian's faketime puts it.
_FOUND = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
LIBFAKETIME = _FOUND[0] if _FOUND else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookStack]:
    """A store, a broker and a web on the machine's clock; each test starts its workers."""
    if LIBFAKETIME is None:
        reason = "needs libfaketime (Debian: apt-get install faketime; scripts/debian-packages)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    stack = HookStack(tmp_path_factory.mktemp("clocks"))
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
    answer = httpx.get(f"{base}/readyz", timeout=5)
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
        logs=lambda: httpx.get(f"{stack.base}/readyz").text,
    )
    assert ready == {"status": "ready", "redis": "ok", "broker": "ok", "workers": 1}
    check = endcontact("check", "worker", env=stack.env)
    assert check.returncode == 0, check.stderr
    # Ahead, it took every task for expired: 201 with every number in `failure`.
    caller = stack.caller()
    answer = post_numbers(stack.base, caller.headers, ["(509) 555-0100", "(509) 555-0101"])
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"success": ["+15095550100", "+15095550101"], "failure": []}
