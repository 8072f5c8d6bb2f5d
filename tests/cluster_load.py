"""Load on a service whose store is a Valkey Cluster, and what its clients saw, for
tests/test_cluster.py and `python -m tests.cluster_failover` (the figures).

Writers, each with a key of its own campaign, end fresh numbers (ten a request) in a
loop, on a connection of their own, each answer recorded: when asked, how long it
took, and which numbers were successes. A success is a promise that the number is
ended; `lost` reads every one back from the store, number by number.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from shared.apikeys import Scope
from shared.store import Store
from tests.helpers import TLS, URL, numbers
from tests.marks import e164

PER_REQUEST = 10
# A campaign's numbers: (509) 555-0000 to -9999.
POOL = 10_000


@dataclass(frozen=True)
class Answer:
    writer: int
    started: float  # time.monotonic()
    took: float
    status: int | None  # None: no answer (the client's own timeout)
    success: tuple[str, ...] = ()
    failure: tuple[str, ...] = ()

    @property
    def whole(self) -> bool:
        """Every number a success."""
        return self.status == 201 and not self.failure


@dataclass
class Writers:
    """`callers` (secret, campaign) writing at once to `base` until `stop()`."""

    base: str
    callers: list[tuple[str, Scope]]
    timeout: float  # the service's deadline: the client waits this + 10 s
    answers: list[Answer] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Writers:
        for writer in range(len(self.callers)):
            thread = threading.Thread(target=self._write, args=(writer,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(self.timeout + 15)

    def since(self, moment: float) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.answers if answer.started >= moment]

    def settled(self, moment: float) -> bool:
        """Every writer's last three answers, asked after `moment`, wholly succeeded."""
        answers = self.since(moment)
        for writer in range(len(self.callers)):
            last = [answer for answer in answers if answer.writer == writer][-3:]
            if len(last) < 3 or not all(answer.whole for answer in last):
                return False
        return True

    def _write(self, writer: int) -> None:
        secret, _ = self.callers[writer]
        batches = _batches()
        with httpx.Client(
            base_url=self.base, timeout=self.timeout + 10, verify=TLS, headers={"x-api-key": secret}
        ) as http:
            while not self._stopping.is_set():
                phones = next(batches)
                started = time.monotonic()
                try:
                    response = http.post(URL, json={"phoneNumberList": phones})
                except httpx.HTTPError:
                    answer = Answer(writer, started, time.monotonic() - started, None)
                else:
                    body = response.json() if response.status_code == 201 else {}
                    answer = Answer(
                        writer,
                        started,
                        time.monotonic() - started,
                        response.status_code,
                        tuple(body.get("success", ())),
                        tuple(body.get("failure", ())),
                    )
                with self._lock:
                    self.answers.append(answer)

    def lost(self, store: Store) -> list[tuple[Scope, str]]:
        """Every acknowledged success the store does not hold as ended."""
        missing = []
        for answer in list(self.answers):
            scope = self.callers[answer.writer][1]
            for phone in answer.success:
                if store.ended_at(scope, phone) is None:
                    missing.append((scope, phone))
        return missing


def _batches() -> Iterator[list[str]]:
    """Fresh numbers of a campaign, PER_REQUEST at a time, in E.164."""
    for first in range(0, POOL, PER_REQUEST):
        yield e164(numbers(first, PER_REQUEST))
    raise AssertionError("the campaign's pool of numbers is used up")


@dataclass(frozen=True)
class Figures:
    """What the clients saw around one fault (at `fault`, by time.monotonic())."""

    requests: int
    during: int  # requests in flight between the fault and everything succeeding again
    failed_numbers: int
    unanswered: int  # no answer within the deadline + 10 s
    slowest: float  # s, of any answer
    recovered: float  # s from the fault to the end of the last answer not wholly a success
    lost: int

    def line(self) -> str:
        return (
            f"{self.requests} requests ({self.during} during the fault), "
            f"{self.failed_numbers} failed numbers, {self.unanswered} unanswered, "
            f"slowest {self.slowest:.2f} s, recovered in {self.recovered:.1f} s, "
            f"{self.lost} acknowledged successes lost"
        )


def figures(writers: Writers, fault: float, recovered_at: float, lost: int) -> Figures:
    answers = list(writers.answers)
    return Figures(
        requests=len(answers),
        during=sum(1 for a in answers if a.started <= recovered_at and a.started + a.took >= fault),
        failed_numbers=sum(len(a.failure) for a in answers)
        + sum(PER_REQUEST for a in answers if a.status != 201),
        unanswered=sum(1 for a in answers if a.status is None),
        slowest=max((a.took for a in answers), default=0.0),
        recovered=recovered_at - fault,
        lost=lost,
    )


def recovery(writers: Writers, fault: float, wait: Callable[[Callable[[], bool]], object]) -> float:
    """When everything succeeded again after `fault`: the end of the last answer not
    wholly a success, once `wait` has seen every writer's last three answers whole (the
    fault itself, if none failed)."""
    wait(lambda: writers.settled(fault))
    ends = [a.started + a.took for a in list(writers.answers) if not a.whole]
    return max([end for end in ends if end >= fault], default=fault)
