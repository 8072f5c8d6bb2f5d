"""The webhook routes: shapes, secrets, scope, the SSRF refusals, the limit. Answered by
the web app in this process (Starlette's TestClient, the real lifespan) on the session's
valkey: these routes need no worker, and nothing here ends a number. The web process is
used where its log is read. (Deliveries themselves are tests/test_webhook_delivery.py's.)

One file over 400 lines: one resource's routes, most of it tables of refused URLs."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from shared.keyspace import feed_name
from shared.store import Store
from shared.webhooks import MAX_PER_CAMPAIGN, key_webhooks_key, log_key, webhook_key
from tests.conftest import Caller, new_caller, serving
from tests.helpers import TLS, assert_problem

HOOKS = "/api/v1/webhooks"
# A public address given as a literal: accepted without DNS. Nothing here ends a number
# for these campaigns, so nothing is ever sent to it.
PUBLIC_URL = "https://1.2.3.4/hooks/end-contact"
ID = re.compile(r"wh_[0-9a-f]{16}")


@pytest.fixture(scope="module")
def private_app(servers: dict[str, str]) -> Iterator[TestClient]:
    """The app allowing http:// and private addresses, on the session's servers."""
    with serving({**servers, "ENDCONTACT_WEBHOOK_ALLOW_PRIVATE": "true"}) as http:
        yield http


@contextlib.contextmanager
def as_caller(app: TestClient, caller: Caller) -> Iterator[httpx.Client]:
    """The in-process app with the caller's key on every request, until the block ends."""
    app.headers["x-api-key"] = caller.secret
    try:
        yield app
    finally:
        del app.headers["x-api-key"]


@pytest.fixture
def http(client: TestClient, caller: Caller) -> Iterator[httpx.Client]:
    with as_caller(client, caller) as app:
        yield app


@pytest.fixture(scope="module")
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def create(http: httpx.Client, url: str = PUBLIC_URL, **body: Any) -> dict[str, Any]:
    answer = http.post(HOOKS, json={"url": url, **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def post_json(http: httpx.Client, body: object) -> httpx.Response:
    """POST `body` as ASCII JSON: a lone surrogate goes as its escape, "\\ud800", as a
    client may send it (httpx's json= would fail to encode it)."""
    content = json.dumps(body).encode()
    return http.post(HOOKS, content=content, headers={"content-type": "application/json"})


def assert_secret(secret: str) -> None:
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 64


def listed(http: httpx.Client) -> list[dict[str, Any]]:
    answer = http.get(HOOKS)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"webhooks"}
    hooks: list[dict[str, Any]] = answer.json()["webhooks"]
    return hooks


def test_create_list_delete(http: httpx.Client, caller: Caller, raw: redis.Redis) -> None:
    answer = http.post(HOOKS, json={"url": PUBLIC_URL})
    assert answer.status_code == 201, answer.text
    assert "RateLimit-Remaining" in answer.headers  # admitted like every keyed route
    created = answer.json()
    assert set(created) == {"id", "url", "events", "createdBy", "secret", "createdAt"}
    assert ID.fullmatch(created["id"])
    assert created["createdBy"] == caller.key.id
    assert created["url"] == PUBLIC_URL
    assert created["events"] == ["ended", "resumed"]
    assert_secret(created["secret"])

    listing = http.get(HOOKS)
    assert created["secret"] not in listing.text
    assert "secret" not in listing.text
    assert listed(http) == [{k: v for k, v in created.items() if k != "secret"}]

    # Found by its key without a scan, as long as it exists.
    of_key = key_webhooks_key(feed_name(caller.key.scope), caller.key.id)
    assert raw.smembers(of_key) == {created["id"]}
    assert http.delete(f"{HOOKS}/{created['id']}").status_code == 204
    assert listed(http) == []
    assert raw.exists(of_key) == 0
    gone = assert_problem(http.delete(f"{HOOKS}/{created['id']}"), 404)
    assert gone["type"] == "/problems/webhook-not-found"
    assert http.get(f"{HOOKS}/{created['id']}/deliveries").status_code == 404
    assert http.post(f"{HOOKS}/{created['id']}/rotate-secret").status_code == 404


def test_secrets_are_new_each_time(http: httpx.Client) -> None:
    first, second = create(http), create(http)
    assert first["id"] != second["id"]
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["ended"], ["ended"]),
        (["resumed"], ["resumed"]),
        (["resumed", "ended"], ["ended", "resumed"]),
    ],
)
def test_events(http: httpx.Client, events: list[str], expected: list[str]) -> None:
    assert create(http, events=events)["events"] == expected
    assert [hook["events"] for hook in listed(http)] == [expected]


@pytest.mark.parametrize(
    ("events", "pointer"),
    [
        ([], "/events"),
        ("ended", "/events"),
        (None, "/events"),
        ({"ended": True}, "/events"),
        (["opened"], "/events/0"),
        (["ended", "ENDED"], "/events/1"),
        (["ended", 1], "/events/1"),
        (["ended", "ended"], "/events/1"),
        (["resumed", "ended", "resumed"], "/events/2"),
        (["\ud800"], "/events/0"),
        ([["\ud800"]], "/events/0"),
    ],
)
def test_events_refused(http: httpx.Client, events: object, pointer: str) -> None:
    problem = assert_problem(post_json(http, {"url": PUBLIC_URL, "events": events}), 400)
    assert problem["type"] == "/problems/invalid-request"
    assert [error["pointer"] for error in problem["errors"]] == [pointer]
    assert listed(http) == []


def test_every_fault_at_once_and_unknown_fields_ignored(http: httpx.Client, caller: Caller) -> None:
    answer = http.post(HOOKS, json={"url": "http://1.2.3.4/", "events": ["x"]})
    assert answer.status_code == 400
    assert [error["pointer"] for error in answer.json()["errors"]] == ["/url", "/events/0"]
    created = create(
        http, description="ignored", secret="whsec_AAAA", id="wh_mine", createdBy="key_mine"
    )
    assert set(created) == {"id", "url", "events", "createdBy", "secret", "createdAt"}
    assert created["id"] != "wh_mine"
    assert created["createdBy"] == caller.key.id
    assert created["secret"] != "whsec_AAAA"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "required"),
        ({"url": None}, "must be a string"),
        ({"url": 443}, "must be a string"),
        ({"url": ["https://1.2.3.4/"]}, "must be a string"),
        ({"url": "http://1.2.3.4/hook"}, "https://"),
        ({"url": "/hooks/end-contact"}, "https://"),
        ({"url": "1.2.3.4/hook"}, "https://"),
        ({"url": ""}, "https://"),
        ({"url": "https:///hook"}, "must have a host"),
        ({"url": "https://user:password@1.2.3.4/hook"}, "user info"),
        ({"url": "https://1.2.3.4/" + "a" * 2000}, "at most 2000"),
        ({"url": "https://1.2.3.4/\ud800"}, "lone surrogate"),
        ({"url": ["\udfff"]}, "must be a string"),
        ({"url": "https://127.0.0.1/hook"}, "loopback"),
        ({"url": "https://127.0.0.1:6379/"}, "loopback"),
        ({"url": "https://[::1]/hook"}, "loopback"),
        ({"url": "https://[::ffff:127.0.0.1]/hook"}, "loopback"),
        ({"url": "https://10.0.0.1/hook"}, "private"),
        ({"url": "https://192.168.1.1/hook"}, "private"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "link-local"),
        ({"url": "https://[fe80::1]/hook"}, "link-local"),
        ({"url": "https://100.64.0.1/hook"}, "shared"),
        ({"url": "https://0.0.0.0/hook"}, "unspecified"),
        ({"url": "https://224.0.0.1/hook"}, "multicast"),
        # Taken for global by Python 3.11.7's ipaddress; not by the IANA registries.
        ({"url": "https://192.0.0.8/"}, "(IPv4 dummy address, RFC 7600)"),
        ({"url": "https://[3fff::1]/"}, "(documentation, RFC 9637)"),
        # A name that resolves to 127.0.0.1.
        ({"url": "https://localhost/hook"}, "localhost resolves to"),
        # Loopback, or no address at all, as the resolver reads the final dot.
        ({"url": "https://localhost.:8443/hook"}, "localhost."),
        ({"url": "https://no-such-host.invalid/hook"}, "could not be resolved"),
    ],
)
def test_url_refused(http: httpx.Client, body: dict[str, Any], reason: str) -> None:
    problem = assert_problem(post_json(http, body), 400)
    assert problem["type"] == "/problems/invalid-request"
    (error,) = problem["errors"]
    assert error["pointer"] == "/url"
    assert reason in error["reason"]
    assert listed(http) == []


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:9/hook", "must be an absolute https:// URL"),
        ("https://127.0.0.1:8443/hook", "127.0.0.1 is a non-public address (loopback"),
        ("https://localhost/hook", "localhost resolves to"),
    ],
)
def test_a_local_receiver_is_told_how_to_allow_it_for_development(
    http: httpx.Client, url: str, refused: str
) -> None:
    answer = http.post(HOOKS, json={"url": url})
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert error["pointer"] == "/url"
    assert error["reason"].startswith(refused)
    assert error["reason"].endswith(
        "(ENDCONTACT_WEBHOOK_ALLOW_PRIVATE=true on the service allows http:// and private "
        "addresses, for development only)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "https://localhost/hook",
        "http://10.0.0.1/hook",
        "https://[::1]:8443/hook",
        "https://169.254.169.254/hook",
    ],
)
def test_private_allowed_when_allow_private(
    private_app: TestClient, caller: Caller, url: str
) -> None:
    with as_caller(private_app, caller) as http:
        created = create(http, url)
        assert created["url"] == url
        assert [hook["id"] for hook in listed(http)] == [created["id"]]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://user@127.0.0.1/hook", "user info"),
        ("ftp://127.0.0.1/hook", "https:// (or http://)"),
        ("http:///hook", "must have a host"),
        ("https://224.0.0.1/hook", "multicast"),
    ],
)
def test_still_refused_when_allow_private(
    private_app: TestClient, caller: Caller, url: str, reason: str
) -> None:
    with as_caller(private_app, caller) as http:
        answer = http.post(HOOKS, json={"url": url})
        assert answer.status_code == 400, answer.text
        (error,) = answer.json()["errors"]
        assert (error["pointer"], reason in error["reason"]) == ("/url", True)


def test_body_must_be_a_json_object(http: httpx.Client) -> None:
    for content, kind in [
        (b"[]", "application/json"),
        (b"{", "application/json"),
        (b'"https://1.2.3.4/"', "application/json"),
        (b'{"url": "https://1.2.3.4/"}', "text/plain"),
    ]:
        answer = http.post(HOOKS, content=content, headers={"content-type": kind})
        assert answer.status_code == 400, (content, answer.text)
    assert listed(http) == []


@pytest.fixture
def web_http(web: str, caller: Caller) -> Iterator[httpx.Client]:
    """The caller's client of the web process, for a test that reads its log."""
    with httpx.Client(base_url=web, headers=caller.headers, timeout=30, verify=TLS) as http:
        yield http


def test_rotate_secret(web_http: httpx.Client, raw: redis.Redis, logs: Path) -> None:
    http = web_http
    created = create(http)
    answer = http.post(f"{HOOKS}/{created['id']}/rotate-secret")
    assert answer.status_code == 200, answer.text
    rotated = answer.json()
    assert set(rotated) == {"id", "secret", "previousSecretExpiresAt"}
    assert rotated["id"] == created["id"]
    assert_secret(rotated["secret"])
    assert rotated["secret"] != created["secret"]
    assert created["secret"] not in answer.text
    # The deliveries sign with both for a day: the store keeps the old one beside.
    record = raw.hgetall(webhook_key(created["id"]))
    assert (record["secret"], record["previous_secret"]) == (rotated["secret"], created["secret"])
    assert int(record["previous_until"]) > 0

    again = http.post(f"{HOOKS}/{created['id']}/rotate-secret").json()
    record = raw.hgetall(webhook_key(created["id"]))
    assert (record["secret"], record["previous_secret"]) == (again["secret"], rotated["secret"])
    listing = http.get(HOOKS)
    assert "secret" not in listing.text
    assert [hook["id"] for hook in listing.json()["webhooks"]] == [created["id"]]
    # Logged by id, never with a secret.
    logged = (logs / "web.log").read_text()
    assert f'"webhook_id": "{created["id"]}"' in logged
    for secret in (created["secret"], rotated["secret"], again["secret"]):
        assert secret.removeprefix("whsec_") not in logged


def attempt(event: int, number: int, **outcome: Any) -> str:
    """A log entry as the deliveries write it."""
    entry = {
        "eventId": f"1764000000000-{event}-0",
        "attempt": number,
        "at": "2026-11-29T21:00:00.000Z",
        "durationMs": 12,
        "outcome": "retry",
        **outcome,
    }
    return json.dumps(entry)


def test_deliveries(http: httpx.Client, raw: redis.Redis) -> None:
    created = create(http)
    path = f"{HOOKS}/{created['id']}/deliveries"
    assert http.get(path).json() == {"deliveries": []}

    # Oldest first into the list's head, as each attempt is recorded: newest first out.
    entries = [attempt(n, 1, error="timeout") for n in range(30)]
    entries[-1] = attempt(29, 2, status=200)
    for entry in entries:
        raw.lpush(log_key(created["id"]), entry)

    default = http.get(path)
    assert default.status_code == 200
    shown = default.json()["deliveries"]
    assert len(shown) == 20
    assert shown[0] == json.loads(entries[-1])
    assert shown[1] == json.loads(entries[-2])
    assert [len(http.get(path, params={"limit": n}).json()["deliveries"]) for n in (1, 100)] == [
        1,
        30,
    ]
    for bad in ("0", "101", "-1", "abc", "1.5", "", "9" * 5000):
        answer = http.get(path, params={"limit": bad})
        assert answer.status_code == 400, bad
        assert answer.json()["errors"][0]["parameter"] == "limit"

    assert http.delete(f"{HOOKS}/{created['id']}").status_code == 204
    assert raw.exists(log_key(created["id"])) == 0


def test_scope(client: TestClient, store: Store, raw: redis.Redis) -> None:
    owner = new_caller(store)
    # The same company, another campaign; then another company, the same campaign name.
    others = [
        new_caller(store, owner.key.scope.company),
        new_caller(store, campaign=owner.key.scope.campaign),
    ]
    with as_caller(client, owner) as http:
        created = create(http)
    hook = created["id"]
    raw.lpush(log_key(hook), attempt(1, 1, status=500))
    for other in others:
        with as_caller(client, other) as http:
            assert listed(http) == []
            for answer in (
                http.delete(f"{HOOKS}/{hook}"),
                http.post(f"{HOOKS}/{hook}/rotate-secret"),
                http.get(f"{HOOKS}/{hook}/deliveries"),
            ):
                assert assert_problem(answer, 404)["type"] == "/problems/webhook-not-found"
                assert created["secret"] not in answer.text
    with as_caller(client, owner) as http:
        assert [h["id"] for h in listed(http)] == [hook]
        assert raw.hget(webhook_key(hook), "secret") == created["secret"]
        assert len(http.get(f"{HOOKS}/{hook}/deliveries").json()["deliveries"]) == 1


@pytest.mark.parametrize("webhook_id", ["wh_0000000000000000", "wh_nothex", "x", "wh_" + "0" * 64])
def test_unknown_ids(http: httpx.Client, webhook_id: str) -> None:
    for answer in (
        http.delete(f"{HOOKS}/{webhook_id}"),
        http.post(f"{HOOKS}/{webhook_id}/rotate-secret"),
        http.get(f"{HOOKS}/{webhook_id}/deliveries"),
    ):
        assert answer.status_code == 404, answer.text


def test_a_key_is_required(client: TestClient, caller: Caller) -> None:
    with as_caller(client, caller) as http:
        hook = create(http)["id"]
    for headers in ({}, {"x-api-key": "ec_not-a-key"}):
        for answer in (
            client.post(HOOKS, json={"url": PUBLIC_URL}, headers=headers),
            client.get(HOOKS, headers=headers),
            client.delete(f"{HOOKS}/{hook}", headers=headers),
            client.post(f"{HOOKS}/{hook}/rotate-secret", headers=headers),
            client.get(f"{HOOKS}/{hook}/deliveries", headers=headers),
        ):
            assert assert_problem(answer, 401)["type"] == "/problems/unauthorized"


def test_limit_per_campaign(http: httpx.Client) -> None:
    # Created all at once: the limit holds against concurrent creations too.
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: http.post(HOOKS, json={"url": PUBLIC_URL}), range(MAX_PER_CAMPAIGN + 5)
            )
        )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * MAX_PER_CAMPAIGN + [409] * 5
    refused = assert_problem(next(a for a in answers if a.status_code == 409), 409)
    assert refused["type"] == "/problems/too-many-webhooks"
    assert str(MAX_PER_CAMPAIGN) in refused["detail"]
    hooks = listed(http)
    assert len(hooks) == MAX_PER_CAMPAIGN

    assert http.post(HOOKS, json={"url": PUBLIC_URL}).status_code == 409
    assert http.delete(f"{HOOKS}/{hooks[0]['id']}").status_code == 204
    create(http)
    assert http.post(HOOKS, json={"url": PUBLIC_URL}).status_code == 409


def test_methods(http: httpx.Client) -> None:
    answer = http.put(HOOKS, json={"url": PUBLIC_URL})
    assert answer.status_code == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    hook = create(http)["id"]
    assert http.get(f"{HOOKS}/{hook}").status_code == 405
    assert http.get(f"{HOOKS}/{hook}/rotate-secret").status_code == 405
