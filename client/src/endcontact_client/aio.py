"""The asyncio client: the same methods as client.Client, chunks sent concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from endcontact_client import _core
from endcontact_client._transport import lean_transport_for
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

T = TypeVar("T")
Hook = Callable[..., Awaitable[Any]]
DEFAULT_CONCURRENCY = 4


class AsyncClient:
    """The end-contact API from asyncio: as client.Client, but the chunks of a long list
    are sent concurrently, at most `concurrency` requests of this client in flight at
    once (across all its calls; a call waiting out a backoff holds no slot)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT,
        retry_for: float = _core.DEFAULT_RETRY_FOR,
        concurrency: int = DEFAULT_CONCURRENCY,
        backoff: Backoff | None = None,
        event_hooks: Mapping[str, list[Hook]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.retry_for = retry_for
        self.backoff = backoff or Backoff()
        self._slots = asyncio.Semaphore(concurrency)
        # Plain http:// without a proxy: the lean transport (its module says why);
        # otherwise httpx's own, with TLS.
        transport = lean_transport_for(url, concurrency)
        self._http = httpx.AsyncClient(
            base_url=url,
            headers=_core.headers(key),
            timeout=timeout,
            verify=_core.tls_context() if transport is None else True,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            event_hooks=event_hooks,
            transport=transport,
        )
        self._urls: dict[str, httpx.URL] = {}
        self._timeout = self._http.timeout.as_dict()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the API ---------------------------------------------------------------------

    async def end_contact(self, numbers: Sequence[str], reason: str | None = None) -> ChangeResult:
        """End contact with `numbers`. A 400 for any chunk raises at once and cancels the
        chunks still under way; those already answered stay done (sending them again is
        safe). Its pointers index `numbers`."""
        return await self._change(_core.END, numbers, reason)

    async def resume_contact(
        self, numbers: Sequence[str], reason: str | None = None
    ) -> ChangeResult:
        """Resume contact with `numbers`: as end_contact."""
        return await self._change(_core.RESUME, numbers, reason)

    async def check(self, numbers: Sequence[str]) -> CheckResult:
        """Which of `numbers` are ended, each list in request order."""
        deadline = Deadline.after(self.retry_for)

        async def one(chunk: Chunk) -> CheckResult:
            body = _core.change_body(chunk.numbers, None)
            try:
                response = await self._send("POST", _core.CHECK, deadline, json=body)
            except ProblemError as exc:
                raise exc.shifted(chunk.offset) from exc.__cause__
            return CheckResult.from_json(_core.json_of(response))

        parts = await _all([one(chunk) for chunk in chunks(numbers, CHECK_CHUNK)])
        return CheckResult(
            [mark for part in parts for mark in part.ended],
            [number for part in parts for number in part.not_ended],
        )

    async def lookup(self, number: str) -> Mark | None:
        """The number's mark, or None when it is not ended for the key's campaign."""
        deadline = Deadline.after(self.retry_for)
        try:
            response = await self._send("GET", _core.number_path(number), deadline)
        except ProblemError as exc:
            if exc.status == 404 and exc.type == _core.NOT_ENDED:
                return None
            raise
        return Mark.from_json(_core.json_of(response))

    async def history(self, number: str) -> History:
        """The number's events, oldest first."""
        path = _core.number_path(number, "/history")
        response = await self._send("GET", path, Deadline.after(self.retry_for))
        return History.from_json(_core.json_of(response))

    async def events(
        self,
        after: str | None = None,
        *,
        poll_interval: float = _core.DEFAULT_POLL_INTERVAL,
        stop_when_idle: bool = False,
        page_size: int = _core.PAGE_SIZE,
    ) -> AsyncIterator[Event]:
        """As Client.events, asynchronously: `async for event in client.events(): ...`"""
        cursor = after
        while True:
            page = await self._events_page(cursor, page_size)
            for event in page.events:
                yield event
            cursor = page.next
            if not page.events:
                if stop_when_idle:
                    return
                await asyncio.sleep(poll_interval)

    # --- the machinery ---------------------------------------------------------------

    async def _events_page(self, after: str | None, limit: int) -> EventPage:
        params: dict[str, str | int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        deadline = Deadline.after(self.retry_for)
        response = await self._send("GET", _core.EVENTS, deadline, params=params)
        return EventPage.from_json(_core.json_of(response))

    async def _change(self, path: str, numbers: Sequence[str], reason: str | None) -> ChangeResult:
        deadline = Deadline.after(self.retry_for)
        parts = await _all(
            [
                self._change_chunk(path, chunk, reason, deadline)
                for chunk in chunks(numbers, CHANGE_CHUNK)
            ]
        )
        return ChangeResult(
            [number for part in parts for number in part.success],
            [number for part in parts for number in part.failure],
        )

    async def _change_chunk(
        self, path: str, chunk: Chunk, reason: str | None, deadline: Deadline
    ) -> ChangeResult:
        """One chunk, then its failures again until none is left or the deadline."""
        try:
            response = await self._send(
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
            await asyncio.sleep(delay)
            attempt += 1
            try:
                response = await self._send(
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

    async def _send(
        self, method: str, path: str, deadline: Deadline, **options: Any
    ) -> httpx.Response:
        """One request, again while its error may pass and the deadline allows."""
        attempt = 0
        while True:
            request = self._request(method, path, options)
            try:
                async with self._slots:
                    response = await self._http.send(request)
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
            await asyncio.sleep(delay)
            attempt += 1

    def _request(self, method: str, path: str, options: dict[str, Any]) -> httpx.Request:
        """The request as httpx's build_request makes it. A POST of JSON (every change,
        every check) is made from the URL and headers merged once per path: merging them
        anew (URL parsing, headers, cookies) was a tenth of the client's CPU per request."""
        if method != "POST" or options.keys() != {"json"} or self._http.cookies:
            return self._http.build_request(method, path, **options)
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._http.build_request(method, path).url
        return httpx.Request(
            method,
            url,
            headers=self._http.headers,
            json=options["json"],
            extensions={"timeout": self._timeout},
        )


async def _all(calls: list[Awaitable[T]]) -> list[T]:
    """Every call's result in order; the first error cancels the rest and is raised."""
    if len(calls) == 1:
        # Nothing to cancel: no task to make, wait on and gather (most calls are one
        # chunk, and the importer makes ~2,000 of them for 100,000 numbers).
        return [await calls[0]]
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
