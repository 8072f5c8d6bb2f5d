"""The change feed (issue 11): tailed while clients write, read from the start, asked
wrong; and events leaving it past their retention."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared.events import ENDED, RESUMED, EventId
from shared.keyspace import TRIMMED, ended_key, feed_name, feed_record_key
from shared.store import Store
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, assert_problem, numbers, wait_until
from tests.marks import (
    FEED,
    RESUME,
    as_event,
    change,
    created,
    e164,
    hist,
    lookup,
    page,
    whole_feed,
)
from tests.processes import Stack

pytestmark = pytest.mark.timeout(120)


@dataclass
class Writer:
    """One client ending, resuming and ending again numbers of its own, each step only
    for the numbers the step before reported as successes: so that every success is a
    change. What failed may have been applied or not."""

    caller: Caller
    phones: list[str]
    done: list[tuple[str, str]] = field(default_factory=list)  # (E.164, type)
    maybe: list[tuple[str, str]] = field(default_factory=list)

    def run(self, base: str) -> None:
        with httpx.Client(base_url=base, timeout=30, verify=TLS) as http:
            todo = self.phones
            for path, kind in ((URL, ENDED), (RESUME, RESUMED), (URL, ENDED)):
                for start in range(0, len(todo), 7):
                    body = created(change(http, self.caller, path, todo[start : start + 7]))
                    self.done += [(p, kind) for p in body["success"]]
                    self.maybe += [(p, kind) for p in body["failure"]]
                todo = [p for p, k in self.done if k == kind][::2]


def tail(base: str, caller: Caller, limit: int, stop: threading.Event) -> list[dict[str, Any]]:
    """Follow the feed with `after=next`, `limit` at a time, until `stop` and dry."""
    seen: list[dict[str, Any]] = []
    after: str | None = None
    with httpx.Client(base_url=base, timeout=30, verify=TLS) as http:
        while True:
            stopping = stop.is_set()
            query: dict[str, str | int] = {"limit": limit}
            if after is not None:
                query["after"] = after
            body = page(http, caller, **query)
            assert len(body["events"]) <= limit
            seen.extend(body["events"])
            if body["events"]:
                assert body["next"] == body["events"][-1]["id"]
            elif after is not None:
                # Nothing new: next is where the client stands.
                assert body["next"] == after
            after = body["next"]
            if not body["events"]:
                if stopping:
                    return seen
                stop.wait(0.05)  # not synchronisation: a poll's pause


def test_tailing_the_feed_while_clients_write_sees_each_change_once_in_order(
    web: str, web_client: httpx.Client, caller: Caller, store: Store
) -> None:
    scope = caller.key.scope

    def key() -> Caller:
        # A key each: the rate limit is per key, and a tail of one event a page asks often.
        return new_caller(store, scope.company, scope.campaign)

    writers = [Writer(key(), e164(numbers(2000 + 100 * i, 24))) for i in range(4)]
    stop = threading.Event()
    with ThreadPoolExecutor(7) as pool:
        tails = [pool.submit(tail, web, key(), limit, stop) for limit in (1, 2, 7)]
        writing = [pool.submit(w.run, web) for w in writers]
        for future in writing:
            future.result()
        stop.set()
        followed = [future.result() for future in tails]

    done = [(p, k) for w in writers for p, k in w.done]
    maybe = [(p, k) for w in writers for p, k in w.maybe]
    assert len(done) > 24 * 4
    for seen in followed:
        ids = [EventId.parse(e["id"]) for e in seen]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        changes = Counter((e["phoneNumber"], e["type"]) for e in seen)
        # Every success was a change, so it is an event, once; a failure may be one too.
        assert Counter(done) <= changes <= Counter(done) + Counter(maybe)
        assert seen == followed[0]
        assert {e["keyId"] for e in seen} == {w.caller.key.id for w in writers}
    # The feed read whole from the start is what the tails saw, and so is each history.
    assert whole_feed(web_client, caller) == followed[0]
    by_phone: dict[str, list[dict[str, Any]]] = {}
    for event in followed[0]:
        by_phone.setdefault(event["phoneNumber"], []).append(event)
    for phone, events in by_phone.items():
        assert store.history(scope, phone) == [as_event(e) for e in events]


def test_the_feed_from_the_start_when_dry_and_when_asked_wrong(
    web_client: httpx.Client, caller: Caller, store: Store
) -> None:
    empty = page(web_client, caller)
    assert empty == {"events": [], "next": "0-0-0"}
    assert_ahead(web_client, caller, "9796288602400-0-0")
    phones = numbers(3000, 5)
    created(change(web_client, caller, URL, phones))
    whole = page(web_client, caller)["events"]
    assert sorted(e["phoneNumber"] for e in whole) == e164(phones)
    first = page(web_client, caller, limit=2)
    assert first["events"] == whole[:2]
    rest = page(web_client, caller, after=first["next"])
    assert rest["events"] == whole[2:]
    # Nothing new: empty, and next where the client stands; so too past the last event
    # but not past the store's clock (the id a later entry of this millisecond gets).
    assert page(web_client, caller, after=rest["next"]) == {"events": [], "next": rest["next"]}
    last = EventId.parse(rest["next"])
    unused = f"{last.ms}-{last.seq + 1}-0"
    assert page(web_client, caller, after=unused) == {"events": [], "next": unused}
    # Past the clock, the feed can hold nothing yet: a client tailing from there would
    # skip every event to come.
    for future in ("9796288602400-0-0", f"{2**63}-0-0", f"{last.ms + 3_600_000}-0-0"):
        assert_ahead(web_client, caller, future)
    assert len(page(web_client, caller)["events"]) == 5  # 100 by default
    assert page(web_client, caller, limit=1000)["events"] == page(web_client, caller)["events"]

    for limit in ("0", "1001", "x", "1.5", "-1", "", " 5", "²"):
        response = web_client.get(FEED, params={"limit": limit}, headers=caller.headers)
        (error,) = assert_problem(response, 400)["errors"]
        assert error["parameter"] == "limit", limit
    for after in ("x", "1-0", "1-0-0-0", "", "1764450000000-0-a", f"{2**64}-0-0"):
        response = web_client.get(FEED, params={"after": after}, headers=caller.headers)
        (error,) = assert_problem(response, 400)["errors"]
        assert error["parameter"] == "after", after
    response = web_client.get(FEED, params={"after": "x", "limit": "0"}, headers=caller.headers)
    assert {e["parameter"] for e in assert_problem(response, 400)["errors"]} == {"after", "limit"}
    assert_problem(web_client.get(FEED), 401)

    # Another campaign, even of the same company, sees none of it.
    for other in (new_caller(store), new_caller(store, caller.key.scope.company)):
        assert page(web_client, other) == {"events": [], "next": "0-0-0"}
        assert hist(web_client, other, phones[0]) == []
        assert_problem(lookup(web_client, other, phones[0]), 404)


def assert_ahead(client: httpx.Client, caller: Caller, after: str) -> None:
    response = client.get(FEED, params={"after": after}, headers=caller.headers)
    (error,) = assert_problem(response, 400)["errors"]
    assert error == {
        "parameter": "after",
        "value": after,
        "reason": "later than every event of this feed and than now (start without `after`)",
    }


# --- retention (on the session's short-lived stack) -------------------------------


def test_past_the_retention_events_leave_the_feed_and_a_resumed_number_its_history(
    short_lived: Stack,
) -> None:
    stack = short_lived
    caller = new_caller(Store(stack.client))
    kept, resumed, twice = numbers(100, 3), numbers(200, 3), numbers(300, 3)
    with httpx.Client(base_url=stack.base, timeout=30, verify=TLS) as http:
        assert created(change(http, caller, URL, kept + resumed + twice))["failure"] == []
        assert created(change(http, caller, RESUME, resumed + twice))["failure"] == []
        assert created(change(http, caller, URL, twice))["failure"] == []
        # A cursor at the very first event, and the last event of all this.
        cursor = hist(http, caller, kept[0])[0]["id"]
        last = hist(http, caller, twice[-1])[-1]["id"]
        old = {p: hist(http, caller, p) for p in kept + twice}
        driven = iter(range(1000, 2000))

        def trimmed() -> dict[str, Any] | None:
            # Writes trim as they go: one now and then, until all of the above is gone.
            created(change(http, caller, URL, numbers(next(driven), 1)))
            body = page(http, caller, limit=1)
            if not body["events"]:
                return None
            first = body["events"][0]["id"]
            return body if EventId.parse(first) > EventId.parse(last) else None

        wait_until(trimmed, 60, "the first events past their retention", interval=0.3)

        gone = assert_problem(http.get(FEED, params={"after": cursor}, headers=caller.headers), 410)
        assert gone["type"] == "/problems/cursor-expired"
        (error,) = gone["errors"]
        assert error["parameter"] == "after"
        assert error["value"] == cursor
        # Without `after`, the feed starts after what was trimmed.
        events = whole_feed(http, caller)
        mark = stack.client.hget(feed_record_key(feed_name(caller.key.scope)), TRIMMED)
        assert mark is not None
        assert all(EventId.parse(e["id"]) > EventId.parse(str(mark)) for e in events)
        assert EventId.parse(str(mark)) >= EventId.parse(last)
        assert {e["phoneNumber"] for e in events}.isdisjoint(e164(kept + resumed + twice))
        # Ended numbers keep their whole history; a resumed one is forgotten.
        for phone in kept + twice:
            assert hist(http, caller, phone) == old[phone]
            assert lookup(http, caller, phone).status_code == 200
        for phone in resumed:
            assert hist(http, caller, phone) == []
            assert_problem(lookup(http, caller, phone), 404)
        assert not stack.client.hexists(ended_key(caller.key.scope), e164(resumed)[0])
        # From the new start on, the feed goes on as ever.
        created(change(http, caller, RESUME, kept[:1]))
        news = whole_feed(http, caller)[-1]
        assert (news["phoneNumber"], news["type"]) == (e164(kept)[0], RESUMED)
