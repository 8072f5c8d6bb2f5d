"""Webhook deliveries: how each change reaches a campaign's webhooks, at least once.

A first attempt costs the store no write of its own: the deliveries follow the
campaign's feed (the stream of its changes, kept for the events' retention), each
webhook from its cursor (ec:{hooks}:cursors, shared.webhooks), which moves past a feed
entry once each of its events was delivered, given up or scheduled for a retry. One
worker's dispatcher at a time follows a webhook (a lease); after a crash, the next one
sends again what the cursor had not passed, with the same webhook-id. An attempt that
fails is scheduled for a retry before the cursor passes it. Keys (on the store, with
the AOF: a delivery pending or being retried survives a worker SIGKILL and a restart
of the store; all under the hash tag {hooks}, one slot on a Cluster, with the webhooks
(shared.webhooks), since the scripts take them together and build their names):
  ec:{hooks}:lease:<webhook id>  string: the dispatcher that follows the webhook, for
                                 LEASE_MS unless renewed
  ec:{hooks}:dispatchers         sorted set: dispatcher name -> when it last said it
                                 was alive (ms, the store's clock): how many share the
                                 webhooks
  ec:{hooks}:due:<webhook id>    sorted set: the webhook's retries, event id -> when
                                 its next attempt is due (ms, the store's clock); while
                                 one is in flight, when the lease of the worker sending
                                 it ends
  ec:{hooks}:due                 sorted set: webhook id -> the earliest score of its own
                                 set (so a claim looks at webhooks, not at deliveries:
                                 a backlog of one receiver costs the others nothing)
  ec:{hooks}:pending             counter: retries in all those sets (with the events
                                 not yet passed, the gauge)
  ec:{hooks}:delivery:<webhook id>:<event id>
                                 hash: attempts (made so far), body (the payload, the
                                 same bytes on every attempt, kept apart from the feed,
                                 whose retention may be shorter than the schedule)
  ec:{hooks}:log:<webhook id>    list: its last attempts, newest first (shared.webhooks)

worker/deliveries/ does the work; this module holds what is pure: key names, the
payload, the signature headers, and what an answer means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook as Signer

from shared.events import Event, iso
from shared.webhooks import HOOKS

DUE = f"{HOOKS}due"
DISPATCHERS = f"{HOOKS}dispatchers"
PENDING = f"{HOOKS}pending"
DELIVERY_PREFIX = f"{HOOKS}delivery:"

DELIVERED = "delivered"
RETRY = "retry"
GAVE_UP = "gave_up"
DISABLED = "disabled"
OUTCOMES = (DELIVERED, RETRY, GAVE_UP, DISABLED)
# The receiver's way to say "never again" (Standard Webhooks): the endpoint is disabled.
GONE = 410


def due_key(webhook_id: str) -> str:
    return f"{DUE}:{webhook_id}"


def lease_key(webhook_id: str) -> str:
    return f"{HOOKS}lease:{webhook_id}"


def fair_share(webhooks: int, dispatchers: int) -> int:
    """How many webhooks one of `dispatchers` live dispatchers follows at most."""
    return -(-webhooks // max(1, dispatchers))


def delivery_key(webhook_id: str, event_id: str) -> str:
    return f"{DELIVERY_PREFIX}{webhook_id}:{event_id}"


def message_id(webhook_id: str, event_id: str) -> str:
    """The webhook-id header: the same on every attempt of one event to one endpoint,
    so a receiver can drop the duplicates that at-least-once implies."""
    return f"msg_{webhook_id}_{event_id}"


def payload(event: Event) -> str:
    """The body: the feed's event, typed and timed as Standard Webhooks has it. The
    timestamp is the event's own, so every attempt sends the same bytes."""
    body = {"type": f"end-contact.{event.kind}", "timestamp": event.at, "data": event.to_json()}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def headers(msg_id: str, timestamp: int, body: str, secrets: list[str]) -> dict[str, str]:
    """The signed headers of one attempt at `timestamp` (unix seconds): one v1
    signature per secret, space-separated (both secrets in a rotation's overlap)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    signatures = " ".join(Signer(secret).sign(msg_id, moment, body) for secret in secrets)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


@dataclass(frozen=True)
class Attempt:
    """What one attempt got: a status code, or an error (timeout, refused address...)."""

    status: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def outcome(attempt: Attempt, attempts_made: int, schedule: tuple[int, ...]) -> str:
    """What follows an attempt, the `attempts_made`-th (from 1): any 2xx is delivered,
    410 disables the endpoint, anything else is retried while the schedule lasts."""
    if attempt.delivered:
        return DELIVERED
    if attempt.status == GONE:
        return DISABLED
    return RETRY if attempts_made <= len(schedule) else GAVE_UP


def retry_delay(attempts_made: int, schedule: tuple[int, ...]) -> int:
    """Seconds before the next attempt, after `attempts_made` (from 1) failed ones."""
    return schedule[attempts_made - 1]


def log_entry(event_id: str, number: int, at_ms: int, attempt: Attempt, result: str) -> str:
    """One line of the attempt log: what a user needs to debug their receiver."""
    entry: dict[str, object] = {"eventId": event_id, "attempt": number, "at": iso(at_ms)}
    if attempt.status is not None:
        entry["status"] = attempt.status
    else:
        entry["error"] = attempt.error
    entry["durationMs"] = attempt.duration_ms
    entry["outcome"] = result
    return json.dumps(entry, separators=(",", ":"))
