"""/metrics: every process's counts, summed in Redis, the same from any web process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from shared.embedded import free_port
from shared.keyspace import ended_key
from shared.store import Store
from shared.tasks import QUEUE
from tests.conftest import new_caller
from tests.helpers import TLS, URL, numbers, post_numbers, wait_until
from tests.processes import Stack, http_ready, spawn, stop, wait_for
from tests.prometheus import Page, metric, samples

pytestmark = pytest.mark.timeout(120)


def until_equal(base: str, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Page:
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def page_as_expected() -> Page | None:
        page = samples(httpx.get(f"{base}/metrics", verify=TLS).text)
        seen.update({key: metric(page, key[0], **dict(key[1])) for key in expected})
        return page if seen == expected else None

    return wait_until(page_as_expected, 15, f"{base}/metrics as expected", logs=lambda: str(seen))


def test_metrics_count_every_process_and_outcome(stack: Stack, tmp_path: Path) -> None:
    # A second web, itself two uvicorn processes; requests are split between the webs.
    log = tmp_path / "web2.log"
    port = free_port()
    web2 = spawn(["web", f"--port={port}", "--workers=2"], stack.env, log)
    other = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ready(other), web2, log)
        _exercise(stack, other)
    finally:
        stop(web2)


def _exercise(stack: Stack, other: str) -> None:
    store = Store(redis.Redis.from_url(stack.url, decode_responses=True))
    caller = new_caller(store)
    broken = new_caller(store)
    webs = [stack.base, other]

    # To a base URL: a new connection each time, so a multi-process web spreads them.
    for i in range(6):  # 6 requests of 2 numbers, 3 to each web
        assert post_numbers(webs[i % 2], caller.headers, numbers(100 + 2 * i, 2)).status_code == 201
    # Already ended: a success all the same.
    assert post_numbers(other, caller.headers, numbers(0, 1)).status_code == 201
    assert post_numbers(other, {"x-api-key": "nope"}, numbers(0, 1)).status_code == 401
    assert post_numbers(other, caller.headers, ["12"]).status_code == 400
    assert (
        httpx.get(f"{stack.base}{URL}/+15095550100", headers=caller.headers, verify=TLS).status_code
        == 200
    )

    # Errors: a string where the worker expects the campaign's hash (WRONGTYPE).
    raw = redis.Redis.from_url(stack.url)
    raw.set(ended_key(broken.key.scope), "not a hash")
    answer = post_numbers(stack.base, broken.headers, numbers(0, 2)).json()
    assert len(answer["failure"]) == 2

    # Timeouts: no worker; a worker started later discards the expired tasks.
    assert stack.worker is not None
    stop(stack.worker)
    answer = post_numbers(other, caller.headers, numbers(500, 3)).json()
    assert len(answer["failure"]) == 3
    stack.start_worker()
    queue = redis.Redis.from_url(stack.broker_url)
    wait_until(lambda: queue.llen(QUEUE) == 0, 15, "the expired tasks discarded")

    route = (("method", "POST"), ("route", URL))
    expected = {
        ("endcontact_http_requests_total", (*route, ("status", "201"))): 9.0,
        ("endcontact_http_requests_total", (*route, ("status", "401"))): 1.0,
        ("endcontact_http_requests_total", (*route, ("status", "400"))): 1.0,
        (
            "endcontact_http_requests_total",
            (("method", "GET"), ("route", URL + "/{phoneNumber}"), ("status", "200")),
        ): 1.0,
        ("endcontact_http_request_duration_seconds_count", route): 11.0,
        ("endcontact_http_request_duration_seconds_bucket", (*route, ("le", "+Inf"))): 11.0,
        ("endcontact_numbers_total", (("outcome", "success"),)): 13.0,
        ("endcontact_numbers_total", (("outcome", "failure"), ("reason", "error"))): 2.0,
        ("endcontact_numbers_total", (("outcome", "failure"), ("reason", "timeout"))): 3.0,
        ("endcontact_tasks_total", (("outcome", "success"),)): 13.0,
        ("endcontact_tasks_total", (("outcome", "error"),)): 2.0,
        ("endcontact_tasks_total", (("outcome", "expired"),)): 3.0,
        ("endcontact_task_duration_seconds_count", ()): 15.0,
        ("endcontact_queued_tasks", ()): 0.0,
        ("endcontact_workers", ()): 1.0,
    }
    for base in webs:
        page = until_equal(base, expected)
        buckets = [
            value
            for (name, labels), value in page.items()
            if name == "endcontact_task_duration_seconds_bucket"
        ]
        assert len(buckets) == 13  # every bucket shown, cumulative up to the count
        assert buckets == sorted(buckets)
        assert max(buckets) == 15.0
    store.close()
