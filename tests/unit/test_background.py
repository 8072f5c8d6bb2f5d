"""Stopping a background task within a deadline (shared.background), whatever the task
does with a cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared import background


async def loses_one_cancellation() -> None:
    """As a loop does whose cancellation asyncio.wait_for dropped (Python 3.11)."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    await asyncio.sleep(10)


async def deaf_until(heard: asyncio.Event) -> None:
    while not heard.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await heard.wait()


def test_a_task_that_loses_a_cancellation_is_cancelled_again() -> None:
    async def run() -> asyncio.Task[None]:
        task = asyncio.create_task(loses_one_cancellation())
        await asyncio.sleep(0)
        assert await background.stop(task)
        return task

    assert asyncio.run(run()).cancelled()


def test_a_task_that_will_not_stop_is_given_up_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> bool:
        heard = asyncio.Event()
        task = asyncio.create_task(deaf_until(heard), name="deaf")
        await asyncio.sleep(0)
        stopped = await background.stop(task, timeout=0.2)
        assert not task.done()
        heard.set()
        await task
        return stopped

    assert asyncio.run(run()) is False
    assert [(r.levelname, r.getMessage(), getattr(r, "task", None)) for r in caplog.records] == [
        ("ERROR", "a background task did not stop", "deaf")
    ]


def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    """`suppress(CancelledError): await task` swallowed it: a deadline around a stop
    expired without a word."""

    async def run() -> None:
        heard = asyncio.Event()
        task = asyncio.create_task(deaf_until(heard))
        await asyncio.sleep(0)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await background.stop(task, timeout=10)
        finally:
            heard.set()
            await task

    asyncio.run(run())


def test_a_task_that_died_of_an_error_raises_it() -> None:
    async def fails() -> None:
        raise LookupError("it died")

    async def run() -> None:
        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        with pytest.raises(LookupError):
            await background.stop(task)

    asyncio.run(run())
