"""Sending for `endcontact import`: the checked rows in batches of up to MAX_NUMBERS
(the service's own limit, shared/events.py) through the client (ClientSend), up to
`--concurrency` at once; the retry deadline an outage shortens; reading held back while
too many rows wait; a refusal of the whole import (Fatal); Ctrl-C and SIGTERM.

The split: the rows come from reading.py as Entry objects and go to results.py's
ResultsWriter with their outcomes; this module holds the asynchronous work (the
senders, the waits between them and the reading, the signals), so that the rest reads
(and is tested) as plain code.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cli.importer.errors import Fatal
from cli.importer.reading import Classifier, Rows
from cli.importer.results import Counts, Entry, ResultsWriter
from shared.events import MAX_NUMBERS

if TYPE_CHECKING:
    from endcontact_client import AsyncClient, ProblemError

# Where the command reads the key from (command.py): named here when the service refuses it.
KEY_VARIABLE = "ENDCONTACT_API_KEY"
# Requests in flight at once: as many as the closed loop that saturates the service
# (bench/results/results.md). Measured with bench/importer.py (100,000 numbers, 3
# rounds against a saturated run around each, on the 2-core machine the service runs
# on): 8 gave a median 0.75x the saturated numbers/s, 16 gave 0.80x, 24 0.78x. Again
# with the client's own HTTP/1.1 (importer CPU 20-23 µs a number, not 36-47), on a busy
# machine, two runs: 8 gave 0.75x; 16 0.88x and 0.90x; 24 0.93x and 0.87x (rounds
# 0.73-0.97): 16 and 24 within the noise of each other, so 16 stays.
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256
DEFAULT_RETRY_FOR = 60.0
# Rows finished but waiting behind an earlier row still in flight (results are written
# in input order), and rows read but not yet finished: at most this many are held.
MAX_PENDING = 20_000

# Sends one batch of E.164 numbers for at most the given seconds of retries; returns,
# in the same order, None for each number ended and, for each that was not, why.
Send = Callable[[list[str], float], Awaitable[list[str | None]]]


@dataclass
class Importer:
    """Rows in, results out in input order, batches of up to MAX_NUMBERS new numbers
    sent by up to `concurrency` senders at once.

    A batch is retried (by `send`) for `retry_for` seconds, but never past `retry_for`
    after the service last ended a number: once it has been down that long, the rest
    fails at once instead of each batch waiting out its own `retry_for`.

    The results written are always the input's first rows, whatever stops the run
    (Ctrl-C cancels it): each finished, or as the results file resumed from had it."""

    send: Send
    region: str
    # Takes each results row: the input's cells, then OUTCOME's (results.py).
    write: Callable[[list[str]], None]
    # The input's columns: a shorter row is written with empty cells up to it, so that
    # OUTCOME's are in their columns.
    width: int = 1
    concurrency: int = DEFAULT_CONCURRENCY
    retry_for: float = DEFAULT_RETRY_FOR
    progress: Callable[[int], None] = lambda done: None
    counts: Counts = field(default_factory=Counts)
    _last_success: float = field(default_factory=time.monotonic)
    _rows: Classifier = field(init=False)
    _results: ResultsWriter = field(init=False)

    def __post_init__(self) -> None:
        self._rows = Classifier(self.region)
        self._results = ResultsWriter(self.write, self.width, self.progress, self.counts)

    async def run(self, rows: Rows) -> Counts:
        queue: asyncio.Queue[list[Entry] | None] = asyncio.Queue(maxsize=self.concurrency)
        senders = [asyncio.create_task(self._sender(queue)) for _ in range(self.concurrency)]
        # Looked up once: this loop runs for every row of the file.
        classify, results = self._rows.classify, self._results
        pending = results.pending
        batch: list[Entry] = []
        finished = False
        try:
            for row, before in rows:
                entry = classify(row, before)
                pending.append(entry)
                if not entry.status and not entry.original:
                    batch.append(entry)
                    if len(batch) == MAX_NUMBERS:
                        await self._put(queue, batch, senders)
                        batch = []
                elif len(pending) == 1:
                    results.flush()
                if len(pending) >= MAX_PENDING:
                    # Rows behind a batch still being filled wait for it: send it now.
                    if batch:
                        await self._put(queue, batch, senders)
                        batch = []
                    await self._drain_to(MAX_PENDING // 2, senders)
            if batch:
                await self._put(queue, batch, senders)
            for _ in senders:
                await self._put(queue, None, senders)
            await asyncio.gather(*senders)
            finished = True
        finally:
            for sender in senders:
                sender.cancel()
            results.flush()
            if not finished:
                results.carry_over(before for _, before in rows)
        return self.counts

    async def _put(
        self,
        queue: asyncio.Queue[list[Entry] | None],
        batch: list[Entry] | None,
        senders: list[asyncio.Task[None]],
    ) -> None:
        """Queue a batch; a sender's Fatal (or crash) surfaces here, not later."""
        if not queue.full():
            # Room already (most batches): no future to make and to wait on together
            # with every sender, which cost ~90 µs a batch with 16 of them.
            _raise_any(senders)
            queue.put_nowait(batch)
            return
        put = asyncio.ensure_future(queue.put(batch))
        await self._until(put, senders)

    async def _drain_to(self, pending: int, senders: list[asyncio.Task[None]]) -> None:
        results = self._results
        while len(results.pending) > pending:
            results.changed.clear()
            await self._until(asyncio.ensure_future(results.changed.wait()), senders)

    @staticmethod
    async def _until(waiting: asyncio.Future[Any], senders: list[asyncio.Task[None]]) -> None:
        """Until `waiting` is done, or a sender raised (then that, here)."""
        try:
            while not waiting.done():
                running = [sender for sender in senders if not sender.done()]
                watched: list[asyncio.Future[Any]] = [waiting, *running]
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                _raise_any(senders)
        finally:
            waiting.cancel()

    async def _sender(self, queue: asyncio.Queue[list[Entry] | None]) -> None:
        while (batch := await queue.get()) is not None:
            now = time.monotonic()
            # Not past retry_for since the service last ended anything (class docstring).
            retry_for = max(0.0, min(self.retry_for, self._last_success + self.retry_for - now))
            outcomes = await self.send([entry.phone for entry in batch], retry_for)
            if any(outcome is None for outcome in outcomes):
                self._last_success = time.monotonic()
            self._results.finish(batch, outcomes)


def _raise_any(senders: list[asyncio.Task[None]]) -> None:
    """A sender's error (a Fatal, a crash), raised here."""
    for sender in senders:
        if sender.done() and not sender.cancelled():
            error = sender.exception()
            if error is not None:
                raise error


class ClientSend:
    """Send through the client (client.AsyncClient): its retries of failures with
    backoff, of 429 and 503 after their Retry-After, and of no answer at all.

    One client of one connection per batch in flight, not one client of `concurrency`
    connections: each call sets its own retry_for on its client, and over https (httpx's
    own transport) httpcore's pool looks at each of its connections for every request it
    sends, so many small pools cost less CPU per request (measured with 8 in flight:
    0.76 against 1.00 ms; with 16: 0.73 against 1.47 ms)."""

    def __init__(self, url: str, key: str, concurrency: int, reason: str | None) -> None:
        self.url = url
        self.key = key
        self.concurrency = concurrency
        self.reason = reason
        self._idle: list[AsyncClient] = []

    async def __aenter__(self) -> ClientSend:
        from endcontact_client import AsyncClient

        self._idle = [
            AsyncClient(self.url, self.key, concurrency=1) for _ in range(self.concurrency)
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self._idle:
            await client.close()

    async def __call__(self, numbers: list[str], retry_for: float) -> list[str | None]:
        from endcontact_client import ProblemError

        # Importer has at most `concurrency` batches in flight: one client is idle.
        client = self._idle.pop()
        # Each call its own retry_for (Importer shortens it in an outage); the client,
        # this call's alone, reads it when the call starts.
        client.retry_for = retry_for
        try:
            result = await client.end_contact(numbers, reason=self.reason)
        except ProblemError as exc:
            return self._refused(numbers, retry_for, exc)
        finally:
            self._idle.append(client)
        failing, ended = set(result.failure), set(result.success)
        still = f"still failing after {retry_for:.0f} s of retries (the service's failure list)"
        return [
            None if number in ended else still if number in failing else "not in the answer"
            for number in numbers
        ]

    def _refused(self, numbers: list[str], retry_for: float, exc: ProblemError) -> list[str | None]:
        """A batch that got an error: failed rows, or the import stopped (Fatal)."""
        problem = f"{exc.status} {exc.title}: {exc.detail}"
        if exc.retryable:
            return [f"no success within {retry_for:.0f} s of retries: {problem}"] * len(numbers)
        if exc.status == 400:
            # Not expected: every number was checked here with the service's rules.
            return [f"refused by the service: {problem}"] * len(numbers)
        if exc.status == 401:
            raise Fatal(f"the service refused the key in {KEY_VARIABLE} ({problem})") from None
        raise Fatal(
            f"the service at {self.url} answered {exc.status} {exc.title} to "
            f"end-contact (is --url right?)"
        ) from None


async def with_sender(sender: ClientSend, importer: Importer, rows: Rows) -> Counts:
    async with sender:
        return await importer.run(rows)


def run_until_signal(work: Awaitable[Counts]) -> int | None:
    """Run the import; SIGINT or SIGTERM cancels it (its results so far are written by
    Importer.run on the way out). The signal's number when one came, else None."""

    async def main() -> int | None:
        task = asyncio.ensure_future(work)
        caught: list[int] = []
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            # False once the import is done: its result stands.
            if task.cancel():
                caught.append(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            await task
        except asyncio.CancelledError:
            if not caught:
                raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
                # The result is decided: a signal during the summary or the exit (tens
                # of ms) must not kill the process with another status (it did: 143).
                signal.signal(signum, signal.SIG_IGN)
        return caught[0] if caught else None

    return asyncio.run(main())
