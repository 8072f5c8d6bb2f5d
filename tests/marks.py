"""Changing marks through the API and reading them back (lookup, history, the feed):
the helpers of tests/test_lifecycle.py and tests/test_feed.py."""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared.events import Event, EventId
from tests.conftest import Caller
from tests.helpers import TLS, URL, assert_problem, lookup_path

RESUME = "/api/v1/leads/resume-contact"
FEED = f"{URL}/events"
EVENT_FIELDS = {"id", "type", "phoneNumber", "at", "keyId", "requestId"}


def e164(phones: list[str]) -> list[str]:
    """What `numbers()` gives, as the service writes it: (509) 555-0001 -> +15095550001."""
    return ["+1" + "".join(char for char in phone if char.isdigit()) for phone in phones]


def change(
    http: httpx.Client | str,
    caller: Caller,
    path: str,
    phones: list[Any],
    *,
    request_id: str | None = None,
    **extra: object,
) -> httpx.Response:
    """POST a change (end-contact at URL, resume-contact at RESUME), with `extra` fields."""
    headers = {**caller.headers, "content-type": "application/json"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    # Escaped to ASCII, as any JSON may be: so a test can send a lone surrogate.
    body = json.dumps({"phoneNumberList": phones, **extra}).encode()
    if isinstance(http, str):
        return httpx.post(f"{http}{path}", content=body, headers=headers, timeout=30, verify=TLS)
    return http.post(path, content=body, headers=headers)


def created(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 201, response.text
    body: dict[str, list[str]] = response.json()
    return body


def pointers(response: httpx.Response) -> list[str]:
    return [error.get("pointer") for error in assert_problem(response, 400)["errors"]]


def hist(http: httpx.Client, caller: Caller, phone: str) -> list[dict[str, Any]]:
    response = http.get(f"{lookup_path(phone)}/history", headers=caller.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["phoneNumber"] == (e164([phone])[0] if phone.startswith("(") else phone)
    events: list[dict[str, Any]] = body["events"]
    return events


def page(http: httpx.Client, caller: Caller, **query: str | int) -> dict[str, Any]:
    response = http.get(FEED, params=query, headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"events", "next"}
    return body


def whole_feed(
    http: httpx.Client, caller: Caller, after: str | None = None
) -> list[dict[str, Any]]:
    """Every event after `after` (None: from the oldest kept), following `next`."""
    events: list[dict[str, Any]] = []
    query: dict[str, str | int] = {"limit": 1000}
    if after is not None:
        query["after"] = after
    while True:
        body = page(http, caller, **query)
        events.extend(body["events"])
        if not body["events"]:
            return events
        query["after"] = body["next"]


def lookup(http: httpx.Client, caller: Caller, phone: str) -> httpx.Response:
    return http.get(lookup_path(phone), headers=caller.headers)


def as_event(body: dict[str, Any]) -> Event:
    kind = body["type"]
    return Event(
        EventId.parse(body["id"]),
        kind,
        body["phoneNumber"],
        body["keyId"],
        body["requestId"],
        body.get("reason"),
    )
