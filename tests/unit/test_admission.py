"""The overload refusal's pure parts, in process: what a body can hold, and the drain
rate a worker reports (api.admission, worker.heartbeat)."""

from __future__ import annotations

import json

from api.admission import most_numbers
from shared.events import MAX_NUMBERS
from shared.metrics import TASKS, Registry
from worker.heartbeat import DrainMeter


def test_a_bodys_length_bounds_its_numbers() -> None:
    one = json.dumps({"phoneNumberList": ["+1"]})  # shorter than any real number
    assert most_numbers(str(len(one))) >= 1
    fifty = json.dumps({"phoneNumberList": ["+12015550123"] * 50})
    assert most_numbers(str(len(fifty))) == MAX_NUMBERS
    # Niue's numbers are among the shortest valid ones anywhere.
    for shortest in (["+6834002"] * 10, ["+44 20 7946 0958"] * 10):
        body = json.dumps({"phoneNumberList": shortest}, separators=(",", ":"))
        assert most_numbers(str(len(body))) >= 10
    assert most_numbers(None) == MAX_NUMBERS  # no length declared (chunked)
    assert most_numbers("lots") == MAX_NUMBERS
    # Digits to str.isdigit, not to int(): a superscript, more digits than int() reads.
    assert most_numbers("²") == MAX_NUMBERS
    assert most_numbers("9" * 5000) == MAX_NUMBERS


def ran(registry: Registry, meter: DrainMeter, tasks: int) -> None:
    meter.task_started()
    registry.inc(TASKS, {"outcome": "success"}, tasks)
    meter.task_finished()


def test_a_worker_reports_no_rate_before_its_first_task() -> None:
    meter = DrainMeter(Registry())
    assert meter.rate(waiting=False) is None
    assert meter.rate(waiting=True) is None


def test_an_idle_worker_keeps_the_rate_it_showed_when_busy() -> None:
    registry = Registry()
    meter = DrainMeter(registry)
    ran(registry, meter, 50)
    busy = meter.rate(waiting=False)
    assert busy is not None
    assert busy > 0
    for _ in range(5):  # beats with nothing to do
        assert meter.rate(waiting=False) == busy


def test_expired_tasks_are_not_counted_as_run() -> None:
    registry = Registry()
    meter = DrainMeter(registry)
    registry.inc(TASKS, {"outcome": "expired"}, 1000)
    assert meter.rate(waiting=False) is None
