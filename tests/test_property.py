"""Whatever arrives, the answer is a 201, 400, 401, 413 or 429; never a 5xx, and a
400 never writes anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.keyspace import ended_key
from shared.phones import to_e164
from shared.store import Store
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, assert_problem

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
# What a 201 answers: 1 to 50 valid numbers, distinct, each written one of several ways.
WRITINGS = [
    "({area}) 555-{n:04d}",
    "+1 {area} 555 {n:04d}",
    "{area}.555.{n:04d}",
    "1{area}555{n:04d}",
]
accepted_lists = st.lists(
    st.tuples(st.sampled_from(["509", "212"]), st.integers(0, 9999), st.sampled_from(WRITINGS)),
    min_size=1,
    max_size=50,
    unique_by=lambda item: item[:2],
).map(lambda items: [writing.format(area=area, n=n) for area, n, writing in items])
documents = st.one_of(
    st.fixed_dictionaries({"phoneNumberList": accepted_lists}, optional={"x": json_values}),
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


@dataclass
class Target:
    http: httpx.Client
    caller: Caller
    redis: redis.Redis
    # Every number of every request answered 201 so far: all that may be stored.
    accepted: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def target(web: str, store: Store, redis_url: str) -> Iterator[Target]:
    with httpx.Client(base_url=web, timeout=30, verify=TLS) as http:
        yield Target(
            http, new_caller(store), redis.Redis.from_url(redis_url, decode_responses=True)
        )


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
    target: Target, body: bytes, content_type: str | None, key: str
) -> None:
    headers = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if key == "valid":
        headers["x-api-key"] = target.caller.secret
    elif key != "missing":
        headers["x-api-key"] = key
    marks = ended_key(target.caller.key.scope)
    before = target.redis.hlen(marks)
    response = target.http.post(URL, content=body, headers=headers)
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code != 201:
        assert_problem(response, response.status_code)
        assert target.redis.hlen(marks) == before
        return
    check_accepted(target, json.loads(body)["phoneNumberList"], response)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(phones=accepted_lists)
def test_an_accepted_request_answers_for_every_number(target: Target, phones: list[str]) -> None:
    response = target.http.post(
        URL, json={"phoneNumberList": phones}, headers=target.caller.headers
    )
    assert response.status_code == 201, response.text
    check_accepted(target, phones, response)


def check_accepted(target: Target, sent: list[str], response: httpx.Response) -> None:
    answer = response.json()
    assert set(answer) == {"success", "failure"}
    success, failure = answer["success"], answer["failure"]
    # The session's web reads national numbers as US ones.
    phones = [to_e164(text, "US") for text in sent]
    # Every number in exactly one of the lists, in E.164, each list in request order.
    assert sorted(success + failure) == sorted(phones)
    assert not set(success) & set(failure)
    assert success == [phone for phone in phones if phone in success]
    assert failure == [phone for phone in phones if phone in failure]
    # Stored: every success, and nothing that no accepted request carried (a refused
    # request's task would show up here, if not at once then by a later 201).
    target.accepted.update(phones)
    stored = set(target.redis.hkeys(ended_key(target.caller.key.scope)))
    assert set(success) <= stored
    assert stored <= target.accepted
