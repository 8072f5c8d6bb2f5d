"""What the sync and async clients share: every rule of a call, without its I/O.

Each call is a plan: a generator that yields what to do next, a `Send` (the driver
answers with the httpx.Response, or the httpx.TransportError it got instead) or a wait
in seconds (answered with None), and returns the call's result or raises its
ProblemError. Client carries a plan out blocking, AsyncClient awaiting (`Run` steps
it): the retries, the deadline, the chunking and the reading of answers are written
here once, so the two halves cannot drift apart.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx

from endcontact_client.errors import ProblemError, not_a_problem, parse_problem, unreachable
from endcontact_client.models import ChangeResult, CheckResult, Event, EventPage, History, Mark
from endcontact_client.retry import (
    CHANGE_CHUNK,
    CHECK_CHUNK,
    Backoff,
    Chunk,
    Deadline,
    chunks,
    parse_retry_after,
    wait_before_retry,
)

BASE = "/api/v1/leads"
END = f"{BASE}/end-contact"
RESUME = f"{BASE}/resume-contact"
CHECK = f"{END}/check"
EVENTS = f"{END}/events"
NOT_ENDED = "/problems/not-ended"
USER_AGENT = "endcontact-client/0.1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_FOR = 30.0
DEFAULT_POLL_INTERVAL = 1.0
PAGE_SIZE = 1000

T = TypeVar("T")


@dataclass(slots=True)
class Send:
    """A request to send: as httpx's build_request takes it."""

    method: str
    path: str
    options: dict[str, Any]


# What a Send is answered with; a wait is answered with None.
Reply = httpx.Response | httpx.TransportError | None
Plan = Generator[Send | float, Reply, T]


class Policy(Protocol):
    """What a client sets for its calls (read as each call begins)."""

    retry_for: float
    backoff: Backoff


class Run(Generic[T]):
    """A plan carried out step by step: `next` takes the last step's reply and gives the
    next step, or None when the plan is done and `result` holds what it returned."""

    __slots__ = ("_plan", "result")
    result: T

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan

    def next(self, reply: Reply) -> Send | float | None:
        try:
            return self._plan.send(reply)
        except StopIteration as done:
            self.result = done.value
            return None


@dataclass(frozen=True)
class Chunked(Generic[T]):
    """A call over a long list: one plan a chunk (each may run as soon as the one before
    it or alongside it), and how their results make the call's."""

    plans: list[Plan[T]]
    merge: Callable[[list[T]], T]


# --- the calls ----------------------------------------------------------------------


def change(
    policy: Policy, path: str, numbers: Sequence[str], reason: str | None
) -> Chunked[ChangeResult]:
    """End or resume contact (`path`): every chunk within one deadline."""
    deadline = Deadline.after(policy.retry_for)
    return Chunked(
        [
            _change_chunk(policy.backoff, deadline, path, chunk, reason)
            for chunk in chunks(numbers, CHANGE_CHUNK)
        ],
        _merged_changes,
    )


def check(policy: Policy, numbers: Sequence[str]) -> Chunked[CheckResult]:
    deadline = Deadline.after(policy.retry_for)
    return Chunked(
        [_check_chunk(policy.backoff, deadline, chunk) for chunk in chunks(numbers, CHECK_CHUNK)],
        _merged_checks,
    )


def lookup(policy: Policy, number: str) -> Plan[Mark | None]:
    deadline = Deadline.after(policy.retry_for)
    try:
        response = yield from send(policy.backoff, deadline, "GET", number_path(number))
    except ProblemError as exc:
        if exc.status == 404 and exc.type == NOT_ENDED:
            return None
        raise
    return Mark.from_json(json_of(response))


def history(policy: Policy, number: str) -> Plan[History]:
    deadline = Deadline.after(policy.retry_for)
    response = yield from send(policy.backoff, deadline, "GET", number_path(number, "/history"))
    return History.from_json(json_of(response))


@dataclass
class Feed:
    """A walk along the change feed from after `cursor`: each page asked for from where
    the last one ended, after `poll_interval` seconds if that one was empty (or the walk
    stops then, if `stop_when_idle`)."""

    cursor: str | None
    page_size: int
    poll_interval: float
    stop_when_idle: bool
    _idle: bool = field(default=False, init=False)

    def next_page(self, policy: Policy) -> Plan[list[Event] | None]:
        """The next page's events, or None when the walk stops."""
        if self._idle:
            if self.stop_when_idle:
                return None
            yield self.poll_interval
        params: dict[str, str | int] = {"limit": self.page_size}
        if self.cursor is not None:
            params["after"] = self.cursor
        # Its own deadline, from after the poll's wait.
        deadline = Deadline.after(policy.retry_for)
        response = yield from send(policy.backoff, deadline, "GET", EVENTS, params=params)
        page = EventPage.from_json(json_of(response))
        self.cursor = page.next
        self._idle = not page.events
        return page.events


# --- their parts --------------------------------------------------------------------


def send(
    backoff: Backoff, deadline: Deadline, method: str, path: str, **options: Any
) -> Plan[httpx.Response]:
    """One request, again while its error may pass and the deadline allows."""
    attempt = 0
    while True:
        reply = yield Send(method, path, options)
        if isinstance(reply, httpx.Response):
            if reply.status_code < 400:
                return reply
            error = error_of(reply)
        else:
            assert reply is not None, "a Send is answered"
            error = unreachable(reply)
        if not error.retryable:
            raise error
        delay = wait_before_retry(error.retry_after, attempt, backoff, deadline.remaining())
        if delay is None:
            raise error
        yield delay
        attempt += 1


def _send_chunk(
    backoff: Backoff, deadline: Deadline, path: str, chunk: Chunk, reason: str | None
) -> Plan[httpx.Response]:
    """A chunk's request; a problem's pointers made to index the caller's whole list."""
    try:
        return (
            yield from send(
                backoff, deadline, "POST", path, json=change_body(chunk.numbers, reason)
            )
        )
    except ProblemError as exc:
        raise exc.shifted(chunk.offset) from exc.__cause__


def _change_chunk(
    backoff: Backoff, deadline: Deadline, path: str, chunk: Chunk, reason: str | None
) -> Plan[ChangeResult]:
    """One chunk, then its failures again until none is left or the deadline."""
    response = yield from _send_chunk(backoff, deadline, path, chunk, reason)
    first = ChangeResult.from_json(json_of(response))
    success, failing = list(first.success), list(first.failure)
    attempt = 0
    while failing:
        delay = wait_before_retry(None, attempt, backoff, deadline.remaining())
        if delay is None:
            break
        yield delay
        attempt += 1
        try:
            response = yield from send(
                backoff, deadline, "POST", path, json=change_body(failing, reason)
            )
        except ProblemError as exc:
            if exc.retryable:  # the deadline came while the service was away
                break
            raise
        again = ChangeResult.from_json(json_of(response))
        success += again.success
        failing = again.failure
    return ChangeResult(success, failing)


def _check_chunk(backoff: Backoff, deadline: Deadline, chunk: Chunk) -> Plan[CheckResult]:
    response = yield from _send_chunk(backoff, deadline, CHECK, chunk, None)
    return CheckResult.from_json(json_of(response))


def _merged_changes(parts: list[ChangeResult]) -> ChangeResult:
    return ChangeResult(
        [number for part in parts for number in part.success],
        [number for part in parts for number in part.failure],
    )


def _merged_checks(parts: list[CheckResult]) -> CheckResult:
    return CheckResult(
        [mark for part in parts for mark in part.ended],
        [number for part in parts for number in part.not_ended],
    )


# --- requests and answers -----------------------------------------------------------


class Requests:
    """The httpx.Request for each Send, as the client's build_request makes it. A POST
    of JSON (every change, every check) is made from the URL and headers merged once per
    path: merging them anew (URL parsing, headers, cookies) was a tenth of the client's
    CPU per request."""

    def __init__(self, http: httpx.Client | httpx.AsyncClient) -> None:
        self._http = http
        self._urls: dict[str, httpx.URL] = {}
        self._timeout = http.timeout.as_dict()

    def build(self, send: Send) -> httpx.Request:
        http, options = self._http, send.options
        if send.method != "POST" or options.keys() != {"json"} or http.cookies:
            return http.build_request(send.method, send.path, **options)
        url = self._urls.get(send.path)
        if url is None:
            url = self._urls[send.path] = http.build_request(send.method, send.path).url
        return httpx.Request(
            send.method,
            url,
            headers=http.headers,
            json=options["json"],
            extensions={"timeout": self._timeout},
        )


def headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "user-agent": USER_AGENT, "accept": "application/json"}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once
    per process: httpx makes one for every client otherwise, and loading the CA bundle
    costs ~28 ms of CPU each time (the importer makes a client per request in flight)."""
    return httpx.create_ssl_context()


def number_path(number: str, tail: str = "") -> str:
    """The lookup's (or history's) path: the number as given, every reserved character
    escaped, so "(509) 555-1234" and "+1 509…" reach the service as typed."""
    return f"{END}/{quote(number, safe='')}{tail}"


def change_body(numbers: list[str], reason: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"phoneNumberList": numbers}
    if reason is not None:
        body["reason"] = reason
    return body


def error_of(response: httpx.Response) -> ProblemError:
    """The ProblemError an error answer stands for."""
    problem = parse_problem(
        response.status_code, response.headers.get("content-type", ""), response.content
    )
    return ProblemError(
        problem,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        request_id=response.headers.get("x-request-id"),
    )


def json_of(response: httpx.Response) -> dict[str, Any]:
    """A success's JSON object; an answer that is none (a proxy's page with a 200) is a
    ProblemError that is not retryable, since nothing says a retry would fare better."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProblemError(
            not_a_problem(
                response.status_code, response.headers.get("content-type", ""), response.content
            ),
            request_id=response.headers.get("x-request-id"),
        )
    return body
