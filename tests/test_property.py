"""Whatever arrives, the answer is a 201, 400, 401, 413 or 429; never a 5xx, and a
400 never writes anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.store import Store, ended_key
from tests.conftest import Caller, new_caller

URL = "/api/v1/leads/end-contact"
ALLOWED = {201, 400, 401, 413, 429}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)
phone_like = st.one_of(
    st.integers(0, 9999).map(lambda n: f"(509) 555-{n:04d}"),
    st.integers(0, 9999).map(lambda n: f"+1 212 555 {n:04d}"),
    st.sampled_from(["(555) 555-1234", "555-1234", "+44 20 7946 0958", "1 509 555 1234 x12"]),
    st.text(max_size=30),
)
entries = st.lists(st.one_of(phone_like, json_values), max_size=60)
documents = st.one_of(
    st.fixed_dictionaries({"phoneNumberList": entries}),
    st.fixed_dictionaries({"phoneNumberList": entries}, optional={"x": json_values}),
    json_values,
)
bodies = st.one_of(
    documents.map(lambda doc: json.dumps(doc).encode()),
    st.binary(max_size=3000),
)
# What a client library will send at all: printable ASCII, no surrounding blanks.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
    str.strip
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/json; charset=latin-1",
            "text/plain",
            "multipart/form-data",
        ]
    ),
    header_text,
    st.none(),
)


@pytest.fixture(scope="module")
def target(web: str, store: Store, redis_url: str) -> Iterator[tuple[httpx.Client, Caller, Any]]:
    caller = new_caller(store)
    raw = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=web, timeout=30) as http:
        yield http, caller, raw


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    content_type=content_types,
    key=st.one_of(st.sampled_from(["valid", "missing"]), header_text),
)
def test_any_request_gets_a_client_answer(
    target: tuple[httpx.Client, Caller, Any], body: bytes, content_type: str | None, key: str
) -> None:
    http, caller, raw = target
    headers = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if key == "valid":
        headers["x-api-key"] = caller.secret
    elif key != "missing":
        headers["x-api-key"] = key
    marks = ended_key(caller.key.scope)
    before = raw.hlen(marks)
    response = http.post(URL, content=body, headers=headers)
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code != 201:
        assert response.headers["content-type"] == "application/problem+json"
        assert raw.hlen(marks) == before
    else:
        answer = response.json()
        assert set(answer) == {"success", "failure"}
