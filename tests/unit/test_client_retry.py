"""The client's pure parts: chunking, backoff bounds, Retry-After, when to give up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from api.body import CHECK_MAX_NUMBERS
from endcontact_client.retry import (
    CHANGE_CHUNK,
    CHECK_CHUNK,
    Backoff,
    Chunk,
    chunks,
    parse_retry_after,
    wait_before_retry,
)
from shared.events import MAX_NUMBERS


def test_the_chunks_are_the_services_limits() -> None:
    assert (CHANGE_CHUNK, CHECK_CHUNK) == (MAX_NUMBERS, CHECK_MAX_NUMBERS)


def test_chunks_keep_order_and_offsets() -> None:
    numbers = [str(n) for n in range(120)]
    parts = chunks(numbers, 50)
    assert [len(p.numbers) for p in parts] == [50, 50, 20]
    assert [p.offset for p in parts] == [0, 50, 100]
    assert [n for p in parts for n in p.numbers] == numbers


@pytest.mark.parametrize(("count", "sizes"), [(1, [1]), (50, [50]), (51, [50, 1]), (100, [50, 50])])
def test_chunks_at_the_edges(count: int, sizes: list[int]) -> None:
    assert [len(p.numbers) for p in chunks(["x"] * count, 50)] == sizes


def test_check_chunks_of_a_thousand() -> None:
    assert [len(p.numbers) for p in chunks(["x"] * 2500, 1000)] == [1000, 1000, 500]


def test_an_empty_list_is_one_empty_chunk_for_the_service_to_judge() -> None:
    assert chunks([], 50) == [Chunk(0, [])]


def test_backoff_stays_within_its_exponential_ceiling() -> None:
    backoff = Backoff(base=0.5, cap=8.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.ceiling(10_000) == 8.0  # no overflow however many attempts
    rng = random.Random(7)  # noqa: S311 (seeded, for a repeatable test)
    for attempt in range(8):
        delays = [backoff.delay(attempt, rng) for _ in range(500)]
        assert all(0.0 <= d <= backoff.ceiling(attempt) for d in delays)
        # Full jitter: spread over the whole range, not bunched at its top.
        assert min(delays) < backoff.ceiling(attempt) * 0.1
        assert max(delays) > backoff.ceiling(attempt) * 0.9


@pytest.mark.parametrize(("header", "seconds"), [("0", 0.0), ("7", 7.0), (" 120 ", 120.0)])
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 29, 21, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after(later, now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("Sun, 29 Nov 2026 21:00:30 -0000", now) == 30.0


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5", "²", "Sun, 99 Nov 2026"])
def test_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header) is None


def test_retry_after_is_honoured_and_bounded_by_the_deadline() -> None:
    backoff = Backoff(base=1.0, cap=1.0)
    rngs = [random.Random(seed) for seed in range(20)]  # noqa: S311 (jitter)
    waits = {wait_before_retry(3.0, 0, backoff, 10.0, rng) for rng in rngs}
    # At least Retry-After, at most half as long again, and not all the same: clients
    # refused together do not come back together.
    assert all(wait is not None and 3.0 <= wait <= 4.5 for wait in waits)
    assert len(waits) == 20
    # Never past the deadline: where the spread would end there, Retry-After exactly.
    near = [wait_before_retry(3.0, 0, backoff, 3.1, rng) for rng in rngs]
    assert all(wait is not None and 3.0 <= wait < 3.1 for wait in near)
    assert 3.0 in near
    assert wait_before_retry(0.0, 0, backoff, remaining=10.0) == 0.0
    # A wait that ends past the deadline is no use: give up now.
    assert wait_before_retry(12.0, 0, backoff, remaining=10.0) is None
    assert wait_before_retry(None, 0, backoff, remaining=0.0) is None
    delay = wait_before_retry(None, 0, backoff, remaining=10.0)
    assert delay is not None
    assert 0.0 <= delay <= 1.0
