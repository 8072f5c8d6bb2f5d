"""POST /api/v1/leads/end-contact and its lookup, against real Redis servers: through a web
process and a worker where numbers are ended, else with the web app in this process."""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.keyspace import ended_key
from shared.store import Store, utc_now
from shared.tasks import QUEUE
from tests.conftest import Caller, new_caller, serving
from tests.helpers import URL, assert_problem, lookup_path, numbers, post_numbers, wait_until
from tests.processes import spawn, stop, wait_for, worker_ready


def lookup(client: httpx.Client, caller: Caller, number: str) -> httpx.Response:
    return client.get(lookup_path(number), headers=caller.headers)


def clock_passes(ended_at: str) -> None:
    """Until the clock that stamps marks reads later than `ended_at`, so that a mark
    written from now on has a time of its own."""
    wait_until(lambda: utc_now() > ended_at, 5, f"the clock to pass {ended_at}")


@dataclass(frozen=True)
class Workerless:
    """The web app on a database no worker serves: every task a request publishes stays
    on the queue, so the queue's length tells at once what a request set in motion."""

    web: httpx.Client
    store: Store
    redis: redis.Redis


@pytest.fixture(scope="module")
def workerless(redis_server: str) -> Iterator[Workerless]:
    # Database 1: no worker listens there; keys are created and looked up there too.
    url = f"{redis_server}/1"
    with (
        serving({"REDIS_URL": url, "ENDCONTACT_RESULT_TIMEOUT": "1"}) as web,
        redis.Redis.from_url(url, decode_responses=True) as client,
    ):
        yield Workerless(web, Store(client), client)


# --- 201 -------------------------------------------------------------------------


def test_ends_contact_in_e164_in_request_order(web_client: httpx.Client, caller: Caller) -> None:
    numbers = ["(509) 555-1234", "+1 201-555-0123", "212.555.0199", "+44 20 7946 0958"]
    response = post_numbers(web_client, caller.headers, numbers)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "success": ["+15095551234", "+12015550123", "+12125550199", "+442079460958"],
        "failure": [],
    }
    for number in response.json()["success"]:
        found = lookup(web_client, caller, number)
        assert found.status_code == 200
        assert found.json()["phoneNumber"] == number


def test_fifty_numbers_all_succeed(web_client: httpx.Client, caller: Caller) -> None:
    numbers = [f"(509) 555-{n:04d}" for n in range(1000, 1050)]
    response = post_numbers(web_client, caller.headers, numbers)
    assert response.status_code == 201
    assert response.json()["success"] == [f"+1509555{n:04d}" for n in range(1000, 1050)]
    assert response.json()["failure"] == []


def test_a_requests_numbers_are_ended_in_one_batch(
    web_client: httpx.Client, caller: Caller, store: Store
) -> None:
    # The session's worker has two processes, idle: the first to wake pops all 50 of a
    # request's messages in one reply (worker.celery_seam.transport), so they are marked
    # by one write at one time. Popped one a wake (kombu's BRPOP), each process took a
    # part: two writes, two times (each request here, 3 of 3 before the change).
    for first in (2000, 2100, 2200):
        response = post_numbers(web_client, caller.headers, numbers(first))
        assert response.status_code == 201
        assert response.json()["failure"] == []
        times = {store.ended_at(caller.key.scope, phone) for phone in response.json()["success"]}
        assert len(times) == 1, times
        clock_passes(times.pop() or "")


def test_ending_again_is_a_success_and_keeps_the_first_time(
    web_client: httpx.Client, caller: Caller
) -> None:
    ended = post_numbers(web_client, caller.headers, ["(509) 555-1234"])
    assert ended.json()["success"] == ["+15095551234"]
    first = lookup(web_client, caller, "+15095551234").json()["endedAt"]
    clock_passes(first)  # else an overwrite would look the same as a kept time
    again = post_numbers(web_client, caller.headers, ["+1 (509) 555 1234", "(509) 555-9876"])
    assert again.status_code == 201
    assert again.json() == {"success": ["+15095551234", "+15095559876"], "failure": []}
    assert lookup(web_client, caller, "+15095551234").json()["endedAt"] == first


def test_ended_at_is_iso_8601_utc(web_client: httpx.Client, caller: Caller) -> None:
    post_numbers(web_client, caller.headers, ["(509) 555-1234"])
    ended_at = lookup(web_client, caller, "(509) 555-1234").json()["endedAt"]
    assert ended_at.endswith("Z")
    parsed = time.strptime(ended_at, "%Y-%m-%dT%H:%M:%S.%fZ")
    # timegm reads the fields as UTC (mktime would read them as local time).
    assert abs(calendar.timegm(parsed) - time.time()) < 600


def test_other_fields_are_ignored_and_charset_is_accepted(
    web_client: httpx.Client, caller: Caller
) -> None:
    response = web_client.post(
        URL,
        content=json.dumps({"phoneNumberList": ["5095551234"], "note": 1}),
        headers={**caller.headers, "content-type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 201
    assert response.json()["success"] == ["+15095551234"]


# --- 401 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "not-a-key"},
        {"x-api-key": "ec_" + "A" * 43},
        {"x-api-key": "ec_" + "A" * 500},
    ],
    ids=["missing", "empty", "malformed", "unknown", "too-long"],
)
def test_bad_keys_get_401(client: httpx.Client, headers: dict[str, str]) -> None:
    problem = assert_problem(post_numbers(client, headers, ["(509) 555-1234"]), 401)
    assert problem["detail"] == "A valid x-api-key header is required."


def test_revoked_key_gets_401(web_client: httpx.Client, caller: Caller, store: Store) -> None:
    assert post_numbers(web_client, caller.headers, ["(509) 555-1234"]).status_code == 201
    store.revoke_key(caller.key.id)
    assert_problem(post_numbers(web_client, caller.headers, ["(509) 555-1234"]), 401)
    assert_problem(lookup(web_client, caller, "+15095551234"), 401)


def test_401_comes_before_400(client: httpx.Client) -> None:
    response = client.post(URL, content=b"{not json", headers={"x-api-key": "wrong"})
    assert_problem(response, 401)


def test_lookup_needs_a_key(client: httpx.Client) -> None:
    assert_problem(client.get(f"{URL}/+15095551234"), 401)


# --- 400 -------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes, str, str]] = [
    # id, raw body, content type, pointer of the first error
    ("not-json", b"{nope", "application/json", ""),
    ("invalid-utf8", b'{"phoneNumberList": ["\xff"]}', "application/json", ""),
    ("array-body", b'["(509) 555-1234"]', "application/json", ""),
    ("missing-field", b'{"phones": ["(509) 555-1234"]}', "application/json", "/phoneNumberList"),
    ("null", b'{"phoneNumberList": null}', "application/json", "/phoneNumberList"),
    ("string", b'{"phoneNumberList": "(509) 555-1234"}', "application/json", "/phoneNumberList"),
    ("empty", b'{"phoneNumberList": []}', "application/json", "/phoneNumberList"),
    (
        "fifty-one",
        json.dumps({"phoneNumberList": [f"509555{n:04d}" for n in range(51)]}).encode(),
        "application/json",
        "/phoneNumberList",
    ),
    (
        "not-a-string",
        b'{"phoneNumberList": [5095551234]}',
        "application/json",
        "/phoneNumberList/0",
    ),
    (
        "nested-deep",
        b'{"phoneNumberList": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "application/json",
        "",
    ),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "pointer"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_malformed_bodies_get_400(
    client: httpx.Client, caller: Caller, raw: bytes, content_type: str, pointer: str
) -> None:
    response = client.post(
        URL, content=raw, headers={**caller.headers, "content-type": content_type}
    )
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["pointer"] == pointer
    assert problem["errors"][0]["reason"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_wrong_content_type_gets_400(
    client: httpx.Client, caller: Caller, content_type: str | None
) -> None:
    headers = dict(caller.headers)
    if content_type:
        headers["content-type"] = content_type
    response = client.post(URL, content=b'{"phoneNumberList": ["5095551234"]}', headers=headers)
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["header"] == "content-type"


def test_every_bad_entry_is_reported_and_nothing_is_processed(workerless: Workerless) -> None:
    caller = new_caller(workerless.store)
    numbers: list[Any] = [
        "(509) 555-1234",  # fine
        "(555) 555-1234",  # possible but not valid: no such area code
        "+1 509-555-1234",  # the same number as entry 0
        "(509) 555-1234 ext. 7",
        42,
        "call me maybe",
        "(509) 555-9876",  # fine
    ]
    queued = workerless.redis.llen(QUEUE)
    response = post_numbers(workerless.web, caller.headers, numbers)
    problem = assert_problem(response, 400)
    by_pointer = {error["pointer"]: error for error in problem["errors"]}
    assert sorted(by_pointer) == [f"/phoneNumberList/{i}" for i in (1, 2, 3, 4, 5)]
    assert by_pointer["/phoneNumberList/1"]["value"] == "(555) 555-1234"
    assert "valid" in by_pointer["/phoneNumberList/1"]["reason"]
    assert "duplicate of /phoneNumberList/0" in by_pointer["/phoneNumberList/2"]["reason"]
    assert "extension" in by_pointer["/phoneNumberList/3"]["reason"]
    assert by_pointer["/phoneNumberList/4"]["reason"] == "must be a string"
    # Nothing was processed, not even the valid entries: no task was queued (a task
    # would be published before the answer, and no worker takes it off), none stored.
    assert workerless.redis.llen(QUEUE) == queued
    assert workerless.store.ended_at(caller.key.scope, "+15095551234") is None
    assert workerless.store.ended_at(caller.key.scope, "+15095559876") is None


def test_body_over_64_kib_gets_413(client: httpx.Client, caller: Caller) -> None:
    raw = json.dumps({"phoneNumberList": ["5095551234"], "pad": "x" * 70_000}).encode()
    response = client.post(
        URL, content=raw, headers={**caller.headers, "content-type": "application/json"}
    )
    assert_problem(response, 413)


# --- lookup and tenants ----------------------------------------------------------


def test_lookup_accepts_any_format_and_404s_when_not_ended(
    web_client: httpx.Client, caller: Caller
) -> None:
    post_numbers(web_client, caller.headers, ["(509) 555-1234"])
    for form in ["(509) 555-1234", "+15095551234", "509.555.1234"]:
        found = lookup(web_client, caller, form)
        assert found.status_code == 200, form
        assert found.json()["phoneNumber"] == "+15095551234"
    problem = assert_problem(lookup(web_client, caller, "(509) 555-0000"), 404)
    assert problem["type"] == "/problems/not-ended"
    bad = assert_problem(lookup(web_client, caller, "(555) 555-1234"), 400)
    assert bad["errors"][0]["parameter"] == "phoneNumber"


def test_marks_are_invisible_to_other_campaigns_and_companies(
    web_client: httpx.Client, store: Store
) -> None:
    owner = new_caller(store)
    company = owner.key.scope.company
    same_company = new_caller(store, company=company)
    same_campaign_name = new_caller(store, campaign=owner.key.scope.campaign)
    assert post_numbers(web_client, owner.headers, ["(509) 555-1234"]).status_code == 201
    first = lookup(web_client, owner, "+15095551234").json()["endedAt"]
    for other in (same_company, same_campaign_name):
        assert lookup(web_client, other, "+15095551234").status_code == 404
    # Another campaign ending the same number gets its own mark; the owner's stays.
    clock_passes(first)
    assert post_numbers(web_client, same_company.headers, ["(509) 555-1234"]).status_code == 201
    theirs = lookup(web_client, same_company, "+15095551234").json()["endedAt"]
    assert lookup(web_client, owner, "+15095551234").json()["endedAt"] == first
    assert theirs > first  # written now: not the owner's mark seen through another scope


# --- failures --------------------------------------------------------------------


def test_a_task_that_raises_is_a_failure(
    web_client: httpx.Client, caller: Caller, store: Store, redis_url: str
) -> None:
    # Break the campaign's storage for real: a string where the worker expects a
    # hash makes every write of that campaign raise WRONGTYPE inside the task.
    raw = redis.Redis.from_url(redis_url)
    raw.set(ended_key(caller.key.scope), "not a hash")
    response = post_numbers(web_client, caller.headers, ["(509) 555-1234", "(509) 555-9876"])
    assert response.status_code == 201
    assert response.json() == {"success": [], "failure": ["+15095551234", "+15095559876"]}
    raw.delete(ended_key(caller.key.scope))
    # Nothing is stuck: the client's retry succeeds.
    retry = post_numbers(web_client, caller.headers, ["(509) 555-1234", "(509) 555-9876"])
    assert retry.json() == {"success": ["+15095551234", "+15095559876"], "failure": []}


def test_without_a_worker_every_number_fails_within_the_deadline(
    workerless: Workerless, redis_server: str, tmp_path: Path
) -> None:
    caller = new_caller(workerless.store)
    started = time.monotonic()
    response = post_numbers(workerless.web, caller.headers, ["(509) 555-1234", "(509) 555-9876"])
    elapsed = time.monotonic() - started
    assert response.status_code == 201
    assert response.json() == {"success": [], "failure": ["+15095551234", "+15095559876"]}
    # Not a speed check: a hang check. The deadline is 1 s; it must not be ignored.
    assert elapsed < 4, elapsed

    # A worker that comes later drains the stale tasks without running them: they
    # expired with their request, so the client's "failure" stays true.
    log = tmp_path / "worker.log"
    worker = spawn(["worker", "--concurrency=1"], {"REDIS_URL": f"{redis_server}/1"}, log)
    try:
        wait_for(lambda: worker_ready(log), worker, log)
        wait_for(lambda: log.read_text().count("Discarding revoked task") >= 2, worker, log)
        assert workerless.redis.llen(QUEUE) == 0
    finally:
        stop(worker)
    assert log.read_text().count("Discarding revoked task") == 2
    assert workerless.store.ended_at(caller.key.scope, "+15095551234") is None
    assert workerless.store.ended_at(caller.key.scope, "+15095559876") is None


# --- the edge --------------------------------------------------------------------


def test_unknown_routes_and_methods_are_problems(client: httpx.Client) -> None:
    assert_problem(client.get("/nope"), 404)
    assert_problem(client.delete(URL), 405)  # GET is the listing (test_reads.py)


def test_healthz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_sees_redis_and_a_live_worker(web_client: httpx.Client) -> None:
    ready = web_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["workers"] >= 2  # the session's two worker processes
    assert (ready.json()["redis"], ready.json()["broker"]) == ("ok", "ok")


def test_readyz_is_503_without_workers_or_redis(
    redis_server: str, broker_url: str, worker: None
) -> None:
    from shared.embedded import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    up: dict[str, object] = {"redis": "ok", "broker": "ok"}
    down: dict[str, object] = {"redis": "down", "broker": "down"}
    # /metrics needs both servers: it renders with no worker, and is a 503 without one.
    cases: list[tuple[dict[str, str], dict[str, object], int]] = [
        # One server for both (REDIS_URL alone), database 9: no worker beats there.
        ({"REDIS_URL": f"{redis_server}/9"}, {**up, "workers": 0}, 200),
        ({"REDIS_URL": nowhere}, down, 503),
        # Split: each server is checked on its own.
        (
            {"REDIS_URL": f"{redis_server}/9", "ENDCONTACT_BROKER_URL": nowhere},
            {"redis": "ok", "broker": "down"},
            503,
        ),
        # The session's workers beat into this broker, but the store is away.
        (
            {"REDIS_URL": nowhere, "ENDCONTACT_BROKER_URL": broker_url},
            {"redis": "down", "broker": "ok", "workers": 2},
            503,
        ),
    ]
    for env, readiness, metrics_status in cases:
        with serving(env) as web:
            ready = web.get("/readyz")
            alive = web.get("/healthz")
            metrics = web.get("/metrics")
        assert ready.status_code == 503, env
        assert ready.json() == {"status": "unavailable", **readiness}, env
        assert alive.status_code == 200
        assert metrics.status_code == metrics_status
        if metrics_status == 200:
            assert "\nendcontact_workers 0\n" in metrics.text
        else:
            assert_problem(metrics, metrics_status)
