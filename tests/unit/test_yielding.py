"""Deliveries yield to a busy worker: when attempts may start (worker.yielding)."""

from __future__ import annotations

import os

from worker.yielding import LOOK, PERIOD, Yielding, process_cpu


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        return False


def test_an_idle_worker_lets_attempts_start_at_once() -> None:
    clock, used = Clock(), [0.0]
    yielding = Yielding(lambda: used[0], clock)
    for _ in range(5):
        clock.now += LOOK * 1.5 + 0.003
        used[0] += 0.01  # a tenth of what busy means
        start = clock.now
        yielding.wait(clock.sleep)
        assert clock.now == start


def test_a_busy_worker_makes_attempts_wait_for_the_next_window() -> None:
    clock, used = Clock(), [0.0]
    yielding = Yielding(lambda: used[0], clock)
    clock.now += LOOK + PERIOD / 2 + 0.004  # mid-period, past the window
    used[0] += LOOK  # a whole core
    before = clock.now
    yielding.wait(clock.sleep)
    assert before < clock.now <= before + PERIOD
    assert round(clock.now / PERIOD, 6).is_integer()  # a window's start


def test_the_worker_turning_idle_ends_the_wait() -> None:
    clock, used = Clock(), [0.0]
    yielding = Yielding(lambda: used[0], clock)
    clock.now += LOOK + 0.05
    used[0] += LOOK
    assert yielding.busy()
    clock.now += LOOK  # nothing used since
    assert not yielding.busy()


def test_an_unreadable_worker_never_makes_anyone_wait() -> None:
    clock = Clock()
    yielding = Yielding(lambda: None, clock)
    clock.now += LOOK * 3 + 0.05
    start = clock.now
    yielding.wait(clock.sleep)
    assert clock.now == start


def test_process_cpu_reads_this_process_and_nothing_for_one_that_is_gone() -> None:
    mine = process_cpu(os.getpid())()
    assert mine is not None
    assert mine >= 0
    assert process_cpu(2**22 + 12345)() is None
