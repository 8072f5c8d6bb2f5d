"""Faults with real processes killed: nothing reported as success is lost, nothing hangs.

One file over 400 lines: one subject (a real process killed or stopped, the answers
meanwhile), each test on a private Stack, all sharing Burst and the counts below."""

from __future__ import annotations

import functools
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from shared.embedded import free_port
from shared.keyspace import ended_key
from shared.store import Store
from shared.tasks import QUEUE, RESULT_KEY_PREFIX, batch_channel
from tests.composefile import load_compose
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, assert_problem, lookup_path, numbers, post_numbers, wait_until
from tests.processes import Stack, http_ready, spawn, start_web

pytestmark = pytest.mark.timeout(180)


class Burst:
    """`count` concurrent 50-number requests on connections opened beforehand, so
    that once `sent()` returns every request is on its way. Whether they have arrived,
    or been worked on, is for each test to see for itself."""

    def __init__(self, stack: Stack, caller: Caller, count: int, first: int) -> None:
        self._barrier = threading.Barrier(count + 1)
        self._pool = ThreadPoolExecutor(count)
        self._futures = [
            self._pool.submit(self._one, stack, caller, numbers(first + 50 * i))
            for i in range(count)
        ]
        self._timeout = stack.timeout

    def _one(self, stack: Stack, caller: Caller, phones: list[str]) -> tuple[httpx.Response, float]:
        with httpx.Client(base_url=stack.base, timeout=30, verify=TLS) as client:
            client.get("/healthz")
            self._barrier.wait(30)
            started = time.monotonic()
            response = post_numbers(client, caller.headers, phones)
            return response, time.monotonic() - started

    def sent(self) -> None:
        self._barrier.wait(30)

    def answers(self) -> list[httpx.Response]:
        answers = [future.result() for future in self._futures]
        self._pool.shutdown()
        for _, elapsed in answers:
            # A hang check, not a speed check: each request has its deadline.
            assert elapsed < self._timeout + 3, elapsed
        return [response for response, _ in answers]


def stored(store: Store, caller: Caller, phones: list[str]) -> bool:
    return all(store.ended_at(caller.key.scope, phone) is not None for phone in phones)


def successes(responses: list[httpx.Response]) -> list[str]:
    return [phone for response in responses for phone in response.json()["success"]]


def failures(responses: list[httpx.Response]) -> list[str]:
    return [phone for response in responses for phone in response.json()["failure"]]


def store_for(stack: Stack) -> Store:
    return Store(stack.client)


def marks(stack: Stack, caller: Caller) -> int:
    """How many of the caller's numbers are stored: the work done so far."""
    return int(stack.client.hlen(ended_key(caller.key.scope)))


def queued(stack: Stack) -> int:
    with redis.Redis.from_url(stack.broker_url) as broker:
        return int(broker.llen(QUEUE))


def test_worker_killed_mid_flight(stack: Stack) -> None:
    store = store_for(stack)
    caller = new_caller(store)
    assert stack.worker is not None
    burst = Burst(stack, caller, 12, 1000)
    burst.sent()
    # Mid-flight: the worker has started on the 600 tasks (its first marks are in)...
    wait_until(lambda: marks(stack, caller), 30, "the worker's first marks", interval=0.01)
    stack.worker.send_signal(signal.SIGKILL)
    responses = burst.answers()
    assert stack.worker.wait() == -signal.SIGKILL
    assert [r.status_code for r in responses] == [201] * 12
    # ... and had not finished them.
    assert failures(responses), "the kill came after all the work: nothing was in flight"
    assert stored(store, caller, successes(responses))

    stack.start_worker()
    # The new worker first discards the tasks that expired with their requests.
    wait_until(lambda: queued(stack) == 0, 60, "the expired tasks discarded")
    response = post_numbers(stack.base, caller.headers, numbers(5000))
    assert response.json()["failure"] == []


@pytest.mark.parametrize("server", ["store", "broker"])
def test_redis_down_and_back(stack: Stack, server: str) -> None:
    """One of the two servers SIGKILLed with requests in flight, then started again:
    meanwhile every answer comes within the deadline, a 201 (failures) or a 503
    problem; then the same web and worker recover. The broker comes back empty: the
    queue, results and heartbeats it held are gone, and nothing else is lost."""
    store = store_for(stack)
    caller = new_caller(store)
    assert post_numbers(stack.base, caller.headers, numbers(1000)).status_code == 201
    process = stack.redis if server == "store" else stack.broker
    assert process is not None
    burst = Burst(stack, caller, 4, 8000)
    burst.sent()
    process.send_signal(signal.SIGKILL)
    process.wait()
    in_flight = burst.answers()
    assert {r.status_code for r in in_flight} <= {201, 503}, [r.text for r in in_flight]
    assert not any(r.status_code == 503 and "retry-after" not in r.headers for r in in_flight)

    for first in (2000, 3000, 4000):
        started = time.monotonic()
        response = post_numbers(stack.base, caller.headers, numbers(first))
        assert response.status_code in (201, 503), response.text
        assert time.monotonic() - started < stack.timeout + 3
        if response.status_code == 503:
            assert response.headers["retry-after"]
            assert_problem(response, 503)
        else:
            assert response.json()["success"] == []

    if server == "store":
        stack.start_redis()
    else:
        stack.start_broker()

    # Web and worker come back by themselves: same processes, no restarts.
    def all_succeed() -> httpx.Response | None:
        response = post_numbers(stack.base, caller.headers, numbers(6000))
        ok = response.status_code == 201 and not response.json()["failure"]
        return response if ok else None

    response = wait_until(all_succeed, 60, "a request fully served again", interval=0.5)
    assert stack.web is not None
    assert stack.web.poll() is None
    assert stack.worker is not None
    assert stack.worker.poll() is None
    assert stored(store_for(stack), caller, response.json()["success"])
    assert stored(store_for(stack), caller, successes([r for r in in_flight if r.is_success]))


def compose_redis_args(service: str = "redis") -> tuple[str, ...]:
    """The options compose.yaml gives a Redis service, as written there, but for the
    port and password: the stack chooses its own port, and what this test is about is
    what the server keeps, not who may ask."""
    compose = load_compose({"REDIS_PASSWORD": "unused"})
    command = list(compose["services"][service]["command"])
    assert command[0] in ("valkey-server", "redis-server")
    for option in ("--port", "--requirepass"):
        at = command.index(option)
        del command[at : at + 2]
    return tuple(command[1:])


@pytest.mark.parametrize("server", ["embedded", "compose", "one server"])
def test_successes_survive_redis_killed_right_after(tmp_path: Path, server: str) -> None:
    """The store SIGKILLed right after the 201s: every success is there. With the
    broker apart (the embedded default's and compose's servers), and on one server."""
    # A deadline no loaded machine misses: every number must be a success to check.
    if server == "compose":
        stack = Stack(
            tmp_path,
            timeout=10.0,
            redis_args=compose_redis_args(),
            broker_args=compose_redis_args("broker"),
        )
    else:
        stack = Stack(tmp_path, timeout=10.0, broker=server == "embedded")
    stack.start()
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

    # Read back through the service, as a client would, once it reaches Redis again.
    def look_up(phone: str) -> httpx.Response | None:
        try:
            found = httpx.get(f"{stack.base}{URL}/{phone}", headers=caller.headers, verify=TLS)
        except httpx.HTTPError:
            return None
        return None if found.status_code == 503 else found

    for phone in ended:
        found = wait_until(functools.partial(look_up, phone), 30, f"{phone} readable", interval=0.2)
        assert found.status_code == 200, (phone, found.text)


@pytest.mark.parametrize("target", ["web", "worker"])
def test_sigterm_lets_in_flight_work_finish(tmp_path: Path, target: str) -> None:
    """SIGTERM to the web: in-flight requests finish. To a worker: its task finishes
    (warm shutdown). Either way, nothing reported as success is lost."""
    # The web's requests wait for a worker started after the signal: a long deadline.
    stack = Stack(tmp_path, timeout=20.0 if target == "web" else 2.0)
    stack.start_redis()
    stack.start_broker()
    if target == "worker":
        stack.start_worker()
    stack.start_web()
    try:
        _sigterm(stack, target)
    finally:
        stack.stop()


def _sigterm(stack: Stack, target: str) -> None:
    store = store_for(stack)
    caller = new_caller(store)
    burst = Burst(stack, caller, 8, 1000)
    burst.sent()
    if target == "web":
        # In flight for certain: with no worker yet, no request can be answered, and
        # every one of them has queued its 50 tasks.
        wait_until(lambda: queued(stack) == 400, 30, "every request's tasks queued")
        assert stack.web is not None
        process = stack.web
        process.send_signal(signal.SIGTERM)
        stack.start_worker()
    else:
        # In flight: the worker has started on the tasks, and has more to do.
        wait_until(lambda: marks(stack, caller), 30, "the worker's first marks", interval=0.01)
        assert stack.worker is not None
        process = stack.worker
        process.send_signal(signal.SIGTERM)
    responses = burst.answers()
    assert [r.status_code for r in responses] == [201] * 8
    assert stored(store, caller, successes(responses))
    if target == "web":
        # Every request the web held was seen through to the end.
        assert failures(responses) == []
        # Stopped by SIGTERM, and says so (as a shell reports a process it killed).
        assert process.wait(30) == 143
    else:
        # The worker stopped with tasks left in the queue: they fail, by the deadline.
        assert failures(responses), "the worker had finished everything before the signal"
        assert process.wait(30) == 143
        assert "Warm shutdown" in stack.logs()


def test_a_draining_web_answers_421_until_it_stops(tmp_path: Path) -> None:
    """With ENDCONTACT_DRAIN_SECONDS, SIGTERM first turns the web to draining: readiness
    says so, a new request is a 421 that processed nothing and closes its connection
    (for a proxy to send it elsewhere, deploy/Caddyfile), liveness stays 200; then the
    process stops by itself."""
    stack = Stack(tmp_path)
    stack.start_redis()
    stack.start_broker()
    stack.start_worker()
    stack.base, stack.web = start_web(
        {**stack.env, "ENDCONTACT_DRAIN_SECONDS": "3"}, tmp_path / "web.log"
    )
    try:
        caller = new_caller(store_for(stack))
        with httpx.Client(base_url=stack.base, timeout=10, verify=TLS) as http:
            assert http.get("/readyz").status_code == 200
            stack.web.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait_until(lambda: http.get("/readyz").status_code == 503, 5, "readyz draining")
            assert http.get("/readyz").json() == {"status": "draining"}
            refused = post_numbers(http, caller.headers, ["(509) 555-0100"])
            assert_problem(refused, 421)
            assert refused.headers["connection"] == "close"
            assert http.get("/healthz").status_code == 200
        assert stack.web.wait(30) == 143
        # It drained for its 3 s, not less.
        assert time.monotonic() - signalled >= 3
        assert stack.client.exists(ended_key(caller.key.scope)) == 0
    finally:
        stack.stop()


# When, in a web's start, SIGTERM comes: seconds after the process is spawned (the
# first ones before Python has set any handler), after uvicorn says the app's start-up
# begins (the clients, the clock, the result listener's first subscription), or once
# /healthz first answers.
SIGTERM_MOMENTS = [
    ("spawned", 0.0),
    ("spawned", 0.05),
    ("spawned", 0.2),
    ("starting", 0.0),
    ("starting", 0.005),
    ("starting", 0.02),
    ("starting", 0.05),
    ("starting", 0.1),
    ("answering", 0.0),
]


def test_sigterm_at_any_moment_of_start_up_stops_the_web(tmp_path: Path) -> None:
    """Issue 20: a shutdown that cancelled the result listener in its first subscription
    could wait for it forever (test_edge.py's listener test shows how). SIGTERM at any
    moment of a web's start stops it within a deadline, and its exit says SIGTERM: 143,
    or killed by it before Python set a handler (which a shell shows as 143 too). Also
    with the broker stopped (SIGSTOP: it takes connections and never answers), in the
    start-up and once the web answers. All the webs start at once."""
    stack = Stack(tmp_path)
    stack.start_redis()
    stack.start_broker()
    broker = stack.broker
    assert broker is not None
    # The store is the broker too for these: the stopped broker is for the last two.
    cases = [({"REDIS_URL": stack.url}, moment, delay) for moment, delay in SIGTERM_MOMENTS]
    cases += [(stack.env, "starting", 0.0), (stack.env, "answering", 0.0)]
    logs = [tmp_path / f"web-{n}.log" for n in range(len(cases))]
    broker.send_signal(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            ends = [
                pool.submit(_sigterm_at, env, moment, delay, log)
                for (env, moment, delay), log in zip(cases, logs, strict=True)
            ]
            codes = [end.result() for end in ends]
    finally:
        broker.send_signal(signal.SIGCONT)
        stack.stop()
    wrong = [
        (moment, delay, "broker stopped" if env == stack.env else "", code, log.read_text())
        for (env, moment, delay), code, log in zip(cases, codes, logs, strict=True)
        if code not in (143, -signal.SIGTERM)
    ]
    assert wrong == []


def _sigterm_at(env: dict[str, str], moment: str, delay: float, log: Path) -> int | None:
    """A web sent SIGTERM `delay` s after `moment`: its exit status, or None if it had
    not exited 15 s later (then killed)."""
    port = free_port()
    web = spawn(["web", f"--port={port}"], env, log)
    try:
        if moment == "starting":
            wait_until(
                lambda: "Waiting for application startup" in log.read_text(errors="replace"),
                30,
                "the app's start-up begun",
                watch=[web],
                interval=0.001,
            )
        elif moment == "answering":
            wait_until(lambda: http_ready(f"http://127.0.0.1:{port}"), 30, "/healthz", watch=[web])
        # The moment under test, not a wait for something to happen.
        time.sleep(delay)
        web.send_signal(signal.SIGTERM)
        try:
            return web.wait(15)
        except subprocess.TimeoutExpired:
            return None
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()


def _listener_of_web(stack: Stack, caller: Caller) -> str:
    """The web's result listener id, as anyone on the broker can see it: the channel its
    results are announced on, caught during one request."""
    watcher = stack.broker_client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
    watcher.psubscribe(f"{RESULT_KEY_PREFIX}*")
    try:
        wait_until(lambda: watcher.get_message(timeout=0.1), 10, "the watcher subscribed")
        assert post_numbers(stack.base, caller.headers, ["(509) 555-0100"]).status_code == 201

        def channel() -> str | None:
            message = watcher.get_message(timeout=0.1)
            return message["channel"] if message and message["type"] == "pmessage" else None

        found = wait_until(channel, 10, "a result announced")
    finally:
        watcher.close()
    return found.removeprefix(RESULT_KEY_PREFIX).split("-")[0]


# What a broken or hostile publisher may put on a web's result channels.
BAD_RESULT_MESSAGES = [
    b"\xff\xfe\xfd not UTF-8",
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b'{"0": {"nested": "state"}}',
    b"[1, 2, 3]",
    b'"a string"',
    b"",
]


def test_bad_messages_on_the_result_channels_cost_no_request(tmp_path: Path) -> None:
    """Issue 19: one message the listener could not read used to stop it for good, and
    every request of that web then waited its whole deadline while /readyz said ready.
    Now a bad message costs nothing: requests are answered as fast as before."""
    # A long deadline: a request whose result never reaches the web would outlast the
    # client's 10 s below, where a served one takes milliseconds.
    stack = Stack(tmp_path, timeout=30.0).start()
    try:
        caller = new_caller(store_for(stack))
        listener = _listener_of_web(stack, caller)
        for channel in (batch_channel(listener), f"{RESULT_KEY_PREFIX}{listener}-7"):
            for bad in BAD_RESULT_MESSAGES:
                stack.broker_client.publish(channel, bad)
        wait_until(
            lambda: httpx.get(f"{stack.base}/readyz", timeout=10, verify=TLS).status_code == 200,
            10,
            "ready again",
        )
        for first in (100, 200, 300):
            answer = httpx.post(
                f"{stack.base}{URL}",
                json={"phoneNumberList": numbers(first, 50)},
                headers=caller.headers,
                timeout=10,
                verify=TLS,
            )
            assert answer.status_code == 201
            assert answer.json()["failure"] == []
        # The message redis-py could not even decode restarted the listener, said so.
        assert "result listener failed; starting it again" in stack.logs()
    finally:
        stack.stop()


def test_a_result_listener_refused_its_subscription_is_not_ready_then_recovers(
    tmp_path: Path,
) -> None:
    """Issue 19: while the broker refuses the web's subscription (here its ACL user
    loses the channels, which also drops the subscribed connection), /readyz says
    "not listening"; once it may subscribe again, the listener does so by itself and
    requests are answered. It used to stay unsubscribed for good: the refusal came as
    the reply to redis-py's resubscription, on a connection that stayed open."""
    stack = Stack(tmp_path)
    try:
        stack.start_redis()
        stack.start_broker()
        stack.start_worker()
        # The web alone as a user of its own: the worker's subscriptions are untouched.
        acl = functools.partial(stack.broker_client.acl_setuser, "web", enabled=True)
        acl(passwords=["+web-password"], keys=["*"], channels=["*"], commands=["+@all"])
        broker = f"redis://web:web-password@127.0.0.1:{stack.broker_port}/0"
        stack.base, stack.web = start_web(
            {**stack.env, "ENDCONTACT_BROKER_URL": broker}, tmp_path / "web.log"
        )
        caller = new_caller(store_for(stack))

        def ready() -> dict[str, object] | None:
            answer = httpx.get(f"{stack.base}/readyz", timeout=10, verify=TLS)
            return None if answer.status_code == 200 else dict(answer.json())

        wait_until(lambda: ready() is None, 10, "ready")
        acl(reset_channels=True)
        refused = wait_until(ready, 10, "not ready")
        assert (refused["broker"], refused["results"]) == ("ok", "not listening")
        acl(channels=["*"])
        wait_until(lambda: ready() is None, 10, "ready again")
        answer = post_numbers(stack.base, caller.headers, numbers(0, 5))
        assert answer.status_code == 201
        assert len(answer.json()["success"]) == 5
    finally:
        stack.stop()


def test_readyz_is_not_ready_while_the_store_refuses_writes(tmp_path: Path) -> None:
    """Issue 19: a store that answers PING but refuses every write (full, under
    noeviction) is not ready; once it takes writes again, ready again by itself."""
    stack = Stack(tmp_path).start()
    try:
        ready = httpx.get(f"{stack.base}/readyz", timeout=10, verify=TLS)
        assert ready.status_code == 200
        stack.client.config_set("maxmemory", "1")
        full = httpx.get(f"{stack.base}/readyz", timeout=10, verify=TLS)
        assert full.status_code == 503
        assert full.json()["redis"] == "refuses writes"
        stack.client.config_set("maxmemory", "0")
        wait_until(
            lambda: httpx.get(f"{stack.base}/readyz", timeout=10, verify=TLS).status_code == 200,
            10,
            "ready again",
        )
    finally:
        stack.stop()


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_reads_answer_while_the_broker_is_down(stack: Stack, fault: signal.Signals) -> None:
    """Issue 19: with the broker gone, the reads (none of which needs it) used to be 503
    "cannot be counted", so a sender checking before each send was blocked. Now they
    answer, counted by the web meanwhile (the RateLimit headers say so); end-contact
    answers within its deadline; and all is as before once the broker is back. A
    stopped broker (SIGSTOP: connections open, nothing answers) is the harder case:
    every wait on it must have its deadline."""
    caller = new_caller(store_for(stack))
    phone = "(509) 555-0123"
    assert post_numbers(stack.base, caller.headers, [phone]).status_code == 201
    broker = stack.broker
    assert broker is not None
    broker.send_signal(fault)
    if fault == signal.SIGKILL:
        broker.wait()
    try:
        _reads_and_an_end(stack, caller, phone)
    finally:
        if fault == signal.SIGSTOP:
            broker.send_signal(signal.SIGCONT)
    if fault == signal.SIGKILL:
        stack.start_broker()
    wait_until(
        lambda: (
            post_numbers(stack.base, caller.headers, ["(509) 555-0124"]).json()
            == {"success": ["+15095550124"], "failure": []}
        ),
        60,
        "end-contact served again",
        interval=0.5,
    )


def _reads_and_an_end(stack: Stack, caller: Caller, phone: str) -> None:
    """Every read answers 200, counted by the web, and the check says the number is
    ended (a sender checking before each send sends nothing to it); an end and a
    resume answer within their deadline."""
    reads = [
        ("GET", lookup_path(phone), None),
        ("GET", f"{lookup_path(phone)}/history", None),
        ("POST", f"{URL}/check", {"phoneNumberList": [phone]}),
        ("GET", f"{URL}/events", None),
        ("GET", URL, None),
    ]
    with httpx.Client(base_url=stack.base, headers=caller.headers, timeout=10, verify=TLS) as http:
        for method, path, body in reads:
            answer = http.request(method, path, json=body)
            assert answer.status_code == 200, (path, answer.text)
            assert int(answer.headers["ratelimit-remaining"]) < 600
            if path.endswith("/check"):
                assert answer.json()["notEnded"] == [], answer.text
        for path in (URL, "/api/v1/leads/resume-contact"):
            started = time.monotonic()
            changed = http.post(path, json={"phoneNumberList": ["(509) 555-0124"]})
            assert changed.status_code in (201, 503), changed.text
            assert time.monotonic() - started < stack.timeout + 3


def test_a_change_answered_as_a_failure_is_never_made_later(tmp_path: Path) -> None:
    """Issue 19, found by the chaos run (tests/chaos.py): a worker that had taken a task
    in time, then was held up (stopped, or its write waiting on a stalled store), made
    the change seconds after its request had answered it as a failure; a resume
    acknowledged meanwhile could be undone by it. Now the store refuses a change past
    its request's deadline, by its own clock."""
    stack = Stack(tmp_path, timeout=2.0).start()
    assert stack.worker is not None
    assert stack.redis is not None
    try:
        caller = new_caller(store_for(stack))
        # The worker stopped, and its BRPOP over (it waits 1 s): the task stays queued.
        stack.worker.send_signal(signal.SIGSTOP)
        wait_until(
            lambda: stack.broker_client.info("clients")["blocked_clients"] == 0,
            10,
            "the worker's BRPOP over",
        )
        with ThreadPoolExecutor(1) as pool:
            sent = pool.submit(post_numbers, stack.base, caller.headers, ["(509) 555-0100"])
            wait_until(lambda: queued(stack) == 1, 10, "the task queued, its key checked")
            # The store stalls; the worker takes the task in time and its write waits.
            stack.redis.send_signal(signal.SIGSTOP)
            stack.worker.send_signal(signal.SIGCONT)
            wait_until(lambda: queued(stack) == 0, 10, "the task taken")
            answer = sent.result()
        assert answer.json() == {"success": [], "failure": ["+15095550100"]}
        # The write reaches the store now, after the answer.
        stack.redis.send_signal(signal.SIGCONT)
        wait_until(
            lambda: (
                "refused by the store" in stack.logs()
                or store_for(stack).ended_at(caller.key.scope, "+15095550100")
            ),
            10,
            "the worker's write done",
        )
        with httpx.Client(
            base_url=stack.base, headers=caller.headers, timeout=10, verify=TLS
        ) as http:
            assert http.get(lookup_path("+15095550100")).status_code == 404
            assert http.get(f"{URL}/events").json()["events"] == []
    finally:
        for process in (stack.worker, stack.redis):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
        stack.stop()
