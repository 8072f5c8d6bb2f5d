"""The blocking client: one request at a time, over httpx.Client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from endcontact_client import _core
from endcontact_client.errors import ProblemError, unreachable
from endcontact_client.models import ChangeResult, CheckResult, Event, EventPage, History, Mark
from endcontact_client.retry import (
    CHANGE_CHUNK,
    CHECK_CHUNK,
    Backoff,
    Chunk,
    Deadline,
    chunks,
    wait_before_retry,
)

Hook = Callable[..., Any]


class Client:
    """The end-contact API from Python, blocking.

    Every method raises ProblemError for an error answer. One that may pass (429, 503,
    other 5xx, no answer) is retried until `retry_for` seconds after the call began,
    honouring Retry-After; numbers that come back in `failure` are sent again with
    exponential backoff and full jitter until then too. A list longer than the API takes
    (50 numbers, 1000 for `check`) is sent in several requests, one after another.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT,
        retry_for: float = _core.DEFAULT_RETRY_FOR,
        backoff: Backoff | None = None,
        event_hooks: Mapping[str, list[Hook]] | None = None,
    ) -> None:
        self.retry_for = retry_for
        self.backoff = backoff or Backoff()
        self._http = httpx.Client(
            base_url=url,
            headers=_core.headers(key),
            timeout=timeout,
            verify=_core.tls_context(),
            event_hooks=event_hooks,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the API ---------------------------------------------------------------------

    def end_contact(self, numbers: Sequence[str], reason: str | None = None) -> ChangeResult:
        """End contact with `numbers` (any format the service accepts). A 400 for any
        chunk raises at once; chunks sent before it stay done (sending them again is
        safe). Its pointers index `numbers`."""
        return self._change(_core.END, numbers, reason)

    def resume_contact(self, numbers: Sequence[str], reason: str | None = None) -> ChangeResult:
        """Resume contact with `numbers`: as end_contact."""
        return self._change(_core.RESUME, numbers, reason)

    def check(self, numbers: Sequence[str]) -> CheckResult:
        """Which of `numbers` are ended, each list in request order."""
        deadline = Deadline.after(self.retry_for)
        ended: list[Mark] = []
        not_ended: list[str] = []
        for chunk in chunks(numbers, CHECK_CHUNK):
            try:
                response = self._send(
                    "POST", _core.CHECK, deadline, json=_core.change_body(chunk.numbers, None)
                )
            except ProblemError as exc:
                raise exc.shifted(chunk.offset) from exc.__cause__
            part = CheckResult.from_json(_core.json_of(response))
            ended += part.ended
            not_ended += part.not_ended
        return CheckResult(ended, not_ended)

    def lookup(self, number: str) -> Mark | None:
        """The number's mark, or None when it is not ended for the key's campaign."""
        try:
            response = self._send("GET", _core.number_path(number), Deadline.after(self.retry_for))
        except ProblemError as exc:
            if exc.status == 404 and exc.type == _core.NOT_ENDED:
                return None
            raise
        return Mark.from_json(_core.json_of(response))

    def history(self, number: str) -> History:
        """The number's events, oldest first."""
        path = _core.number_path(number, "/history")
        response = self._send("GET", path, Deadline.after(self.retry_for))
        return History.from_json(_core.json_of(response))

    def events(
        self,
        after: str | None = None,
        *,
        poll_interval: float = _core.DEFAULT_POLL_INTERVAL,
        stop_when_idle: bool = False,
        page_size: int = _core.PAGE_SIZE,
    ) -> Iterator[Event]:
        """The campaign's events from after `after` (from the oldest kept without it),
        each once, in order; when there is nothing new, it polls every `poll_interval`
        seconds, or stops if `stop_when_idle`. To carry on later, pass the last event's
        `id` as `after`. A cursor older than the feed keeps raises ProblemError 410."""
        cursor = after
        while True:
            page = self._events_page(cursor, page_size)
            yield from page.events
            cursor = page.next
            if not page.events:
                if stop_when_idle:
                    return
                time.sleep(poll_interval)

    # --- the machinery ---------------------------------------------------------------

    def _events_page(self, after: str | None, limit: int) -> EventPage:
        params: dict[str, str | int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        response = self._send("GET", _core.EVENTS, Deadline.after(self.retry_for), params=params)
        return EventPage.from_json(_core.json_of(response))

    def _change(self, path: str, numbers: Sequence[str], reason: str | None) -> ChangeResult:
        deadline = Deadline.after(self.retry_for)
        success: list[str] = []
        failure: list[str] = []
        for chunk in chunks(numbers, CHANGE_CHUNK):
            part = self._change_chunk(path, chunk, reason, deadline)
            success += part.success
            failure += part.failure
        return ChangeResult(success, failure)

    def _change_chunk(
        self, path: str, chunk: Chunk, reason: str | None, deadline: Deadline
    ) -> ChangeResult:
        """One chunk, then its failures again until none is left or the deadline."""
        try:
            response = self._send(
                "POST", path, deadline, json=_core.change_body(chunk.numbers, reason)
            )
        except ProblemError as exc:
            raise exc.shifted(chunk.offset) from exc.__cause__
        first = ChangeResult.from_json(_core.json_of(response))
        success, failing = list(first.success), list(first.failure)
        attempt = 0
        while failing:
            delay = wait_before_retry(None, attempt, self.backoff, deadline.remaining())
            if delay is None:
                break
            time.sleep(delay)
            attempt += 1
            try:
                response = self._send(
                    "POST", path, deadline, json=_core.change_body(failing, reason)
                )
            except ProblemError as exc:
                if exc.retryable:  # the deadline came while the service was away
                    break
                raise
            again = ChangeResult.from_json(_core.json_of(response))
            success += again.success
            failing = again.failure
        return ChangeResult(success, failing)

    def _send(self, method: str, path: str, deadline: Deadline, **options: Any) -> httpx.Response:
        """One request, again while its error may pass and the deadline allows."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **options)
            except httpx.TransportError as exc:
                error = unreachable(exc)
            else:
                if response.status_code < 400:
                    return response
                error = _core.error_of(response)
            if not error.retryable:
                raise error
            delay = wait_before_retry(
                error.retry_after, attempt, self.backoff, deadline.remaining()
            )
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1
