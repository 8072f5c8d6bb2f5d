"""A process's reading of a server's clock (shared.clock), in process."""

from __future__ import annotations

import time

from shared.clock import ServerClock, seconds


def test_times_reply_is_read_as_seconds() -> None:
    assert seconds(["1796602208", "123456"]) == 1796602208.123456
    assert seconds([1796602208, 5]) == 1796602208.000005


def test_before_any_reading_the_clock_is_this_processs() -> None:
    clock = ServerClock()
    before = time.time()
    assert before <= clock.now() <= time.time()


def test_a_reading_is_taken_half_way_through_its_round_trip() -> None:
    clock = ServerClock()
    # The server 10 s behind, its reply 0.2 s on the way there and back.
    clock.observe(server=990.1, sent=1000.0, received=1000.2)
    assert abs(clock.offset - -10.0) < 1e-9
    local = time.time()
    assert abs(clock.now() - (local - 10.0)) < 0.1
    assert abs(clock.now_ms() - (local - 10.0) * 1000) < 100
    # Read again: the last reading counts (a clock set meanwhile is followed).
    clock.observe(server=1010.0, sent=1000.0, received=1000.0)
    assert clock.offset == 10.0
