"""A chaos run: mixed load on a real service (store, broker, two workers, web, a
webhook to a receiver here) while a nemesis, every few seconds, SIGKILLs or SIGSTOPs
one of a worker, the web, the broker or the store, and brings it back; then
tests/chaos_check.py judges what the clients saw.

    .venv/bin/python -m tests.chaos --seconds 120 [--seed N] [--dir DIR]

prints each fault as it comes, then the figures and any violation (with the faults
before it), and exits 1 if there was one. tests/test_chaos.py runs it for 25 s.

The load, all to 127.0.0.1, each loop bounded in time and in count: four clients, each
with a key of its own for one campaign, end and resume random numbers of one small
pool (so that the same numbers are ended and resumed by different clients), each
request with a reason and an X-Request-ID of its own; one client checks numbers of the
pool in bulk; one follows the change feed with `after`. The nemesis does one fault at
a time: SIGSTOP for 0.5 to 3 s, then SIGCONT; or SIGKILL, then the same thing started
again (the store from its append-only file, the broker empty, the web on its port; a
worker is started again by its supervisor).

One file over 400 lines: one run's parts (the stack, the load's clients, the nemesis,
the record), which only make sense together; the judging is tests/chaos_check.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from api.fanout import SWEEP_TIMEOUT
from api.problems import REDIS_TIMEOUT
from api.ratelimit import BROKER_TIMEOUT
from bench.receiver import Receiver
from shared.embedded import free_port
from shared.events import ENDED, RESUMED
from shared.store import Store
from shared.tasks import QUEUE
from tests.chaos_check import CHECK, FEED, Call, Deadlines, Fault, Final, Report, check
from tests.helpers import TLS, URL, wait_until
from tests.processes import Stack, http_ready, spawn, wait_for

# A small pool: the four clients keep ending and resuming the same numbers.
POOL = tuple(f"+1509555{n:04d}" for n in range(1000, 1040))
CHANGE_CLIENTS = 4
PATHS = {ENDED: URL, RESUMED: "/api/v1/leads/resume-contact"}
WORKERS = 2
# The stack's request deadline (ENDCONTACT_RESULT_TIMEOUT).
TIMEOUT = 2.0
# On top of each deadline: this machine is shared, and a web starved of CPU answers late.
MARGIN = 1.0
# Seconds between faults, and how long a SIGSTOP lasts.
BETWEEN_FAULTS = (1.0, 3.0)
STOPPED = (0.5, 3.0)
# A client gives up after this: past every deadline, a web stopped throughout included.
CLIENT_TIMEOUT = TIMEOUT + 2 * REDIS_TIMEOUT + MARGIN + STOPPED[1] + 5
# Requests per client and second, at most: the loops are bounded in count too.
MOST_PER_SECOND = 200
# Retries come fast, so that the deliveries catch up within DELIVERIES_WAIT; 41 s of
# retries for a receiver that never fails.
RETRY_SCHEDULE = "1,2,3,5,10,20"
DELIVERIES_WAIT = 90.0
SIGNALS = ("SIGKILL", "SIGSTOP")
TARGETS = ("worker", "web", "broker", "store")


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 (a run's choices, repeated by its seed; no secret)


def deadlines() -> Deadlines:
    """A change answers within the deadline plus its last look at the results
    (docs/settings.md, ENDCONTACT_RESULT_TIMEOUT: "within this plus about 0.25 s"); a read
    after the key's lookup, the count of the rate limit and its own read, each bounded
    (api.problems, api.ratelimit)."""
    return Deadlines(
        change=TIMEOUT + SWEEP_TIMEOUT, read=2 * REDIS_TIMEOUT + BROKER_TIMEOUT, margin=MARGIN
    )


class ChaosStack(Stack):
    """Two workers under their supervisor, a web that comes back on its port, webhooks
    to this machine, retries that come fast, and a rate limit counted but never hit."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            directory,
            timeout=TIMEOUT,
            settings={
                "ENDCONTACT_WEBHOOK_ALLOW_PRIVATE": "true",
                "ENDCONTACT_WEBHOOK_RETRY_SCHEDULE": RETRY_SCHEDULE,
                "ENDCONTACT_RATE_LIMIT": "1000000000",
            },
        )
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"

    def start_web(self) -> None:
        log = self.directory / "web.log"
        self.web = spawn(["web", f"--port={self.web_port}"], self.env, log)
        wait_for(lambda: http_ready(self.base), self.web, log)

    def workers(self) -> list[psutil.Process]:
        """The solo workers the supervisor runs now."""
        assert self.worker is not None
        try:
            children: list[psutil.Process] = psutil.Process(self.worker.pid).children()
        except psutil.NoSuchProcess:
            return []
        return children

    def readies(self) -> int:
        return (self.directory / "worker.log").read_text(errors="replace").count(" ready.")


class Nemesis:
    """One fault at a time, every few seconds, each over (continued, or running again)
    before the next."""

    def __init__(self, stack: ChaosStack, rng: random.Random, say: Callable[[str], None]) -> None:
        self.stack = stack
        self.rng = rng
        self.say = say
        self.faults: list[Fault] = []
        self.stopping = threading.Event()
        self._order: list[tuple[str, str]] = []

    def run(self, until: float) -> None:
        while not self.stopping.wait(self.rng.uniform(*BETWEEN_FAULTS)):
            if time.monotonic() >= until:
                return
            if not self._order:
                self._order = self._rounds()
            name, target = self._order.pop(0)
            pid = self._pid(target)
            # Taken once the process is chosen: the fault's time is the signal's.
            at = time.time()
            if name == "SIGSTOP":
                self._stop(pid)
            else:
                self._kill(target, pid)
            fault = Fault(name, target, at, time.time())
            self.faults.append(fault)
            self.say(f"fault: {fault.name}, {fault.until - fault.at:.1f}s until back")

    def _rounds(self) -> list[tuple[str, str]]:
        """Every target in a shuffled order with one signal, then again with the other:
        a short run hits all four, a longer one every pair."""
        targets = list(TARGETS)
        self.rng.shuffle(targets)
        first = [self.rng.choice(SIGNALS) for _ in targets]
        other = [next(s for s in SIGNALS if s != f) for f in first]
        return [*zip(first, targets, strict=True), *zip(other, targets, strict=True)]

    def _process(self, target: str) -> subprocess.Popen[bytes]:
        stack = self.stack
        process = {"web": stack.web, "broker": stack.broker, "store": stack.redis}[target]
        assert process is not None
        return process

    def _pid(self, target: str) -> int:
        if target == "worker":
            return int(self.rng.choice(self.stack.workers()).pid)
        return self._process(target).pid

    def _stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            self.stopping.wait(self.rng.uniform(*STOPPED))
        finally:
            os.kill(pid, signal.SIGCONT)

    def _kill(self, target: str, pid: int) -> None:
        stack = self.stack
        if target == "worker":
            readies = stack.readies()
            worker = psutil.Process(pid)
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            supervisor = stack.worker
            assert supervisor is not None
            # Its supervisor starts it again; one that gave up is started again here.
            wait_until(
                lambda: stack.readies() > readies or supervisor.poll() is not None,
                60,
                "the worker started again",
            )
            if supervisor.poll() is not None:
                stack.start_worker(WORKERS)
            return
        process = self._process(target)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        {"web": stack.start_web, "broker": stack.start_broker, "store": stack.start_redis}[target]()


class Load:
    """The clients: each a thread with its own connection, its own random numbers and
    every request recorded as a Call."""

    def __init__(self, base: str, keys: list[tuple[str, str]], seed: int, until: float) -> None:
        self.base = base
        self.keys = keys  # (secret, key id) per change client
        self.seed = seed
        self.until = until
        self.most = int(MOST_PER_SECOND * max(0.0, until - time.monotonic())) + 1
        self.calls: list[Call] = []
        self.stopping = threading.Event()

    def clients(self) -> list[Callable[[], None]]:
        """The change clients, one per key, then the check and the feed's follower."""
        clients: list[Callable[[], None]] = [
            functools.partial(self._changes, f"c{i}", secret, key_id, rng(self.seed + i))
            for i, (secret, key_id) in enumerate(self.keys)
        ]
        secret, key_id = self.keys[0]
        clients.append(functools.partial(self._checks, secret, key_id, rng(self.seed - 1)))
        clients.append(functools.partial(self._feed, secret, key_id))
        return clients

    def _running(self) -> Iterator[int]:
        for count in range(self.most):
            if time.monotonic() >= self.until or self.stopping.is_set():
                return
            yield count

    @contextlib.contextmanager
    def _http(self, secret: str) -> Iterator[httpx.Client]:
        with httpx.Client(
            base_url=self.base, headers={"x-api-key": secret}, timeout=CLIENT_TIMEOUT, verify=TLS
        ) as http:
            yield http

    def _changes(self, name: str, secret: str, key_id: str, rng: random.Random) -> None:
        with self._http(secret) as http:
            for count in self._running():
                kind = rng.choice((ENDED, RESUMED))
                numbers = tuple(rng.sample(POOL, rng.randint(1, 5)))
                reason = f"chaos: {name} {kind} #{count}"
                body = {"phoneNumberList": list(numbers), "reason": reason}
                call, answer = self._send(
                    http, kind, f"chaos-{name}-{count}", key_id, "POST", PATHS[kind], body
                )
                call = replace(call, numbers=numbers, reason=reason)
                if call.status == 201:
                    success, failure = answer["success"], answer["failure"]
                    call = replace(call, success=tuple(success), failure=tuple(failure))
                self.calls.append(call)
                self._pace(call, rng.uniform(0, 0.05))

    def _checks(self, secret: str, key_id: str, rng: random.Random) -> None:
        with self._http(secret) as http:
            for count in self._running():
                numbers = rng.sample(POOL, 20)
                body = {"phoneNumberList": numbers}
                call, answer = self._send(
                    http, CHECK, f"chaos-check-{count}", key_id, "POST", f"{URL}/check", body
                )
                if call.status == 200:
                    marks: dict[str, str | None] = dict.fromkeys(answer["notEnded"])
                    marks.update({m["phoneNumber"]: m["endedAt"] for m in answer["ended"]})
                    call = replace(call, marks=marks)
                self.calls.append(call)
                self._pace(call, rng.uniform(0, 0.05))

    def _feed(self, secret: str, key_id: str) -> None:
        after = ""
        with self._http(secret) as http:
            for count in self._running():
                query = f"?limit=100&after={after}" if after else "?limit=100"
                call, answer = self._send(
                    http, FEED, f"chaos-feed-{count}", key_id, "GET", f"{URL}/events{query}"
                )
                if call.status == 200:
                    call = replace(call, events=tuple(answer["events"]))
                    after = answer["next"]
                self.calls.append(call)
                self._pace(call, 0.0 if call.events else 0.05)

    def _send(
        self,
        http: httpx.Client,
        kind: str,
        request_id: str,
        key_id: str,
        method: str,
        path: str,
        body: object = None,
    ) -> tuple[Call, Any]:
        started, clock = time.time(), time.monotonic()
        try:
            response = http.request(method, path, json=body, headers={"x-request-id": request_id})
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            return self._unanswered(kind, request_id, key_id, started, clock, "connection"), None
        except httpx.TimeoutException:
            return self._unanswered(kind, request_id, key_id, started, clock, "timeout"), None
        except httpx.TransportError:
            return self._unanswered(kind, request_id, key_id, started, clock, "connection"), None
        call = Call(
            kind,
            request_id,
            key_id,
            started,
            time.time(),
            time.monotonic() - clock,
            status=response.status_code,
            retry_after="retry-after" in response.headers,
        )
        return call, response.json() if response.status_code < 300 else None

    @staticmethod
    def _unanswered(
        kind: str, request_id: str, key_id: str, started: float, clock: float, error: str
    ) -> Call:
        return Call(
            kind, request_id, key_id, started, time.time(), time.monotonic() - clock, error=error
        )

    def _pace(self, call: Call, pause: float) -> None:
        if call.error == "connection":
            pause = 0.1  # the web is down: not a loop of refused connections
        elif call.status in (429, 503):
            pause = 1.0  # its Retry-After, at most a second
        if pause:
            self.stopping.wait(pause)


def _answer(http: httpx.Client, method: str, path: str, body: object = None) -> httpx.Response:
    """The first answer that is not a 503 (or no answer), within 60 s: after the faults,
    the service comes back by itself."""

    def once() -> httpx.Response | None:
        try:
            response = http.request(method, path, json=body)
        except httpx.TransportError:
            return None
        return None if response.status_code == 503 else response

    return wait_until(once, 60, f"{method} {path} answered", interval=0.2)


def read_final(base: str, secret: str, receiver: Receiver) -> Final:
    with httpx.Client(base_url=base, headers={"x-api-key": secret}, timeout=30, verify=TLS) as http:
        feed: list[dict[str, Any]] = []
        query = "?limit=1000"
        while True:
            page = _answer(http, "GET", f"{URL}/events{query}").json()
            if not page["events"]:
                break
            feed += page["events"]
            query = f"?limit=1000&after={page['next']}"
        histories = {n: _answer(http, "GET", f"{URL}/{n}/history").json()["events"] for n in POOL}
        checked = _answer(http, "POST", f"{URL}/check", {"phoneNumberList": list(POOL)}).json()
        marks: dict[str, str | None] = dict.fromkeys(checked["notEnded"])
        marks.update({m["phoneNumber"]: m["endedAt"] for m in checked["ended"]})
        lookups: dict[str, str | None] = {}
        for n in POOL:
            found = _answer(http, "GET", f"{URL}/{n}")
            lookups[n] = found.json()["endedAt"] if found.status_code == 200 else None
    return Final(feed, histories, marks, lookups, deliveries(receiver))


def deliveries(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body)["data"] for r in receiver.received]


def settle(stack: ChaosStack) -> None:
    """Everything runs again and answers; the tasks of the run are done or discarded."""

    def ready() -> bool:
        try:
            return httpx.get(f"{stack.base}/readyz", timeout=5, verify=TLS).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, 60, "the service ready after the faults", interval=0.2)
    wait_until(lambda: stack.broker_client.llen(QUEUE) == 0, 60, "the queue empty")


def run(directory: Path, seconds: float, seed: int, say: Callable[[str], None] = print) -> Report:
    """The whole run in `directory` (the processes' logs stay there); its report."""
    choices = rng(seed)
    stack = ChaosStack(directory)
    receiver = Receiver()
    try:
        stack.start(concurrency=WORKERS)
        store = Store(stack.client)
        made = [store.create_key("chaos", "campaign", f"client {i}") for i in range(CHANGE_CLIENTS)]
        keys = [(secret, key.id) for key, secret in made]
        hook = httpx.post(
            f"{stack.base}/api/v1/webhooks",
            json={"url": receiver.url},
            headers={"x-api-key": keys[0][0]},
            timeout=10,
            verify=TLS,
        )
        assert hook.status_code == 201, hook.text
        until = time.monotonic() + seconds
        load = Load(stack.base, keys, choices.randrange(2**32), until)
        nemesis = Nemesis(stack, rng(choices.randrange(2**32)), say)
        clients = load.clients()
        with ThreadPoolExecutor(len(clients) + 1) as pool:
            running: list[Future[None]] = [pool.submit(client) for client in clients]
            faults = pool.submit(nemesis.run, until)
            # A fault not brought back ends the load: what follows would judge nothing.
            faults.add_done_callback(lambda _: load.stopping.set())
            try:
                for future in running:
                    future.result()
            finally:
                load.stopping.set()
                nemesis.stopping.set()
                faults.result()
        say(f"load over: {len(load.calls)} requests, {len(nemesis.faults)} faults")
        settle(stack)
        final = read_final(stack.base, keys[0][0], receiver)
        wanted = {str(e["id"]) for e in final.feed}
        # Not all delivered by then: the checker names each event that was not.
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: wanted <= {str(d["id"]) for d in deliveries(receiver)},
                DELIVERIES_WAIT,
                "every event delivered",
                interval=0.2,
            )
        final = Final(final.feed, final.histories, final.marks, final.lookups, deliveries(receiver))
        report = check(load.calls, nemesis.faults, final, deadlines())
        report.figures = {"seconds": seconds, "seed": seed, **report.figures}
        return report
    finally:
        receiver.close()
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="of load and faults")
    parser.add_argument("--seed", type=int, default=None, help="to repeat a run's choices")
    parser.add_argument("--dir", type=Path, default=None, help="keep the logs here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        report = run(args.dir, args.seconds, seed)
    else:
        with tempfile.TemporaryDirectory(prefix="endcontact-chaos-") as tmp:
            report = run(Path(tmp), args.seconds, seed)
    print(report.text())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
