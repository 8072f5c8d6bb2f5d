"""The blocking client: one request at a time, over httpx.Client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from endcontact_client import _core
from endcontact_client.models import ChangeResult, CheckResult, Event, History, Mark
from endcontact_client.retry import Backoff

T = TypeVar("T")
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
        self._requests = _core.Requests(self._http)

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
        return self._chunked(_core.change(self, _core.END, numbers, reason))

    def resume_contact(self, numbers: Sequence[str], reason: str | None = None) -> ChangeResult:
        """Resume contact with `numbers`: as end_contact."""
        return self._chunked(_core.change(self, _core.RESUME, numbers, reason))

    def check(self, numbers: Sequence[str]) -> CheckResult:
        """Which of `numbers` are ended, each list in request order."""
        return self._chunked(_core.check(self, numbers))

    def lookup(self, number: str) -> Mark | None:
        """The number's mark, or None when it is not ended for the key's campaign."""
        return self._run(_core.lookup(self, number))

    def history(self, number: str) -> History:
        """The number's events, oldest first."""
        return self._run(_core.history(self, number))

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
        feed = _core.Feed(after, page_size, poll_interval, stop_when_idle)
        while (events := self._run(feed.next_page(self))) is not None:
            yield from events

    # --- the I/O: the core decides, this does -----------------------------------------

    def _chunked(self, call: _core.Chunked[T]) -> T:
        """The chunks one after another (a chunk's error stops the rest unsent)."""
        return call.merge([self._run(plan) for plan in call.plans])

    def _run(self, plan: _core.Plan[T]) -> T:
        run = _core.Run(plan)
        reply: _core.Reply = None
        while (step := run.next(reply)) is not None:
            if isinstance(step, _core.Send):
                try:
                    reply = self._http.send(self._requests.build(step))
                except httpx.TransportError as exc:
                    reply = exc
            else:
                time.sleep(step)
                reply = None
        return run.result
