"""Faults with real processes killed: nothing reported as success is lost, nothing hangs."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from shared.store import Store
from tests.composefile import load_compose
from tests.conftest import Caller, new_caller
from tests.processes import Stack

URL = "/api/v1/leads/end-contact"
pytestmark = pytest.mark.timeout(180)


def numbers(first: int, count: int = 50) -> list[str]:
    return [f"(509) 555-{n:04d}" for n in range(first, first + count)]


def post(base: str, caller: Caller, phones: list[str]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{base}{URL}", json={"phoneNumberList": phones}, headers=caller.headers, timeout=30
    )
    return response, time.monotonic() - started


class Burst:
    """`count` concurrent 50-number requests on connections opened beforehand, so
    that once `sent()` returns every request is on the wire."""

    def __init__(self, stack: Stack, caller: Caller, count: int, first: int) -> None:
        self._barrier = threading.Barrier(count + 1)
        self._pool = ThreadPoolExecutor(count)
        self._futures = [
            self._pool.submit(self._one, stack, caller, numbers(first + 50 * i))
            for i in range(count)
        ]
        self._timeout = stack.timeout

    def _one(self, stack: Stack, caller: Caller, phones: list[str]) -> tuple[httpx.Response, float]:
        with httpx.Client(base_url=stack.base, timeout=30) as client:
            client.get("/healthz")
            self._barrier.wait(30)
            started = time.monotonic()
            body = {"phoneNumberList": phones}
            response = client.post(URL, json=body, headers=caller.headers)
            return response, time.monotonic() - started

    def sent(self) -> None:
        self._barrier.wait(30)
        time.sleep(0.05)

    def answers(self) -> list[httpx.Response]:
        answers = [future.result() for future in self._futures]
        self._pool.shutdown()
        for _, elapsed in answers:
            # A hang check, not a speed check: the deadline is 2 s.
            assert elapsed < self._timeout + 3, elapsed
        return [response for response, _ in answers]


def stored(store: Store, caller: Caller, phones: list[str]) -> bool:
    return all(store.ended_at(caller.key.scope, phone) is not None for phone in phones)


def successes(responses: list[httpx.Response]) -> list[str]:
    return [phone for response in responses for phone in response.json()["success"]]


def store_for(stack: Stack) -> Store:
    return Store(redis.Redis.from_url(stack.url, decode_responses=True))


def test_worker_killed_mid_flight(stack: Stack) -> None:
    store = store_for(stack)
    caller = new_caller(store)
    assert stack.worker is not None
    burst = Burst(stack, caller, 12, 1000)
    burst.sent()
    stack.worker.send_signal(signal.SIGKILL)
    responses = burst.answers()
    assert stack.worker.wait() == -signal.SIGKILL
    assert [r.status_code for r in responses] == [201] * 12
    failed = [phone for r in responses for phone in r.json()["failure"]]
    assert failed, "the kill came after all the work: nothing was in flight"
    assert stored(store, caller, successes(responses))

    stack.start_worker()
    response, _ = post(stack.base, caller, numbers(5000))
    assert response.json()["failure"] == []


def test_redis_down_and_back(stack: Stack) -> None:
    store = store_for(stack)
    caller = new_caller(store)
    assert post(stack.base, caller, numbers(1000))[0].status_code == 201
    assert stack.redis is not None
    stack.redis.send_signal(signal.SIGKILL)
    stack.redis.wait()

    for first in (2000, 3000, 4000):
        response, elapsed = post(stack.base, caller, numbers(first))
        assert response.status_code in (201, 503), response.text
        assert elapsed < stack.timeout + 3
        if response.status_code == 503:
            assert response.headers["retry-after"]
            assert response.headers["content-type"] == "application/problem+json"
        else:
            assert response.json()["success"] == []

    stack.start_redis()
    # Web and worker come back by themselves: same processes, no restarts.
    deadline = time.monotonic() + 60
    while True:
        response, _ = post(stack.base, caller, numbers(6000))
        if response.status_code == 201 and not response.json()["failure"]:
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(0.5)
    assert stack.web is not None
    assert stack.web.poll() is None
    assert stack.worker is not None
    assert stack.worker.poll() is None
    assert stored(store_for(stack), caller, response.json()["success"])


def compose_redis_args() -> tuple[str, ...]:
    """The options compose.yaml gives its Redis service, as written there, but for the
    port and password: the stack chooses its own port, and what this test is about is
    what the server keeps, not who may ask."""
    compose = load_compose({"REDIS_PASSWORD": "unused"})
    command = list(compose["services"]["redis"]["command"])
    assert command[0] in ("valkey-server", "redis-server")
    for option in ("--port", "--requirepass"):
        at = command.index(option)
        del command[at : at + 2]
    return tuple(command[1:])


@pytest.mark.parametrize("server", ["embedded", "compose"])
def test_successes_survive_redis_killed_right_after(tmp_path: Path, server: str) -> None:
    args = compose_redis_args() if server == "compose" else ()
    stack = Stack(tmp_path, timeout=2.0, redis_args=args).start()
    try:
        _successes_survive(stack)
    finally:
        stack.stop()


def _successes_survive(stack: Stack) -> None:
    caller = new_caller(store_for(stack))
    burst = Burst(stack, caller, 6, 1000)
    burst.sent()
    responses = burst.answers()
    assert stack.redis is not None
    stack.redis.send_signal(signal.SIGKILL)
    stack.redis.wait()
    ended = successes(responses)
    assert len(ended) == 300

    stack.start_redis()
    # Read back through the service, as a client would.
    deadline = time.monotonic() + 30
    for phone in ended:
        while True:
            try:
                found = httpx.get(f"{stack.base}{URL}/{phone}", headers=caller.headers)
            except httpx.HTTPError:
                found = None
            if found is not None and found.status_code != 503:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert found.status_code == 200, (phone, found.text)


@pytest.mark.parametrize("target", ["web", "worker"])
def test_sigterm_lets_in_flight_work_finish(stack: Stack, target: str) -> None:
    """SIGTERM to the web: in-flight requests finish. To a worker: its task finishes
    (warm shutdown). Either way, nothing reported as success is lost."""
    store = store_for(stack)
    caller = new_caller(store)
    process = stack.web if target == "web" else stack.worker
    assert process is not None
    burst = Burst(stack, caller, 8, 1000)
    burst.sent()
    process.send_signal(signal.SIGTERM)
    responses = burst.answers()
    assert [r.status_code for r in responses] == [201] * 8
    assert stored(store, caller, successes(responses))
    if target == "web":
        # uvicorn re-raises SIGTERM once it has shut down cleanly.
        assert process.wait(30) in (0, -signal.SIGTERM)
    else:
        assert process.wait(30) == 0
        assert "Warm shutdown" in stack.logs()
