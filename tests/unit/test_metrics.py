"""shared.metrics, in process: counting, the flush's take and give-back, the text format."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from shared.metrics import (
    NUMBERS,
    QUEUED,
    REQUEST_SECONDS,
    REQUESTS,
    TASK_SECONDS,
    TASKS,
    WORKERS,
    Registry,
    render,
    sample,
)
from tests.prometheus import metric, samples

POST = {"method": "POST", "route": "/api/v1/leads/end-contact"}


def stored(registry: Registry) -> dict[str, str]:
    """The registry's counts as Redis gives them back (HINCRBYFLOAT sums, as text)."""
    return {field: repr(value) for field, value in registry.take().items()}


def test_sample_names_escape_label_values() -> None:
    assert sample("endcontact_workers", {}) == "endcontact_workers"
    assert sample("m", {"a": "1", "b": "x"}) == 'm{a="1",b="x"}'
    assert sample("m", {"a": 'say "hi"\\\n'}) == r'm{a="say \"hi\"\\\n"}'


def test_counts_add_up_until_taken() -> None:
    registry = Registry()
    registry.inc(NUMBERS, {"outcome": "success"}, 3)
    registry.inc(NUMBERS, {"outcome": "success"})
    registry.inc(NUMBERS, {"outcome": "failure", "reason": "error"}, 0)  # no field for 0
    assert registry.take() == {'endcontact_numbers_total{outcome="success"}': 4.0}
    assert registry.take() == {}


def test_what_is_given_back_adds_to_what_came_since() -> None:
    registry = Registry()
    registry.inc(TASKS, {"outcome": "success"}, 2)
    taken = registry.take()
    registry.inc(TASKS, {"outcome": "success"})
    registry.give_back(taken)
    assert registry.take() == {'endcontact_tasks_total{outcome="success"}': 3.0}


def test_counting_from_threads_loses_nothing() -> None:
    registry = Registry()

    def count() -> None:
        for _ in range(5000):
            registry.inc(TASKS, {"outcome": "success"})

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.take() == {'endcontact_tasks_total{outcome="success"}': 40000.0}


def test_observe_fills_cumulative_buckets_sum_and_count() -> None:
    registry = Registry()
    registry.observe(REQUEST_SECONDS, POST, 0.03)
    registry.observe(REQUEST_SECONDS, POST, 7.0)
    page = samples(render(stored(registry), {}))
    name = "endcontact_http_request_duration_seconds"
    buckets = {
        le: metric(page, f"{name}_bucket", **POST, le=le)
        for le in ("0.025", "0.05", "5.0", "10.0", "+Inf")
    }
    assert buckets == {"0.025": 0, "0.05": 1, "5.0": 1, "10.0": 2, "+Inf": 2}
    assert metric(page, f"{name}_sum", **POST) == pytest.approx(7.03)
    assert metric(page, f"{name}_count", **POST) == 2


def test_every_bucket_is_shown_from_the_first_observation() -> None:
    registry = Registry()
    registry.observe(TASK_SECONDS, {}, 100.0)  # above every bound
    fields = registry.take()
    bucket_fields = [f for f in fields if f.startswith("endcontact_task_duration_seconds_bucket")]
    assert len(bucket_fields) == len(TASK_SECONDS.buckets) + 1
    assert fields['endcontact_task_duration_seconds_bucket{le="+Inf"}'] == 1
    assert fields['endcontact_task_duration_seconds_bucket{le="2.5"}'] == 0


def test_a_batch_counts_its_successes_and_errors() -> None:
    registry = Registry()
    registry.count_tasks(succeeded=1, failed=1, seconds=0.01)
    fields = registry.take()
    assert fields['endcontact_tasks_total{outcome="success"}'] == 1
    assert fields['endcontact_tasks_total{outcome="error"}'] == 1
    assert fields["endcontact_task_duration_seconds_count"] == 2


def test_a_flush_that_writes_keeps_nothing() -> None:
    registry = Registry()
    registry.inc(TASKS, {"outcome": "success"})
    written: list[dict[str, float]] = []
    with registry.flushing() as counts:
        written.append(counts)
    assert written == [{'endcontact_tasks_total{outcome="success"}': 1.0}]
    with registry.flushing() as counts:
        assert counts == {}


REFUSED = "Error 111 connecting to 127.0.0.1:6379. Connection refused."


@pytest.mark.parametrize(
    ("error", "said"),
    [
        # Where: the line names the server that is down.
        (redis.ConnectionError(REFUSED), f"ConnectionError: {REFUSED}"),
        (TimeoutError(), "TimeoutError"),
        (ConnectionResetError(), "ConnectionResetError"),
        # Any other reply only by its kind: its text may quote what was sent.
        (redis.ResponseError("ERR with args beginning with: '+15095551234'"), "ResponseError"),
    ],
)
def test_a_failed_flush_gives_the_counts_back_and_logs_it(
    error: Exception, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    registry.inc(TASKS, {"outcome": "success"}, 2)
    with caplog.at_level(logging.WARNING), registry.flushing():
        registry.inc(TASKS, {"outcome": "success"})  # counted meanwhile
        raise error
    assert registry.take() == {'endcontact_tasks_total{outcome="success"}': 3.0}
    assert [r.getMessage() for r in caplog.records] == [f"metrics flush failed: {said}"]


def test_a_bug_in_a_flush_is_not_taken_for_a_redis_failure() -> None:
    registry = Registry()
    with pytest.raises(AttributeError), registry.flushing():
        raise AttributeError("add_metrics")


def test_render_before_anything_is_counted() -> None:
    text = render({}, {WORKERS: 0, QUEUED: 0})
    page = samples(text)  # Prometheus's own parser takes it
    assert metric(page, "endcontact_numbers_total", outcome="success") == 0
    assert metric(page, "endcontact_numbers_total", outcome="failure", reason="timeout") == 0
    assert metric(page, "endcontact_tasks_total", outcome="expired") == 0
    assert "\nendcontact_workers 0\n" in text
    assert text.endswith("\n")
    for name, kind in (
        ("endcontact_http_requests_total", "counter"),
        ("endcontact_workers", "gauge"),
    ):
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text


def test_render_leaves_out_gauges_not_given_and_fields_not_ours() -> None:
    text = render(
        {"somebody_elses_total": "5", 'endcontact_numbers_total{outcome="success"}': "2.0"}, {}
    )
    assert "somebody_elses_total" not in text
    assert "endcontact_workers" not in text
    assert "endcontact_queued_tasks" not in text
    assert '\nendcontact_numbers_total{outcome="success"} 2\n' in text


def test_render_writes_whole_numbers_without_a_point() -> None:
    registry = Registry()
    registry.inc(REQUESTS, {**POST, "status": "201"}, 9)
    registry.observe(TASK_SECONDS, {}, 0.25)
    lines = render(stored(registry), {QUEUED: 3}).splitlines()
    assert (
        f'endcontact_http_requests_total{{method="POST",route="{POST["route"]}",status="201"}} 9'
        in lines
    )
    assert "endcontact_task_duration_seconds_sum 0.25" in lines
    assert "endcontact_queued_tasks 3" in lines


def test_render_keeps_each_series_together_in_bound_order() -> None:
    registry = Registry()
    for route in ("/b", "/a"):
        registry.observe(REQUEST_SECONDS, {"method": "GET", "route": route}, 0.2)
    lines = [
        line
        for line in render(stored(registry), {}).splitlines()
        if line.startswith("endcontact_http_request_duration_seconds")
    ]
    per_series = len(REQUEST_SECONDS.buckets) + 3  # the buckets, +Inf, _sum, _count
    assert len(lines) == 2 * per_series
    for series, route in zip((lines[:per_series], lines[per_series:]), ("/a", "/b"), strict=True):
        assert all(f'route="{route}"' in line for line in series)
        bounds = [line.split('le="')[1].split('"')[0] for line in series[:-2]]
        assert bounds == [repr(float(b)) for b in REQUEST_SECONDS.buckets] + ["+Inf"]
        assert series[-2].startswith("endcontact_http_request_duration_seconds_sum{")
        assert series[-1].startswith("endcontact_http_request_duration_seconds_count{")
