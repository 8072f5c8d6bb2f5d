"""A mark's life (issue 11): resume, reasons, events, and a mark and its event written
together even when the worker or the store is killed. (The change feed is
tests/test_feed.py's.)"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.apikeys import Scope
from shared.events import CODES, ENDED, RESUMED, Event, EventId, entry_events, history
from shared.keyspace import ended_key, events_key
from shared.store import Store
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, assert_problem, numbers, wait_until
from tests.marks import (
    EVENT_FIELDS,
    RESUME,
    as_event,
    change,
    created,
    e164,
    hist,
    lookup,
    pointers,
    whole_feed,
)
from tests.processes import Stack

pytestmark = pytest.mark.timeout(120)


# --- 1. resume-contact ------------------------------------------------------------


def test_resume_answers_in_e164_and_request_order_and_the_lookup_says_404(
    web_client: httpx.Client, caller: Caller
) -> None:
    ended = numbers(100, 6)
    created(change(web_client, caller, URL, ended))
    first_end = {p: lookup(web_client, caller, p).json()["endedAt"] for p in ended}
    # Mixed formats and order, with two numbers never ended.
    asked = [ended[3], "+1 509 555 0200", ended[0], "509.555.0201", ended[5]]
    body = created(change(web_client, caller, RESUME, asked))
    assert body == {
        "success": ["+15095550103", "+15095550200", "+15095550100", "+15095550201", "+15095550105"],
        "failure": [],
    }
    for phone in (ended[3], ended[0], ended[5], "+15095550200", "+15095550201"):
        found = assert_problem(lookup(web_client, caller, phone), 404)
        assert found["type"] == "/problems/not-ended"
    for phone in (ended[1], ended[2], ended[4]):
        assert lookup(web_client, caller, phone).json()["endedAt"] == first_end[phone]
    # Never ended: a success with no event.
    assert hist(web_client, caller, "+15095550200") == []
    assert hist(web_client, caller, "+15095550201") == []
    assert [e["type"] for e in hist(web_client, caller, ended[0])] == [ENDED, RESUMED]
    assert len(whole_feed(web_client, caller)) == 6 + 3

    # Ended again: a new endedAt, later than the first, and the lookup finds it.
    created(change(web_client, caller, URL, [ended[0]]))
    again = lookup(web_client, caller, ended[0])
    assert again.status_code == 200
    assert again.json()["endedAt"] > first_end[ended[0]]
    events = hist(web_client, caller, ended[0])
    assert [e["type"] for e in events] == [ENDED, RESUMED, ENDED]
    assert events[-1]["at"] == again.json()["endedAt"]
    assert events[0]["at"] == first_end[ended[0]]


def test_only_changes_are_events(web_client: httpx.Client, caller: Caller) -> None:
    phones = numbers(300, 5)
    created(change(web_client, caller, URL, phones))
    feed = whole_feed(web_client, caller)
    histories = [hist(web_client, caller, p) for p in phones]
    when = lookup(web_client, caller, phones[0]).json()["endedAt"]
    # Ending ended numbers, resuming never-ended ones: successes, and nothing recorded.
    assert created(change(web_client, caller, URL, phones))["success"] == e164(phones)
    never = numbers(400, 3)
    assert created(change(web_client, caller, RESUME, never))["success"] == e164(never)
    assert whole_feed(web_client, caller) == feed
    assert [hist(web_client, caller, p) for p in phones] == histories
    assert all(hist(web_client, caller, p) == [] for p in never)
    assert lookup(web_client, caller, phones[0]).json()["endedAt"] == when
    # Resuming twice: one event.
    created(change(web_client, caller, RESUME, phones[:2]))
    created(change(web_client, caller, RESUME, phones[:2]))
    assert len(whole_feed(web_client, caller)) == len(feed) + 2


@pytest.mark.parametrize("path", [URL, RESUME])
def test_a_key_is_asked_for_before_the_body(client: httpx.Client, path: str) -> None:
    for headers in ({}, {"x-api-key": "not-a-key"}):
        body = {"phoneNumberList": ["nope"], "reason": 5}
        response = client.post(path, json=body, headers=headers)
        assert_problem(response, 401)


def snapshot(client: httpx.Client, caller: Caller, phones: list[str]) -> object:
    """All a client can see of these numbers: the feed, each history and lookup."""
    return (
        whole_feed(client, caller),
        [hist(client, caller, p) for p in phones],
        [(r.status_code, r.json()) for r in (lookup(client, caller, p) for p in phones)],
    )


@pytest.mark.parametrize("path", [URL, RESUME])
def test_a_bad_entry_refuses_the_whole_request(
    web_client: httpx.Client, caller: Caller, path: str
) -> None:
    phones = numbers(500, 4)
    created(change(web_client, caller, URL, phones[:2]))
    before = snapshot(web_client, caller, phones)
    cases: list[tuple[list[Any], list[str]]] = [
        ([*phones, "not a number"], ["/phoneNumberList/4"]),
        ([phones[0], 5095550501, phones[2]], ["/phoneNumberList/1"]),
        # The same number twice, written two ways.
        ([phones[0], phones[3], "+1 509-555-0500"], ["/phoneNumberList/2"]),
        ([], ["/phoneNumberList"]),
        (numbers(600, 51), ["/phoneNumberList"]),
    ]
    for body, expected in cases:
        response = change(web_client, caller, path, body, reason="ignored")
        assert pointers(response) == expected
    assert snapshot(web_client, caller, phones) == before
    # 50 is as many as one request takes.
    assert len(created(change(web_client, caller, path, numbers(600, 50)))["success"]) == 50


# --- 2. reason -----------------------------------------------------------------------

REASONS = [
    "lead replied STOP",
    "spaces  and \"quotes\", 'apostrophes'\nnew lines\r\n\ttabs \\ backslash",
    "Grüße aus 東京 🙂 \u2028",
    "",
    "🙂" * 200,  # 200 characters, 800 bytes of UTF-8
]


@pytest.mark.parametrize("reason", REASONS)
def test_a_reason_is_recorded_with_end_and_resume(
    web_client: httpx.Client, caller: Caller, reason: str
) -> None:
    phones = numbers(700, 2)
    created(change(web_client, caller, URL, phones, reason=reason, unknown={"a": 1}))
    created(change(web_client, caller, RESUME, phones[:1], reason=reason[::-1]))
    events = hist(web_client, caller, phones[0])
    assert [(e["type"], e["reason"]) for e in events] == [(ENDED, reason), (RESUMED, reason[::-1])]
    # A request's numbers may be run by two workers, in either order.
    feed = [(e["phoneNumber"], e["reason"]) for e in whole_feed(web_client, caller)]
    assert sorted(feed[:2]) == [("+15095550700", reason), ("+15095550701", reason)]
    assert feed[2:] == [("+15095550700", reason[::-1])]


def test_no_reason_is_no_reason_key(web_client: httpx.Client, caller: Caller) -> None:
    phone = numbers(800, 1)
    created(change(web_client, caller, URL, phone))
    created(change(web_client, caller, RESUME, phone, other="ignored"))
    events = hist(web_client, caller, phone[0]) + whole_feed(web_client, caller)
    assert len(events) == 4
    assert all(set(e) == EVENT_FIELDS for e in events)


BAD_REASONS: list[object] = [
    "x" * 201,
    "🙂" * 201,
    "a\ud800",  # half a character: JSON can say it, UTF-8 cannot carry it
    5,
    1.5,
    None,
    True,
    False,
    ["why"],
    {"text": "why"},
]


@pytest.mark.parametrize("path", [URL, RESUME])
def test_a_bad_reason_is_a_400_at_its_pointer(
    client: httpx.Client, caller: Caller, path: str
) -> None:
    phones = numbers(900, 2)
    for reason in BAD_REASONS:
        response = change(client, caller, path, phones, reason=reason)
        assert pointers(response) == ["/reason"], reason
    # With a bad number too: both in one answer.
    response = change(client, caller, path, [phones[0], "nope"], reason=7)
    assert sorted(pointers(response)) == ["/phoneNumberList/1", "/reason"]
    response = change(client, caller, path, [], reason=7)
    assert sorted(pointers(response)) == ["/phoneNumberList", "/reason"]
    assert whole_feed(client, caller) == []
    # Nothing of it is kept, so the feed and history still answer.
    assert hist(client, caller, phones[0]) == []


# --- 3. events --------------------------------------------------------------------


def test_events_name_the_key_and_the_request_and_are_read_at_once(
    web_client: httpx.Client, caller: Caller, store: Store
) -> None:
    phones = numbers(1000, 10)
    rid = f"life-{uuid.uuid4().hex}"
    response = change(web_client, caller, URL, phones, request_id=rid, reason="r1")
    assert response.headers["x-request-id"] == rid
    success = created(response)["success"]
    # Read your writes: as soon as the 201 is here, so is every event.
    feed = whole_feed(web_client, caller)
    assert success == e164(phones)
    # In the feed in the order they were written, which two workers may change.
    assert sorted(e["phoneNumber"] for e in feed) == success
    for event in feed:
        assert set(event) == EVENT_FIELDS | {"reason"}
        assert event["type"] == ENDED
        assert event["keyId"] == caller.key.id
        assert event["keyId"].startswith("key_")
        assert event["requestId"] == rid
        assert event["reason"] == "r1"
        found = lookup(web_client, caller, event["phoneNumber"]).json()
        assert event["at"] == found["endedAt"]
        assert hist(web_client, caller, event["phoneNumber"]) == [event]
    ids = [EventId.parse(e["id"]) for e in feed]
    assert ids == sorted(set(ids))

    # Without an X-Request-ID, the one the service gave it, as echoed.
    response = change(web_client, caller, RESUME, phones[:3])
    given = response.headers["x-request-id"]
    created(response)
    resumed = whole_feed(web_client, caller, after=feed[-1]["id"])
    assert sorted((e["phoneNumber"], e["type"], e["requestId"]) for e in resumed) == [
        (phone, RESUMED, given) for phone in e164(phones[:3])
    ]
    # Another key of the same campaign is named as such.
    other = new_caller(store, caller.key.scope.company, caller.key.scope.campaign)
    created(change(web_client, other, URL, phones[:1]))
    (last,) = whole_feed(web_client, caller, after=resumed[-1]["id"])
    assert last["keyId"] == other.key.id != caller.key.id


# --- 4. a mark and its event, together, whatever is killed ---------------------------


@dataclass
class Sent:
    kind: str
    request_id: str
    sent_ms: int  # the wall clock when it was sent: a change after it has a later id
    success: list[str]
    failure: list[str]


class Churn:
    """Threads ending and resuming random sets of one campaign's numbers until stopped,
    each request with an X-Request-ID of its own; every answer is kept."""

    def __init__(self, stack: Stack, caller: Caller, pool: list[str], threads: int) -> None:
        self.stack = stack
        self.caller = caller
        self.pool = pool
        self.sent: list[Sent] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, seed: int) -> None:
        chance = random.Random(seed)  # noqa: S311 (a test's choices, not a secret)
        with httpx.Client(base_url=self.stack.base, timeout=30, verify=TLS) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                kind = chance.choice((ENDED, RESUMED))
                phones = chance.sample(self.pool, chance.randint(1, 20))
                rid = f"churn-{seed}-{n}"
                sent_ms = time.time_ns() // 1_000_000
                try:
                    response = change(
                        http, self.caller, URL if kind == ENDED else RESUME, phones, request_id=rid
                    )
                except httpx.HTTPError:
                    continue  # the web could not answer: nothing is claimed
                body = response.json() if response.status_code == 201 else {}
                with self.lock:
                    sent = Sent(
                        kind, rid, sent_ms, body.get("success", []), body.get("failure", [])
                    )
                    self.sent.append(sent)

    def successes_since(self, count: int) -> int:
        with self.lock:
            return sum(len(sent.success) for sent in self.sent[count:])

    def failures_since(self, count: int) -> int:
        with self.lock:
            return sum(len(sent.failure) for sent in self.sent[count:])

    def mark(self) -> int:
        with self.lock:
            return len(self.sent)

    def finish(self) -> list[Sent]:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()
        return self.sent


def check_store(client: redis.Redis, scope: Scope) -> dict[str, list[Event]]:
    """The invariant, on one snapshot of the store: every history line is a feed event
    and every feed event a history line; the state is the last event; a number's
    events alternate from `ended`. Returns each number's history."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(ended_key(scope))
        pipe.xrange(events_key(scope))
        marks, entries = pipe.execute()
    feed = {event.id: event for entry, fields in entries for event in entry_events(entry, fields)}
    histories = {phone: history(phone, value) for phone, value in marks.items()}
    lines = set()
    for phone, events in histories.items():
        assert events, (phone, marks[phone])
        for event in events:
            assert feed.get(event.id) == event, (phone, event)
            lines.add(event.id)
        assert [e.kind for e in events] == [(ENDED, RESUMED)[i % 2] for i in range(len(events))]
        assert [e.id for e in events] == sorted({e.id for e in events})
        assert marks[phone][0] == CODES[events[-1].kind]
    assert set(feed) == lines, "feed events without their mark"
    return histories


def test_a_mark_and_its_event_survive_the_worker_and_the_store_killed(tmp_path: Path) -> None:
    with Stack(tmp_path, settings={"ENDCONTACT_RATE_LIMIT": "0"}) as stack:
        _killed_mid_writes(stack.start())


def _killed_mid_writes(stack: Stack) -> None:
    caller = new_caller(Store(stack.client))
    scope = caller.key.scope
    churn = Churn(stack, caller, e164(numbers(100, 40)), threads=4)
    try:
        # The worker SIGKILLed in the middle of writing: some events are in already.
        wait_until(lambda: stack.client.xlen(events_key(scope)) >= 20, 30, "first events")
        assert stack.worker is not None
        stack.worker.send_signal(signal.SIGKILL)
        assert stack.worker.wait() == -signal.SIGKILL
        check_store(stack.client, scope)
        # With no worker, what was in flight and what is sent now fails at its deadline.
        # Not left to chance: a new worker can be ready within the deadline, and once in
        # CI one killed between two batches was, and no number failed.
        since = churn.mark()
        wait_until(lambda: churn.failures_since(since), 30, "a failure with no worker")
        stack.start_worker()
        since = churn.mark()
        wait_until(lambda: churn.successes_since(since) >= 50, 30, "the new worker writing")
        check_store(stack.client, scope)

        # The store SIGKILLed mid-writes, and started again from its append-only file.
        assert stack.redis is not None
        stack.redis.send_signal(signal.SIGKILL)
        stack.redis.wait()
        stack.start_redis()
        since = churn.mark()
        wait_until(lambda: churn.successes_since(since) >= 50, 60, "writing again", interval=0.2)
    finally:
        sent = churn.finish()

    histories = check_store(stack.client, scope)
    assert sum(len(s.success) for s in sent) > 200
    # The kills came with requests in flight: some of their numbers failed.
    assert any(s.failure for s in sent)
    for request in sent:
        for phone in request.success:
            events = histories.get(phone, [])
            mine = [e for e in events if e.request_id == request.request_id]
            assert len(mine) <= 1
            assert all(e.kind == request.kind for e in mine)
            now = events[-1].kind if events else RESUMED
            # In the state it asked for, unless a later request changed it since.
            if now != request.kind:
                assert events[-1].id.ms >= request.sent_ms, (phone, request)
    # What a client reads is the same: the feed through the API is the stream.
    with httpx.Client(base_url=stack.base, timeout=30, verify=TLS) as http:
        feed = [as_event(e) for e in whole_feed(http, caller)]
    assert sorted(feed, key=lambda e: e.id) == feed
    assert sorted(feed, key=lambda e: e.id) == sorted(
        (e for events in histories.values() for e in events), key=lambda e: e.id
    )
