"""Reading marks: the bulk check, the listing in pages, the CSV export (API and CLI).

One file over 400 lines: the three reads share the `reader` (the app in this process on
a database of its own, no worker, no rate limit) and the `paging` web process."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.apikeys import Scope
from shared.embedded import free_port
from shared.keyspace import ended_key
from shared.marks import Cursor
from shared.store import Store
from shared.tasks import QUEUE
from tests.conftest import Caller, new_caller, serving
from tests.helpers import TLS, URL, assert_problem, clean_env, post_numbers, wait_until
from tests.processes import ROOT, Stack, start_web, stop
from tests.test_cli import endcontact

CHECK = f"{URL}/check"
WHEN = "2026-11-29T12:00:00.000Z"
NO_LIMIT = {"ENDCONTACT_RATE_LIMIT": "0"}


@dataclass(frozen=True)
class Reader:
    """The web app with no worker behind it and no rate limit, on a database of its own:
    whatever it answers was read from Redis without Celery, and a listing can take as
    many pages as it needs."""

    web: httpx.Client
    url: str
    store: Store
    redis: redis.Redis

    def caller(self, phones: list[str] | None = None) -> Caller:
        """A key of a campaign of its own, which holds `phones`, ended at WHEN."""
        caller = new_caller(self.store)
        self.fill(caller.key.scope, phones or [])
        return caller

    def fill(self, scope: Scope, phones: list[str]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(phones), 1000):
                pipe.hset(
                    ended_key(scope), mapping=dict.fromkeys(phones[start : start + 1000], WHEN)
                )
            pipe.execute()


@pytest.fixture(scope="module")
def reader(redis_server: str) -> Iterator[Reader]:
    url = f"{redis_server}/2"
    with (
        serving({"REDIS_URL": url, **NO_LIMIT}) as web,
        redis.Redis.from_url(url, decode_responses=True) as client,
    ):
        yield Reader(web, url, Store(client), client)


@pytest.fixture
def http(reader: Reader) -> httpx.Client:
    return reader.web


@pytest.fixture(scope="module")
def paging(reader: Reader, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A web process as the reader, for the listings of hundreds of pages. Through `http`
    each request hops to the app's event loop, a thread of this process, and back
    several times, sharing the GIL with the test: a page took 2.5 ms against 1.6 ms
    through uvicorn (measured), and these tests twice as long."""
    log = tmp_path_factory.mktemp("paging") / "web.log"
    base, process = start_web({"REDIS_URL": reader.url, **NO_LIMIT}, log)
    with httpx.Client(base_url=base, timeout=30, verify=TLS) as http:
        yield http
    stop(process)


def e164(count: int, first: int = 0) -> list[str]:
    """`count` distinct E.164 numbers as the worker stores them."""
    return [f"+1509{n:07d}" for n in range(first, first + count)]


# --- bulk check ------------------------------------------------------------------


def test_check_answers_in_request_order_after_real_end_contacts(
    web_client: httpx.Client, caller: Caller
) -> None:
    ended = post_numbers(web_client, caller.headers, ["(509) 555-1234", "+1 201-555-0123"])
    assert ended.json()["failure"] == []
    found = {
        n: web_client.get(f"{URL}/{n}", headers=caller.headers).json()["endedAt"]
        for n in ended.json()["success"]
    }
    asked = ["212.555.0199", "+1 201 555 0123", "(509) 555-9876", "+1 (509) 555-1234"]
    response = web_client.post(CHECK, json={"phoneNumberList": asked}, headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "ended": [
            {"phoneNumber": "+12015550123", "endedAt": found["+12015550123"]},
            {"phoneNumber": "+15095551234", "endedAt": found["+15095551234"]},
        ],
        "notEnded": ["+12125550199", "+15095559876"],
    }
    assert "RateLimit-Remaining" in response.headers


def test_check_of_1000_reads_redis_and_never_celery(reader: Reader, http: httpx.Client) -> None:
    asked = e164(1000, 5_550_000)
    caller = reader.caller(asked[::3])
    reader.caller(asked)  # another campaign's marks are not this one's
    response = http.post(CHECK, json={"phoneNumberList": asked}, headers=caller.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ended"] == [{"phoneNumber": n, "endedAt": WHEN} for n in asked[::3]]
    assert body["notEnded"] == [n for i, n in enumerate(asked) if i % 3]
    assert reader.redis.llen(QUEUE) == 0
    assert reader.redis.exists("celery") == 0


def test_check_takes_1000_long_written_numbers_beyond_64_kib(
    reader: Reader, http: httpx.Client
) -> None:
    caller = reader.caller()
    # A real number padded with spaces to 100 characters: 1000 of them are ~104 KB.
    asked = [f"+1 509 555 {n:04d}".ljust(100) for n in range(1000)]
    raw = json.dumps({"phoneNumberList": asked}).encode()
    assert 64 * 1024 < len(raw) < 128 * 1024
    response = http.post(
        CHECK, content=raw, headers={**caller.headers, "content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["notEnded"] == [f"+1509555{n:04d}" for n in range(1000)]


def test_check_refuses_what_end_contact_refuses_but_up_to_1000(
    reader: Reader, http: httpx.Client
) -> None:
    caller = reader.caller()

    def post(body: object) -> httpx.Response:
        return http.post(CHECK, json=body, headers=caller.headers)

    too_many = assert_problem(post({"phoneNumberList": e164(1001)}), 400)
    assert too_many["errors"] == [
        {"pointer": "/phoneNumberList", "reason": "must hold 1 to 1000 entries"}
    ]
    assert_problem(post({"phoneNumberList": []}), 400)
    assert_problem(post({"numbers": ["+15095551234"]}), 400)
    bad = assert_problem(
        post({"phoneNumberList": ["(509) 555-1234", "(555) 555-1234", "+1 509 555 1234", 7]}), 400
    )
    assert [error["pointer"] for error in bad["errors"]] == [
        "/phoneNumberList/1",
        "/phoneNumberList/2",
        "/phoneNumberList/3",
    ]
    wrong_type = http.post(
        CHECK, content=b"{}", headers={**caller.headers, "content-type": "text/plain"}
    )
    assert assert_problem(wrong_type, 400)["errors"][0]["header"] == "content-type"


def test_check_401_comes_before_400_and_413(http: httpx.Client) -> None:
    for headers in ({}, {"x-api-key": "ec_" + "x" * 43}):
        assert assert_problem(http.post(CHECK, json={"phoneNumberList": []}, headers=headers), 401)
        big = http.post(CHECK, content=b"x" * 200_000, headers=headers)
        assert assert_problem(big, 401)


def test_check_body_over_128_kib_gets_413(reader: Reader, http: httpx.Client) -> None:
    caller = reader.caller()
    asked = [f"+1 509 555 {n:04d}".ljust(140) for n in range(1000)]
    raw = json.dumps({"phoneNumberList": asked}).encode()
    assert len(raw) > 128 * 1024
    response = http.post(
        CHECK, content=raw, headers={**caller.headers, "content-type": "application/json"}
    )
    assert assert_problem(response, 413)["detail"] == "The body is larger than 131072 bytes."
    assert response.headers["connection"] == "close"


# --- listing ---------------------------------------------------------------------


def page(http: httpx.Client, caller: Caller, limit: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    response = http.get(URL, params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert len(body["items"]) <= limit
    return body


def pages(
    http: httpx.Client, caller: Caller, limit: int, between: Callable[[int], None] | None = None
) -> list[list[dict[str, str]]]:
    """Every page of a listing, following `next`; `between(i)` runs after page i."""
    found: list[list[dict[str, str]]] = []
    cursor = None
    for index in range(100_000):
        body = page(http, caller, limit, cursor)
        found.append(body["items"])
        cursor = body["next"]
        if cursor is None:
            return found
        if between is not None:
            between(index)
    raise AssertionError("the listing never ended")


def list_all(
    http: httpx.Client, caller: Caller, limit: int, between: Callable[[int], None] | None = None
) -> list[dict[str, str]]:
    """Every item of a listing, page after page."""
    return [item for items in pages(http, caller, limit, between) for item in items]


def test_a_small_campaign_pages_by_limit_in_number_order(
    reader: Reader, http: httpx.Client
) -> None:
    phones = e164(20, 100)
    caller = reader.caller(phones)
    listed = [[item["phoneNumber"] for item in items] for items in pages(http, caller, 3)]
    # Small: the whole hash comes back from one HSCAN, yet no page holds more than 3.
    assert listed == [sorted(phones)[i : i + 3] for i in range(0, 20, 3)]


def test_an_empty_campaign_is_one_empty_page(reader: Reader, http: httpx.Client) -> None:
    assert page(http, reader.caller(), 100, None) == {"items": [], "next": None}


def test_a_large_campaign_paged_by_7_returns_every_number(
    reader: Reader, paging: httpx.Client
) -> None:
    phones = e164(5000, 20_000)
    caller = reader.caller(phones)
    items = list_all(paging, caller, 7)
    assert {item["phoneNumber"] for item in items} == set(phones)
    assert all(item["endedAt"] == WHEN for item in items)
    # HSCAN hands over whole buckets, more than COUNT: the rest rode in the cursor.
    assert len(items) >= 5000


def test_default_limit_is_100(reader: Reader, http: httpx.Client) -> None:
    caller = reader.caller(e164(250, 40_000))
    response = http.get(URL, headers=caller.headers)
    assert response.status_code == 200
    assert len(response.json()["items"]) == 100
    assert response.json()["next"]


@pytest.mark.parametrize(("start", "adds", "steps"), [(40, 80, 12), (3000, 500, 40)])
def test_a_listing_while_numbers_are_ended_and_removed(
    reader: Reader, paging: httpx.Client, start: int, adds: int, steps: int
) -> None:
    """Between pages, numbers are ended and removed (straight in the store: resume is
    for later). The first case grows a small hash past its compact encoding (whole
    snapshots, then a scan); the second makes a large one rehash as it grows to several
    times its size and shrinks back. Every number present throughout comes back; none
    that never was."""
    throughout = e164(start, 100_000)
    leaving = e164(start, 200_000)  # present at the start, removed during the listing
    caller = reader.caller(throughout + leaving)
    key = ended_key(caller.key.scope)
    arriving: list[str] = []
    ever = set(throughout) | set(leaving)

    def change(index: int) -> None:
        # Bounded: a listing that reads slower than numbers arrive, for ever, would
        # never end (nor would SCAN).
        gone = leaving[index * start // steps : (index + 1) * start // steps]
        if index < steps:
            new = e164(adds, 300_000 + index * adds)
            reader.fill(caller.key.scope, new)
            ever.update(new)
            arriving.extend(new)
            # A quarter of what arrived goes again: marks come and go.
            gone += arriving[: len(arriving) // 4]
            del arriving[: len(arriving) // 4]
        elif index < steps + 5:
            # Then most of it goes, and the hash shrinks.
            gone += arriving[: len(arriving) // 2]
            del arriving[: len(arriving) // 2]
        if gone:
            reader.redis.hdel(key, *gone)

    items = list_all(paging, caller, 7, change)
    returned = {item["phoneNumber"] for item in items}
    assert set(throughout) <= returned
    assert returned <= ever
    assert reader.redis.hlen(key) < len(ever)  # it did change


def test_a_listing_while_another_client_ends_and_removes_all_the_time(
    reader: Reader, paging: httpx.Client
) -> None:
    """The same, with the changes from a thread of their own, so that they also land
    between the HSCAN calls of one page. The churn keeps the hash's size bounded (SCAN
    ends only then), while the hash grows to twice its size and back, over and over."""
    throughout = e164(2000, 100_000)
    leaving = e164(2000, 200_000)
    caller = reader.caller(throughout + leaving)
    key = ended_key(caller.key.scope)
    ever = set(throughout) | set(leaving)
    listed = threading.Event()
    rounds = 0

    def churn() -> None:
        nonlocal rounds
        with redis.Redis.from_url(reader.url, decode_responses=True) as other:
            while not listed.is_set():
                batch = e164(3000, 300_000 + rounds * 3000)
                ever.update(batch)
                other.hset(key, mapping=dict.fromkeys(batch, WHEN))
                other.hdel(key, *batch, *leaving[rounds * 20 : (rounds + 1) * 20])
                rounds += 1

    changer = threading.Thread(target=churn)
    changer.start()
    try:
        wait_until(lambda: rounds > 0, 10, "the first changes")
        items = list_all(paging, caller, 7)
    finally:
        listed.set()
        changer.join()
    returned = {item["phoneNumber"] for item in items}
    assert set(throughout) <= returned
    assert returned <= ever
    assert rounds > 1


@pytest.mark.parametrize(
    ("query", "parameters"),
    [
        ({"limit": "0"}, ["limit"]),
        ({"limit": "1001"}, ["limit"]),
        ({"limit": "ten"}, ["limit"]),
        ({"limit": ""}, ["limit"]),
        ({"limit": "٣"}, ["limit"]),
        # Digits, but more than Python's int() reads (4,300).
        ({"limit": "9" * 5000}, ["limit"]),
        ({"cursor": "nonsense"}, ["cursor"]),
        ({"cursor": "1" + "A" * 10}, ["cursor"]),
        ({"cursor": Cursor(whole=True, floor="+15095551234").encode()[:-2]}, ["cursor"]),
        ({"limit": "-1", "cursor": ""}, ["limit", "cursor"]),
    ],
)
def test_bad_limit_or_cursor_is_a_400_naming_it(
    reader: Reader, http: httpx.Client, query: dict[str, str], parameters: list[str]
) -> None:
    response = http.get(URL, params=query, headers=reader.caller().headers)
    body = assert_problem(response, 400)
    assert [error["parameter"] for error in body["errors"]] == parameters


def test_listing_needs_a_key(http: httpx.Client) -> None:
    assert_problem(http.get(URL, params={"limit": "0"}), 401)
    assert_problem(http.get(URL, headers={"accept": "text/csv"}), 401)


# --- export ----------------------------------------------------------------------


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_export_streams_the_whole_campaign_as_csv(reader: Reader, http: httpx.Client) -> None:
    phones = e164(2500, 400_000)
    caller = reader.caller(phones)
    reader.caller(e164(10, 900_000))  # another campaign
    response = http.get(URL, headers={**caller.headers, "accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "content-length" not in response.headers  # streamed, chunked
    assert response.text.startswith("phoneNumber,endedAt\r\n")
    table = rows(response.text)
    assert table[0] == ["phoneNumber", "endedAt"]
    assert sorted(map(tuple, table[1:])) == [(n, WHEN) for n in sorted(phones)]


@pytest.mark.parametrize(
    ("accept", "csv_expected"),
    [
        ("text/csv", True),
        ("text/csv;q=0.9, application/json;q=0.5", True),
        ("application/json, text/csv;q=0.5", False),
        ("text/csv;q=0", False),
        ("*/*", False),
        (None, False),
    ],
)
def test_accept_picks_csv_or_json(
    reader: Reader, http: httpx.Client, accept: str | None, csv_expected: bool
) -> None:
    caller = reader.caller()
    headers = {**caller.headers, **({"accept": accept} if accept else {})}
    response = http.get(URL, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "text/csv" if csv_expected else "application/json"
    )


def test_a_head_of_the_export_is_its_headers(reader: Reader, http: httpx.Client) -> None:
    response = http.head(URL, headers={**reader.caller().headers, "accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content == b""


def test_export_refuses_a_limit_or_cursor(reader: Reader, http: httpx.Client) -> None:
    response = http.get(
        URL, params={"limit": "5"}, headers={**reader.caller().headers, "accept": "text/csv"}
    )
    assert [error["parameter"] for error in assert_problem(response, 400)["errors"]] == ["limit"]


def test_cli_export_writes_what_the_api_exports(
    reader: Reader, http: httpx.Client, tmp_path: Path
) -> None:
    caller = reader.caller(e164(1500, 500_000))
    scope = caller.key.scope
    api = http.get(URL, headers={**caller.headers, "accept": "text/csv"}).content
    env = {"REDIS_URL": reader.url}
    args = ["export", "--company", scope.company, "--campaign", scope.campaign]
    # Bytes, not text: text mode would fold the CRLFs.
    printed = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=clean_env(env),
        capture_output=True,
        timeout=60,
        check=True,
    )
    written = endcontact(*args, "--out", str(tmp_path / "marks.csv"), env=env)
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert [path.name for path in tmp_path.iterdir()] == ["marks.csv"]
    from_file = (tmp_path / "marks.csv").read_bytes()
    # Same rows (HSCAN's order may differ between two reads), same bytes per row.
    assert sorted(from_file.split(b"\r\n")) == sorted(api.split(b"\r\n"))
    assert printed.stdout == from_file
    assert len(rows(from_file.decode())) == 1501


def test_cli_export_of_an_unknown_campaign_is_the_header(reader: Reader) -> None:
    done = endcontact(
        "export", "--company", "nobody", "--campaign", "none", env={"REDIS_URL": reader.url}
    )
    # (Text mode reads the CRLF as a newline.)
    assert (done.returncode, done.stdout) == (0, "phoneNumber,endedAt\n")


@pytest.fixture
def web_alone(tmp_path: Path) -> Iterator[Stack]:
    """A private store and web, no worker: an export reads Redis, never Celery."""
    with Stack(tmp_path) as stack:
        yield stack.start(concurrency=0)


def test_an_export_cut_by_redis_failing_is_no_complete_file(web_alone: Stack) -> None:
    """Redis killed mid-export: the client's transfer fails, it never gets a CSV that
    ends like a whole one; and the web goes on serving."""
    stack = web_alone
    client = stack.client
    key, secret = Store(client).create_key("acme", "export")
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, 400_000, 1000):
            pipe.hset(ended_key(key.scope), mapping=dict.fromkeys(e164(1000, start), WHEN))
        pipe.execute()
    received: list[bytes] = []
    with (
        httpx.Client(base_url=stack.base, timeout=30, verify=TLS) as http,
        http.stream("GET", URL, headers={"x-api-key": secret, "accept": "text/csv"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        # 400,000 rows are 16 MB: more than the sockets buffer while this client does
        # not read, so the web is still exporting when Redis goes.
        received.append(next(chunks))
        assert stack.redis is not None
        stack.redis.send_signal(signal.SIGKILL)
        stack.redis.wait()
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(chunks)
    text = b"".join(received)
    assert text.startswith(b"phoneNumber,endedAt\r\n")
    assert text.count(b"\n") - 1 < 400_000
    assert "export cut short" in stack.logs()
    assert httpx.get(f"{stack.base}/healthz", verify=TLS).status_code == 200


def test_cli_export_leaves_no_file_when_redis_fails(tmp_path: Path) -> None:
    out = tmp_path / "marks.csv"
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = endcontact(
        "export", "--company", "a", "--campaign", "b", "--out", str(out), env={"REDIS_URL": url}
    )
    assert done.returncode == 1, done.stderr
    assert "Redis did not answer" in done.stderr
    assert list(tmp_path.iterdir()) == []
