"""Overload is refused, not absorbed (api.admission), with real processes.

A worker measures its drain rate, then is stopped (SIGSTOP): its heartbeat stays
live for WORKER_SILENCE, so the web believes the rate while the queue only grows.
Requests past what that rate drains within the deadline's budget get a 503 problem
with Retry-After, and nothing of them is queued or ever done. With no worker at all
the answer stays a 201 with every number a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from api.admission import BUDGET_SHARE, Admission
from api.problems import Problem
from shared.broker import DRAIN, WORKER_SILENCE, WORKERS, AsyncBroker, Broker
from shared.store import Store
from shared.tasks import QUEUE
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, assert_problem, wait_until
from tests.processes import Stack, start_web, stop
from worker.celery_seam.transport import POP_MOST

pytestmark = pytest.mark.timeout(180)
# Concurrent 50-number requests: more than a worker drains in the budget on any
# machine this runs on (about 100 to 1,000 tasks a second).
BURST = 40
# Room taken in the queue behind the web's back: no worker reads it (the test's worker
# is stopped meanwhile), and it is taken out again.
FILLER = "not a task"


def numbers(first: int, count: int = 50) -> list[str]:
    # E.164, unlike tests.helpers.numbers: compared as is with what the queue holds.
    # Past 10,000 (a burst sized from a fast worker's rate gets there) the exchange
    # moves on: +1509555…, then +1509556…, all valid.
    return [f"+1509{555 + n // 10_000}{n % 10_000:04d}" for n in range(first, first + count)]


def burst(
    base: str, caller: Caller, first: int, size: int
) -> list[tuple[list[str], httpx.Response]]:
    bodies = [numbers(first + 50 * i) for i in range(size)]

    def one(phones: list[str]) -> tuple[list[str], httpx.Response]:
        response = httpx.post(
            f"{base}{URL}",
            json={"phoneNumberList": phones},
            headers=caller.headers,
            timeout=30,
            verify=TLS,
        )
        return phones, response

    with ThreadPoolExecutor(size) as pool:
        return list(pool.map(one, bodies))


def without_workers(tmp_path: Path, timeout: float) -> Stack:
    """Store, broker and web with a deadline of `timeout` seconds; no worker."""
    stack = Stack(tmp_path, timeout=timeout)
    stack.start_redis()
    stack.start_broker()
    stack.start_web()
    return stack


def queued_numbers(broker: redis.Redis) -> list[str]:
    """The phone number of every task message waiting in the queue."""
    phones = []
    for raw in broker.lrange(QUEUE, 0, -1):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        phones.append(str(body[0][2]))  # [args, kwargs, embed]; args: company, campaign, phone
    return phones


def test_past_what_workers_drain_in_time_requests_are_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path, timeout=2.0).start()
    try:
        _refusal(stack)
    finally:
        if stack.worker is not None:
            stack.worker.send_signal(signal.SIGCONT)
        stack.stop()


def _refusal(stack: Stack) -> None:
    store = Store(redis.Redis.from_url(stack.url, decode_responses=True))
    broker = redis.Redis.from_url(stack.broker_url, decode_responses=True)
    caller = new_caller(store)
    # The worker runs tasks, so it measures and publishes its drain rate.
    warm = httpx.post(
        f"{stack.base}{URL}",
        json={"phoneNumberList": numbers(0)},
        headers=caller.headers,
        verify=TLS,
    )
    assert warm.json()["failure"] == []
    wait_until(lambda: broker.hlen(DRAIN) == 1, 30, "the worker publishes its drain rate")

    assert stack.worker is not None
    stack.worker.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    rate = float(next(iter(broker.hvals(DRAIN))))
    budget = BUDGET_SHARE * stack.timeout
    # Past what the measured rate drains in the budget, whatever this machine's rate.
    size = max(BURST, math.ceil(rate * budget / 50) + BURST)
    answers = burst(stack.base, caller, 1000, size)
    # Still believed alive (its last heartbeat is recent): the refusals below come
    # from its rate, not from the absence of workers.
    (beat,) = broker.zrange(WORKERS, 0, -1, withscores=True)
    assert float(beat[1]) > time.time() - WORKER_SILENCE
    assert float(beat[1]) <= stopped_at

    accepted = [phones for phones, r in answers if r.status_code == 201]
    refused = [phones for phones, r in answers if r.status_code != 201]
    assert accepted, "the first request finds an empty queue and is always accepted"
    assert refused, f"{size * 50} tasks for a worker that drains {rate:.0f}/s"
    # Accepted while the queue ahead fits in the budget at the measured rate.
    assert 50 * (len(accepted) - 1) <= rate * budget + 1
    for phones, response in answers:
        if response.status_code == 201:
            # No worker ran anything: every number failed, nothing is lost.
            assert response.json() == {"success": [], "failure": phones}
            continue
        assert assert_problem(response, 503)["type"] == "/problems/overloaded"
        assert 1 <= int(response.headers["retry-after"]) <= math.ceil(stack.timeout)

    # The burst leaves the queue full or nearly (a request refused as not fitting beside
    # those on their way can leave room that one of them, refused too, did not take):
    # topped up to the budget here, the queue takes no more.
    room = math.floor(rate * budget) - broker.llen(QUEUE)
    if room > 0:
        broker.rpush(QUEUE, *[FILLER] * room)
    # Still refusing what does not fit: a key missing or malformed is a 401 all the
    # same, told without looking anything up.
    for headers in ({}, {"x-api-key": "not-a-key"}):
        body = {"phoneNumberList": numbers(90_000)}
        response = httpx.post(f"{stack.base}{URL}", json=body, headers=headers, verify=TLS)
        assert response.status_code == 401, response.text
    refused_now = httpx.post(
        f"{stack.base}{URL}",
        json={"phoneNumberList": numbers(90_100)},
        headers=caller.headers,
        verify=TLS,
    )
    assert refused_now.status_code == 503, refused_now.text

    # What is queued is the accepted requests' tasks and nothing of the refused ones
    # (the stopped worker's pop, waiting on the broker, may have taken one pop's worth).
    broker.lrem(QUEUE, 0, FILLER)
    waiting = queued_numbers(broker)
    assert set(waiting) <= {phone for phones in accepted for phone in phones}
    assert len(waiting) >= 50 * len(accepted) - POP_MOST

    # Resumed, the worker drains the queue; its tasks expired with their requests.
    stack.worker.send_signal(signal.SIGCONT)
    wait_until(lambda: broker.llen(QUEUE) == 0, 30, "the queue drained")
    for phones in refused:
        assert all(store.ended_at(caller.key.scope, phone) is None for phone in phones)

    # And the service takes work again.
    def served() -> bool:
        response = httpx.post(
            f"{stack.base}{URL}",
            json={"phoneNumberList": numbers(5000)},
            headers=caller.headers,
            verify=TLS,
        )
        return response.status_code == 201 and response.json()["failure"] == []

    wait_until(served, 30, "requests succeed once the worker is back")
    store.close()
    broker.close()


def test_without_any_worker_nothing_is_refused(tmp_path: Path) -> None:
    """No worker has ever beaten: every request is taken, and fails at its deadline."""
    stack = without_workers(tmp_path, 1.0)
    try:
        store = Store(redis.Redis.from_url(stack.url, decode_responses=True))
        caller = new_caller(store)
        started = time.monotonic()
        answers = burst(stack.base, caller, 1000, BURST)
        elapsed = time.monotonic() - started
        for phones, response in answers:
            assert response.status_code == 201, response.text
            assert response.json() == {"success": [], "failure": phones}
        # A hang check, not a speed check: every request's deadline is 1 s.
        assert elapsed < stack.timeout + 5, elapsed
        broker = redis.Redis.from_url(stack.broker_url)
        assert broker.llen(QUEUE) == BURST * 50
        store.close()
        broker.close()
    finally:
        stack.stop()


@pytest.fixture
def patient_web(servers: dict[str, str], worker: None, logs: Path) -> Iterator[str]:
    """A web process in front of the session's worker with a 10 s deadline: a 5 s budget
    for the queue ahead. 200 tasks fit in it at 40 a second, which any worker drains
    however noisy the machine (the session's 2.5 s budget once refused the 42nd of
    them on a busy CI machine, whose worker had measured itself slow); 200 requests
    holding room for 50 tasks each do not fit at 2,000 a second."""
    base, process = start_web({**servers, "ENDCONTACT_RESULT_TIMEOUT": "10"}, logs / "patient.log")
    yield base
    stop(process)


def test_hundreds_of_requests_at_once_are_all_taken(patient_web: str, caller: Caller) -> None:
    """Not overload: 200 one-number requests at once for the session's workers. Every
    one is a 201 with its number a success: none is refused, for each holds room for
    the one task its body can hold, not 50 (with 50, most were refused)."""
    web = patient_web
    count = 200
    barrier = threading.Barrier(count)

    def one(n: int) -> httpx.Response:
        # Connected after the barrier: an idle connection is closed after 5 s, and 200
        # threads can take longer than that to start on a busy machine.
        barrier.wait(30)
        with httpx.Client(base_url=web, timeout=30, verify=TLS) as client:
            body = {"phoneNumberList": numbers(7000 + n, 1)}
            return client.post(URL, json=body, headers=caller.headers)

    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(one, range(count)))
    refused = {r.text for r in answers if r.status_code != 201}
    assert [r.status_code for r in answers].count(201) == count, refused
    assert all(r.json()["failure"] == [] for r in answers)


def _slowly(phones: list[str], seconds: float) -> Iterator[bytes]:
    """A body sent in five pieces over `seconds`: a slow upload (the pace is the
    behaviour under test, not a wait for something to happen)."""
    text = json.dumps({"phoneNumberList": phones}).encode()
    step = math.ceil(len(text) / 5)
    for start in range(0, len(text), step):
        yield text[start : start + step]
        if start + step < len(text):
            time.sleep(seconds / 4)


def test_a_deadline_runs_from_the_requests_arrival(tmp_path: Path) -> None:
    """The time a request takes to arrive whole counts against its deadline (4 s here).
    With one second of it spent on a slow upload, the answer still comes by the deadline
    from the first byte (no worker runs: every number fails there), not a whole deadline
    after the body. With 2.5 s spent, too little is left for the queue's budget and the
    tasks: a 503 with Retry-After, and nothing of it queued."""
    stack = without_workers(tmp_path, 4.0)
    try:
        store = Store(redis.Redis.from_url(stack.url, decode_responses=True))
        broker = redis.Redis.from_url(stack.broker_url)
        caller = new_caller(store)
        headers = {**caller.headers, "content-type": "application/json"}
        with httpx.Client(base_url=stack.base, timeout=30, verify=TLS) as client:
            phones = numbers(20_000)
            started = time.monotonic()
            response = client.post(URL, content=_slowly(phones, 1.0), headers=headers)
            elapsed = time.monotonic() - started
            assert response.status_code == 201, response.text
            assert response.json() == {"success": [], "failure": phones}
            # The deadline and the last look at the results (api.fanout.SWEEP_TIMEOUT).
            assert elapsed < stack.timeout + 0.5, elapsed
            assert broker.llen(QUEUE) == 50

            started = time.monotonic()
            late = client.post(URL, content=_slowly(numbers(20_100), 2.5), headers=headers)
            elapsed = time.monotonic() - started
            assert assert_problem(late, 503)["type"] == "/problems/overloaded"
            assert 1 <= int(late.headers["retry-after"]) <= math.ceil(stack.timeout)
            assert elapsed < stack.timeout, elapsed
            assert broker.llen(QUEUE) == 50
        store.close()
        broker.close()
    finally:
        stack.stop()


def test_requests_are_checked_early_only_near_the_budget(broker_server: str) -> None:
    """With requests on their way, a request asks the broker early whether it fits only
    when the queue the broker last told of, and they, may come near the budget: far
    below it that round trip would say yes. A queue filled meanwhile behind this
    process's back is still refused at the push, and from then on early."""
    url = f"{broker_server}/10"  # a database of its own: no worker takes this queue
    with redis.Redis.from_url(url, decode_responses=True) as sync:
        sync.flushdb()
        # One live worker that drains 1,000 tasks a second: with a 2 s deadline the
        # budget (1 s) holds 1,000 tasks, and "near" is past 500.
        Broker(sync).heartbeat("w@host", 1000.0)

        async def requests() -> list[int]:
            client = redis.asyncio.Redis.from_url(url, decode_responses=True)
            admission = Admission(AsyncBroker(client), timeout=2.0)
            refused: list[int] = []
            try:
                await admission.push(["task"] * 10)  # the broker tells of an empty queue
                sync.lpush(QUEUE, *["other"] * 980)  # 990 queued: 50 more do not fit
                async with admission.room("500"):  # a request on its way (50 tasks)
                    # Beside it, 100 tasks are far from 500: not asked early.
                    async with admission.room("500"):
                        try:
                            await admission.push(["task"] * 50)
                        except Problem as problem:
                            refused.append(problem.status)
                    # Refused once, the process asks early.
                    try:
                        async with admission.room("500"):
                            pass
                    except Problem as problem:
                        refused.append(problem.status)
            finally:
                await client.aclose()
            return refused

        assert asyncio.run(requests()) == [503, 503]
        assert sync.llen(QUEUE) == 990  # nothing of the refused requests
        sync.flushdb()


def test_a_request_that_cannot_fit_beside_those_on_their_way_is_refused_at_once(
    broker_server: str,
) -> None:
    """Requests of this process on their way already bring two budgets' worth
    (ON_THEIR_WAY_MOST): the next is refused before it asks anyone, so a herd let in at
    once (cli.accepting) does not become as many round trips and connections. Here
    the broker does not answer (paused) when it comes: a request that asked would wait
    for it (api.admission.CHECK_TIMEOUT), then be let through."""
    url = f"{broker_server}/10"  # a database of its own: no worker takes this queue
    with redis.Redis.from_url(url, decode_responses=True) as sync:
        sync.flushdb()
        workers = Broker(sync)
        # One live worker at 2,000 tasks a second, a 2 s deadline: the budget (1 s)
        # holds forty requests of 50.
        workers.heartbeat("w@host", 2000.0)

        async def requests() -> tuple[int, Problem | None]:
            client = redis.asyncio.Redis.from_url(url, decode_responses=True)
            admission = Admission(AsyncBroker(client), timeout=2.0)
            refused = None
            try:
                async with contextlib.AsyncExitStack() as on_their_way:
                    for _ in range(40):  # each asked early, and fits
                        await on_their_way.enter_async_context(admission.room("500"))
                    # The worker slows to half, and a push tells this process so: the
                    # forty on their way now bring two budgets.
                    workers.heartbeat("w@host", 1000.0)
                    await admission.push(["task"] * 10)
                    # Longer than the early check waits; it ends by itself.
                    sync.execute_command("CLIENT", "PAUSE", 1_000, "ALL")
                    try:
                        async with admission.room("500"):
                            pass
                    except Problem as problem:
                        refused = problem
                    held = admission._held
            finally:
                await client.aclose()
            return held, refused

        held, refused = asyncio.run(requests())
        assert refused is not None
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "2"  # at most the deadline
        assert held == 40 * 50  # the refused one holds nothing
        assert sync.llen(QUEUE) == 10  # the push's, nothing of the refused
        sync.flushdb()
