"""The pure parts of webhook deliveries: payload, signature headers, outcomes, the log,
and the dispatcher's reading of its claim script's reply."""

from __future__ import annotations

import errno
import http.client
import json
import ssl
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from shared import deliveries
from shared.apikeys import Scope
from shared.deliveries import Attempt
from shared.events import Event, EventId
from shared.webhooks import new_secret, new_webhook
from worker.deliveries.leases import LEASE_MARGIN, LEASE_MS, may_start
from worker.deliveries.retries import parse_claim
from worker.deliveries.runners import InFlight
from worker.senders import ATTEMPT_TIMEOUT, error_of

SCHEDULE = (5, 300, 1800)
EVENT = Event(EventId(1764452463512, 0, 2), "ended", "+15095551234", "key_1", "req_1", "é")


def test_the_payload_is_the_feeds_event_typed_and_timed() -> None:
    body = json.loads(deliveries.payload(EVENT))
    assert body == {
        "type": "end-contact.ended",
        "timestamp": "2025-11-29T21:41:03.512Z",
        "data": EVENT.to_json(),
    }


def test_headers_verify_with_the_secret_and_carry_the_id() -> None:
    secret = new_secret()
    body = deliveries.payload(EVENT)
    now = int(time.time())
    headers = deliveries.headers("msg_wh_1_2-0-0", now, body, [secret])
    assert headers["webhook-id"] == "msg_wh_1_2-0-0"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["content-type"] == "application/json"
    assert Verifier(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Verifier(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body.replace("ended", "resumed"), headers)


def test_two_secrets_sign_twice_and_each_verifies() -> None:
    old, new = new_secret(), new_secret()
    body = deliveries.payload(EVENT)
    headers = deliveries.headers("msg_x", int(time.time()), body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Verifier(old).verify(body, headers) == Verifier(new).verify(body, headers)


@pytest.mark.parametrize(
    ("status", "made", "expected"),
    [
        (200, 1, "delivered"),
        (204, 4, "delivered"),
        (299, 1, "delivered"),
        (410, 1, "disabled"),
        (410, 4, "disabled"),
        (500, 1, "retry"),
        (301, 1, "retry"),
        (404, 3, "retry"),
        (500, 4, "gave_up"),
        (None, 3, "retry"),
        (None, 4, "gave_up"),
    ],
)
def test_outcome(status: int | None, made: int, expected: str) -> None:
    attempt = Attempt(status, None if status else "timeout (10 s)", 12)
    assert deliveries.outcome(attempt, made, SCHEDULE) == expected


def test_retries_follow_the_schedule() -> None:
    assert [deliveries.retry_delay(made, SCHEDULE) for made in (1, 2, 3)] == [5, 300, 1800]


def test_a_log_entry_has_a_status_or_an_error() -> None:
    ok = Attempt(200, None, 7)
    delivered = json.loads(deliveries.log_entry("1-0-0", 1, 1764452463512, ok, "delivered"))
    assert delivered == {
        "eventId": "1-0-0",
        "attempt": 1,
        "at": "2025-11-29T21:41:03.512Z",
        "status": 200,
        "durationMs": 7,
        "outcome": "delivered",
    }
    late = Attempt(None, "timeout (10 s)", 10000)
    failed = json.loads(deliveries.log_entry("1-0-0", 2, 0, late, "retry"))
    assert failed["error"] == "timeout (10 s)"
    assert "status" not in failed


def test_key_names() -> None:
    # One hash tag for all of them: one slot on a Cluster (shared.webhooks).
    assert deliveries.due_key("wh_1") == "ec:{hooks}:due:wh_1"
    assert deliveries.delivery_key("wh_1", "2-0-0") == "ec:{hooks}:delivery:wh_1:2-0-0"
    assert deliveries.lease_key("wh_1") == "ec:{hooks}:lease:wh_1"
    assert (deliveries.DUE, deliveries.PENDING, deliveries.DISPATCHERS) == (
        "ec:{hooks}:due",
        "ec:{hooks}:pending",
        "ec:{hooks}:dispatchers",
    )
    assert deliveries.message_id("wh_1", "2-0-0") == "msg_wh_1_2-0-0"


def test_a_claim_reply_becomes_jobs_of_live_webhooks() -> None:
    hook = new_webhook(Scope("c", "k"), "https://example.com/", ("ended",), "key_0123abcd4567ef89")
    flat = [item for pair in hook.record().items() for item in pair]
    claimed = [hook.id, "1-0-0", "0", "{}", hook.id, "1-0-1", "2", "[]"]
    claimed += ["wh_gone", "1-0-0", "0", "{}"]
    jobs, dropped = parse_claim([claimed, [hook.id, flat], 3])
    assert dropped == 3
    assert [(job.webhook, job.event_id, job.attempts, job.body) for job in jobs] == [
        (hook, "1-0-0", 0, "{}"),
        (hook, "1-0-1", 2, "[]"),
    ]


def test_in_flight_counts_per_webhook_and_per_campaign() -> None:
    mine, theirs = Scope("acme", "spring"), Scope("acme", "fall")
    a = new_webhook(mine, "https://a.example/", ("ended",), "key_a")
    b = new_webhook(mine, "https://b/", (), "key_a")
    c = new_webhook(theirs, "https://c.example/", ("ended",), "key_c")
    flight = InFlight()
    for hook in (a, a, a, b, c):
        flight.add(hook)
    assert flight.total == 5
    assert (flight.of_campaign(mine), flight.of_campaign(theirs)) == (4, 1)
    assert flight.claim_args() == [
        3,
        a.id,
        3,
        b.id,
        1,
        c.id,
        1,
        "acme",
        "spring",
        4,
        "acme",
        "fall",
        1,
    ]
    for hook in (b, a, c):
        flight.remove(hook)
    assert flight.claim_args() == [1, a.id, 2, "acme", "spring", 2]
    assert (flight.total, flight.of_campaign(theirs)) == (2, 0)


def test_an_attempt_starts_only_under_a_lease_that_outlasts_it() -> None:
    now = 1000.0
    assert may_start(now + LEASE_MS / 1000, now)
    assert may_start(now + ATTEMPT_TIMEOUT + LEASE_MARGIN, now)
    assert not may_start(now + ATTEMPT_TIMEOUT + LEASE_MARGIN - 0.001, now)


@pytest.mark.parametrize(
    ("raised", "logged"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connection reset"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "connection failed (EHOSTUNREACH)"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "connection failed (EPIPE)"),
        (OSError("no errno"), "connection failed"),
        (TimeoutError(), f"timeout ({ATTEMPT_TIMEOUT:g} s)"),
        (ssl.SSLCertVerificationError(), "TLS certificate refused"),
        (ssl.SSLError(), "TLS failed"),
        # Closed without an answer: a ConnectionResetError too, but said as what it is.
        (http.client.RemoteDisconnected("closed"), "HTTP error (RemoteDisconnected)"),
    ],
)
def test_an_attempt_without_a_status_logs_what_happened(raised: OSError, logged: str) -> None:
    assert error_of(raised) == logged
