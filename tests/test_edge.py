"""The edge of the web: what any request gets back, whatever it is: no redirect to
another host, a request id and one log line even for a 500, the RateLimit headers on
every keyed answer, and small errors whatever the input."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio
from starlette.applications import Starlette

from api.app import create_app
from api.results import ResultListener
from shared import metrics
from shared.apikeys import digest
from shared.embedded import free_port, start_server, stop_server
from shared.keyspace import key_record
from shared.settings import Settings
from shared.store import Store
from tests.conftest import Caller, new_caller
from tests.helpers import assert_problem, wait_until

URL = "/api/v1/leads/end-contact"
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def test_slash_paths_are_404_problems_never_redirects(client: httpx.Client, caller: Caller) -> None:
    evil = {"host": "evil.example", **caller.headers}
    body = {"phoneNumberList": ["(509) 555-1234"]}
    for response in (
        client.post(f"{URL}/", json=body, headers=evil),
        client.post(f"{URL}/%2F", json=body, headers=evil),
        client.get("/healthz/", headers=evil),
        client.get(f"{URL}/+15095551234/", headers=evil),
    ):
        assert_problem(response, 404)
        assert "location" not in response.headers


def test_a_wrong_method_is_a_405_problem_with_allow(client: httpx.Client, caller: Caller) -> None:
    response = client.delete(URL, headers=caller.headers)
    assert_problem(response, 405)
    # GET is the listing (test_reads.py): the 405 allows both methods of the path.
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    response = client.post("/healthz")
    assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def _log_lines(log: Path, offset: int) -> list[dict[str, object]]:
    with open(log, "rb") as text:
        text.seek(offset)
        return [json.loads(line) for line in text.read().splitlines() if line.startswith(b"{")]


def test_an_unhandled_error_is_a_500_problem_with_its_request_id_logged_once(
    web_client: httpx.Client, store: Store, redis_url: str, logs: Path
) -> None:
    # A key record without its company: a server-side fault the code does not expect.
    corrupt = new_caller(store)
    with redis.Redis.from_url(redis_url) as raw:
        raw.hdel(key_record(digest(corrupt.secret)), "company")
    log = logs / "web.log"
    offset = log.stat().st_size
    rid = f"edge-{uuid.uuid4().hex}"

    response = web_client.get(
        f"{URL}/+15095551234", headers={**corrupt.headers, "x-request-id": rid}
    )
    body = assert_problem(response, 500)
    assert body["detail"] == "Something went wrong on our side; retry shortly."
    assert response.headers["x-request-id"] == rid

    # Whatever the server logs for the error is logged before it answers the next
    # request; that request's own line marks how far to read.
    marker = f"edge-{uuid.uuid4().hex}"
    assert web_client.get("/healthz", headers={"x-request-id": marker}).status_code == 200
    wait_until(
        lambda: any(line.get("request_id") == marker for line in _log_lines(log, offset)),
        10,
        f"a line for {marker} in {log}",
    )
    text = log.read_bytes()[offset:].decode()
    errors = [line for line in _log_lines(log, offset) if line["level"] in ("ERROR", "CRITICAL")]
    assert len(errors) == 1, errors
    assert errors[0]["request_id"] == rid
    assert errors[0]["message"] == "unhandled KeyError"
    assert "'company'" not in text  # the exception's message (it can carry data)
    assert "Traceback" not in text


def test_every_answer_to_a_keyed_request_carries_the_rate_limit(
    web_client: httpx.Client, caller: Caller
) -> None:
    as_json = {**caller.headers, "content-type": "application/json"}
    answers = [
        web_client.post(URL, json={"phoneNumberList": ["(555) 555-1234"]}, headers=caller.headers),
        web_client.post(URL, content=b"{", headers=as_json),
        web_client.post(URL, content=b"x" * 70_000, headers=as_json),
        web_client.get(f"{URL}/not-a-number", headers=caller.headers),
        web_client.get(f"{URL}/+12125550199", headers=caller.headers),
        web_client.post(URL, json={"phoneNumberList": ["(509) 555-1234"]}, headers=caller.headers),
    ]
    assert [answer.status_code for answer in answers] == [400, 400, 413, 400, 404, 201]
    remaining = [int(answer.headers["ratelimit-remaining"]) for answer in answers]
    assert remaining == sorted(remaining, reverse=True)
    for answer in answers:
        for name in RATE_HEADERS:
            assert answer.headers.get_list(name) == [answer.headers[name]], name


def test_a_5000_character_lookup_is_a_small_400(client: httpx.Client, caller: Caller) -> None:
    response = client.get(f"{URL}/{'7' * 5000}", headers=caller.headers)
    body = assert_problem(response, 400)
    assert len(response.content) <= 2048
    assert body["errors"] == [
        {
            "parameter": "phoneNumber",
            "value": "7" * 64 + "…",
            "reason": "longer than 250 characters",
        }
    ]


def test_a_body_of_50_long_bad_entries_is_a_400_under_2_kb(
    client: httpx.Client, caller: Caller
) -> None:
    entries = [f"{index:02d}" + "é" * 198 for index in range(50)]
    response = client.post(URL, json={"phoneNumberList": entries}, headers=caller.headers)
    body = assert_problem(response, 400)
    assert len(response.content) <= 2048
    errors = body["errors"]
    assert isinstance(errors, list)
    assert body["errorsOmitted"] == 50 - len(errors) > 0
    assert errors[0] == {
        "pointer": "/phoneNumberList/0",
        "value": "00" + "é" * 62 + "…",
        "reason": "not a phone number",
    }


def test_a_number_too_long_for_python_is_a_400(client: httpx.Client, caller: Caller) -> None:
    raw = b'{"phoneNumberList": [' + b"9" * 5000 + b"]}"
    response = client.post(
        URL, content=raw, headers={**caller.headers, "content-type": "application/json"}
    )
    assert_problem(response, 400)


def test_a_lifespan_that_fails_closes_everything_it_opened(tmp_path: Path) -> None:
    """A shutdown whose steps meet trouble (the metrics' last flush refused by a full
    store) still closes everything: no task is left and every connection to Redis is
    closed. On the way, a result the listener cannot even decode does not stop it: it
    starts again on a new connection (issue 19; it used to die of it, here)."""
    port = free_port()
    server = start_server(tmp_path / "valkey", port)
    url = f"redis://127.0.0.1:{port}/0"

    async def a_troubled_shutdown(app: Starlette) -> None:
        async with app.router.lifespan_context(app):
            listener = app.state.services.results
            await asyncio.wait_for(listener.ready(), 10)
            with redis.Redis.from_url(url) as raw:
                # Not UTF-8, on a channel this web process listens to.
                raw.publish(f"celery-task-meta-{listener.id}-0", b"\xff")
                async with asyncio.timeout(10):
                    while not listener._lost:
                        await asyncio.sleep(0.01)
                    await listener.ready()
                assert listener.listening
                # Something to flush at shutdown, which the store then refuses.
                app.state.services.metrics.inc(metrics.REQUESTS, {"status": "200"})
                raw.config_set("maxmemory", "1")

    async def run() -> set[asyncio.Task[object]]:
        await a_troubled_shutdown(create_app(Settings.from_env({"REDIS_URL": url})))
        return asyncio.all_tasks() - {asyncio.current_task()}

    try:
        assert asyncio.run(run()) == set()
        with redis.Redis.from_url(url) as raw:
            raw.config_set("maxmemory", "0")
            assert raw.info("clients")["connected_clients"] == 1  # this one
    finally:
        stop_server(server)


def test_a_result_listener_stopped_at_any_step_of_its_start_ends(broker_url: str) -> None:
    """A SIGTERM just after start-up stops the result listener in the middle of its first
    subscription. Stopped after each step of the event loop from its start (connecting,
    the handshake, PSUBSCRIBE, the first read), it ends and leaves no task behind. On
    Python 3.11 redis-py loses a cancellation that comes as one of its commands is sent
    (asyncio.wait_for, around every send): the listener went back to reading, and the
    web's shutdown never finished (issue 20)."""

    async def stopped_after(steps: int) -> set[asyncio.Task[object]]:
        # redis-py's defaults, as the web's client has them (a socket timeout).
        client = redis.asyncio.Redis.from_url(broker_url, decode_responses=True)
        try:
            listener = ResultListener(client)
            await listener.start()
            for _ in range(steps):
                await asyncio.sleep(0)
            # A hang check: stop() used to swallow the cancellation of this deadline too.
            async with asyncio.timeout(5) as deadline:
                await listener.stop()
            if deadline.expired():
                pytest.fail(f"stopped after {steps} steps, the listener ran on for 5 s")
        finally:
            await client.aclose()
        return asyncio.all_tasks() - {asyncio.current_task()}

    for steps in range(40):
        assert asyncio.run(stopped_after(steps)) == set(), steps


def test_a_lone_surrogate_is_a_400_and_never_reaches_the_feed(
    client: httpx.Client, caller: Caller
) -> None:
    # JSON can write half of a UTF-16 pair ("\ud800"), which has no UTF-8: echoed in
    # an error, or stored as a reason and read back by the feed, it once made 500s.
    headers = {**caller.headers, "content-type": "application/json"}
    for raw in (
        rb'{"phoneNumberList": ["+1 509 555 0101"], "reason": "stop \ud800"}',
        rb'{"phoneNumberList": ["+1 509 555 0101"], "reason": "stop \udfff\ud800"}',
    ):
        for path in (URL, "/api/v1/leads/resume-contact"):
            body = assert_problem(client.post(path, content=raw, headers=headers), 400)
            assert body["errors"] == [
                {
                    "pointer": "/reason",
                    "value": json.loads(raw)["reason"],
                    "reason": "must be text: a lone surrogate (such as \\ud800) is no character",
                }
            ]
    for path in (URL, f"{URL}/check"):
        raw = rb'{"phoneNumberList": ["\ud800"]}'
        body = assert_problem(client.post(path, content=raw, headers=headers), 400)
        assert body["errors"] == [
            {"pointer": "/phoneNumberList/0", "value": "\ud800", "reason": "not a phone number"}
        ]
    feed = client.get(f"{URL}/events", headers=caller.headers)
    assert feed.status_code == 200, feed.text
    assert feed.json()["events"] == []
