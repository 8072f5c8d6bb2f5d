"""Logs never carry an API key or a full phone number."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis

from shared.keyspace import ended_key
from shared.store import Store
from tests.conftest import new_caller
from tests.helpers import TLS, URL
from tests.processes import Stack, spawn


def test_logs_of_a_full_run_hold_no_key_and_no_number(tmp_path: Path) -> None:
    stack = Stack(tmp_path, timeout=2.0).start()
    try:
        store = Store(redis.Redis.from_url(stack.url, decode_responses=True))
        caller, broken = new_caller(store), new_caller(store)
        headers = caller.headers
        good = ["(509) 555-1234", "+1 212 555 0199"]
        with httpx.Client(base_url=stack.base, timeout=30, verify=TLS) as http:
            assert (
                http.post(URL, json={"phoneNumberList": good}, headers=headers).status_code == 201
            )
            assert http.get(f"{URL}/+15095551234", headers=headers).status_code == 200
            assert http.get(f"{URL}/+12065550100", headers=headers).status_code == 404
            bad = {"phoneNumberList": ["(509) 555-1234", "(555) 555-1234", "+1 509 555 1234"]}
            assert http.post(URL, json=bad, headers=headers).status_code == 400
            wrong = {"x-api-key": caller.secret[:-2] + "zz"}
            assert http.post(URL, json={"phoneNumberList": good}, headers=wrong).status_code == 401
            # A task that raises: its error is logged by the worker.
            redis.Redis.from_url(stack.url).set(ended_key(broken.key.scope), "not a hash")
            failed = http.post(URL, json={"phoneNumberList": good}, headers=broken.headers)
            assert failed.json()["failure"] == ["+15095551234", "+12125550199"]
        spawn(["keys", "list"], stack.env, tmp_path / "cli.log").wait(30)
        store.revoke_key(caller.key.id)
    finally:
        stack.stop()

    logs = stack.logs()
    assert "refused by the store" in logs  # the failure was logged: the search means something
    assert caller.key.id in (tmp_path / "cli.log").read_text()
    for secret in (caller.secret, broken.secret, caller.secret[:-2] + "zz"):
        assert secret not in logs
        assert secret[3:20] not in logs
    for digits in ("5095551234", "2125550199", "2065550100", "5555551234"):
        assert digits not in logs, digits
        assert digits[-7:] not in logs, digits


def test_request_id_is_echoed_or_made_and_logged_as_json(tmp_path: Path) -> None:
    import json

    stack = Stack(tmp_path, timeout=2.0).start()
    try:
        caller = new_caller(Store(redis.Redis.from_url(stack.url, decode_responses=True)))
        body = {"phoneNumberList": ["(509) 555-1234"]}
        given = httpx.post(
            f"{stack.base}{URL}",
            json=body,
            headers={**caller.headers, "x-request-id": "abc-123"},
            verify=TLS,
        )
        made = httpx.get(f"{stack.base}{URL}/+15095551234", headers=caller.headers, verify=TLS)
        odd = httpx.get(f"{stack.base}/healthz", headers={"x-request-id": "a" * 500}, verify=TLS)
    finally:
        stack.stop()
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert odd.headers["x-request-id"] != "a" * 500

    lines = [
        json.loads(line)
        for line in (tmp_path / "web.log").read_text().splitlines()
        if line.startswith("{")
    ]
    ended = next(line for line in lines if line["message"] == "end-contact")
    assert ended["request_id"] == "abc-123"
    assert ended["key_id"] == caller.key.id
    assert (ended["numbers"], ended["success"], ended["failure"]) == (1, 1, 0)
    assert {"time", "level", "company", "campaign", "duration_ms"} <= ended.keys()
    access = [line for line in lines if line["message"] == "request"]
    lookup = next(line for line in access if line["request_id"] == made.headers["x-request-id"])
    assert lookup["route"] == "/api/v1/leads/end-contact/{phoneNumber}"
    assert lookup["status"] == 200
