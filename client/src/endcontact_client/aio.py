"""The asyncio client: the same methods as Client, chunks sent concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from endcontact_client import _core
from endcontact_client._transport import lean_transport_for
from endcontact_client.models import ChangeResult, CheckResult, Event, History, Mark
from endcontact_client.retry import Backoff

T = TypeVar("T")
Hook = Callable[..., Awaitable[Any]]
DEFAULT_CONCURRENCY = 4


class AsyncClient:
    """The end-contact API from asyncio: as Client, but the chunks of a long list
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
        self._requests = _core.Requests(self._http)

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
        return await self._chunked(_core.change(self, _core.END, numbers, reason))

    async def resume_contact(
        self, numbers: Sequence[str], reason: str | None = None
    ) -> ChangeResult:
        """Resume contact with `numbers`: as end_contact."""
        return await self._chunked(_core.change(self, _core.RESUME, numbers, reason))

    async def check(self, numbers: Sequence[str]) -> CheckResult:
        """Which of `numbers` are ended, each list in request order."""
        return await self._chunked(_core.check(self, numbers))

    async def lookup(self, number: str) -> Mark | None:
        """The number's mark, or None when it is not ended for the key's campaign."""
        return await self._run(_core.lookup(self, number))

    async def history(self, number: str) -> History:
        """The number's events, oldest first."""
        return await self._run(_core.history(self, number))

    async def events(
        self,
        after: str | None = None,
        *,
        poll_interval: float = _core.DEFAULT_POLL_INTERVAL,
        stop_when_idle: bool = False,
        page_size: int = _core.PAGE_SIZE,
    ) -> AsyncIterator[Event]:
        """As Client.events, asynchronously: `async for event in client.events(): ...`"""
        feed = _core.Feed(after, page_size, poll_interval, stop_when_idle)
        while (events := await self._run(feed.next_page(self))) is not None:
            for event in events:
                yield event

    # --- the I/O: the core decides, this does -----------------------------------------

    async def _chunked(self, call: _core.Chunked[T]) -> T:
        """The chunks concurrently, merged in request order."""
        return call.merge(await _all([self._run(plan) for plan in call.plans]))

    async def _run(self, plan: _core.Plan[T]) -> T:
        run = _core.Run(plan)
        reply: _core.Reply = None
        while (step := run.next(reply)) is not None:
            if isinstance(step, _core.Send):
                request = self._requests.build(step)
                try:
                    async with self._slots:  # held for the request, not for a wait
                        reply = await self._http.send(request)
                except httpx.TransportError as exc:
                    reply = exc
            else:
                await asyncio.sleep(step)
                reply = None
        return run.result


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
