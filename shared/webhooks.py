"""Webhooks: the endpoints a campaign's changes are pushed to, and how they are stored.

Keys (on the store, with the marks: a webhook and its pending deliveries must last):
  ec:{hooks}:webhook:<id>      hash: id, company, campaign, url, events, secret,
                               created_at[, created_by][, previous_secret,
                               previous_until][, disabled_at] (created_by: the id of
                               the key that created it; none on webhooks older than it)
  ec:{hooks}:webhooks:<feed name>
                               set: the campaign's webhook ids
  ec:{hooks}:by-key:<feed name>:<key id>
                               set: the ids of the webhooks that key created (a key has
                               one campaign), and REVOKED once the key is revoked, so
                               that revoking it finds them without a scan
  ec:{hooks}:log:<id>          list: the latest LOG_LENGTH delivery attempts, newest
                               first, each a JSON object {eventId, attempt, at,
                               status | error, durationMs} (written by the deliveries)
  ec:{hooks}:cursors           hash: webhook id -> its Cursor in its campaign's feed,
                               for every enabled webhook (the deliveries' registry)
The campaign's feed record (shared.keyspace.feed_record_key) counts the events ever
added to its feed (`added`): with a Cursor's `passed`, what the webhook has yet to pass.

Every key of webhooks and deliveries (shared.deliveries) carries the hash tag {hooks}
(HOOKS): on a Valkey Cluster they live in one slot, so the scripts that take them
together, whatever the campaign (create, disable, and the deliveries' claim, record
and commit, which build key names from prefixes), run on one node. They are few beside
the marks (at most MAX_PER_CAMPAIGN webhooks a campaign, and their pending deliveries).
A script never touches a campaign's keys with them: those carry the campaign's tag.

A secret is stored as is (it signs every delivery; a hash could not) and never leaves
the service except once, in the answer that creates or rotates it. After a rotation the
previous secret signs too, for ROTATION_OVERLAP_MS, so receivers can switch over.

This module holds what a webhook is and where it is kept; the web's and the operator's
operations on them are shared.webhook_store.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.apikeys import Scope
from shared.events import ENDED, RESUMED, iso

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
# Standard Webhooks asks for 24 to 64 random bytes.
_SECRET_BYTES = 32
ROTATION_OVERLAP_MS = 24 * 3600 * 1000
EVENT_TYPES = (ENDED, RESUMED)
# Webhooks a campaign may have, disabled ones included: each change is sent to every
# one, so a campaign's changes cost at most this many deliveries each.
MAX_PER_CAMPAIGN = 10
# Attempts kept per webhook, for a client debugging its receiver.
LOG_LENGTH = 100


# The prefix of every webhook and delivery key: one hash tag, one slot on a Cluster.
HOOKS = "ec:{hooks}:"


def webhook_key(webhook_id: str) -> str:
    return f"{HOOKS}webhook:{webhook_id}"


def campaign_webhooks_key(feed: str) -> str:
    """`feed` is the campaign's feed name (shared.keyspace.feed_name)."""
    return f"{HOOKS}webhooks:{feed}"


def key_webhooks_key(feed: str, key_id: str) -> str:
    """The webhooks the key `key_id` created in its campaign `feed`."""
    return f"{HOOKS}by-key:{feed}:{key_id}"


# In a key's set once the key is revoked: CREATE_SCRIPT then refuses a webhook by it
# (a creation admitted just before the revoke, writing after it). Never a webhook id.
REVOKED = "revoked"
_ID = re.compile(r"wh_[0-9a-f]{16}")


def looks_like_id(webhook_id: str) -> bool:
    """Shaped as new_id makes them: anything else is no webhook, without a lookup."""
    return _ID.fullmatch(webhook_id) is not None


def log_key(webhook_id: str) -> str:
    return f"{HOOKS}log:{webhook_id}"


CURSORS = f"{HOOKS}cursors"


def feed_stream_key(feed: str) -> str:
    """The campaign's feed (shared.keyspace.events_key), by its feed name, tagged as
    the campaign's keys are (shared.keyspace.tag)."""
    return "ec:events:{" + feed + "}"


@dataclass(frozen=True)
class Cursor:
    """Where a webhook stands in its campaign's feed: every event of the entries up to
    `entry` (a stream id) was delivered, given up or scheduled for a retry, and
    `passed` counts the events the feed's ADDED count held at that point."""

    entry: str
    passed: int
    feed: str

    def __str__(self) -> str:
        # Feed names are percent-encoded (shared.keyspace.feed_name): no spaces in them.
        return f"{self.entry} {self.passed} {self.feed}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        entry, passed, feed = value.split(" ", 2)
        return cls(entry, int(passed), feed)


def pending_events(cursors: Mapping[Any, Any], added: Mapping[Any, Any]) -> int:
    """Events in the feeds that the webhooks following them have yet to pass; `added`
    by feed name, None (or missing) for a feed with no event yet."""
    total = 0
    for value in cursors.values():
        cursor = Cursor.parse(str(value))
        total += max(0, int(added.get(cursor.feed) or 0) - cursor.passed)
    return total


def new_id() -> str:
    return "wh_" + secrets.token_hex(8)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Webhook:
    id: str
    scope: Scope
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: str
    created_by: str | None  # the creating key's id; None: created before it was kept
    previous_secret: str | None = None
    previous_until: int | None = None  # ms since the epoch
    disabled_at: str | None = None

    def secrets_at(self, ms: int) -> list[str]:
        """The secrets that sign a delivery made at `ms`: the current one, and the
        previous one within a day of a rotation."""
        signing = [self.secret]
        if self.previous_secret and self.previous_until and ms < self.previous_until:
            signing.append(self.previous_secret)
        return signing

    def to_json(self) -> dict[str, Any]:
        """What a client may see of it: never a secret."""
        body: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "createdBy": self.created_by,
            "createdAt": self.created_at,
        }
        if self.disabled_at is not None:
            body["disabledAt"] = self.disabled_at
        return body

    def record(self) -> dict[str, str]:
        fields = {
            "id": self.id,
            "company": self.scope.company,
            "campaign": self.scope.campaign,
            "url": self.url,
            "events": ",".join(self.events),
            "secret": self.secret,
            "created_at": self.created_at,
        }
        if self.created_by is not None:
            fields["created_by"] = self.created_by
        if self.previous_secret is not None and self.previous_until is not None:
            fields["previous_secret"] = self.previous_secret
            fields["previous_until"] = str(self.previous_until)
        if self.disabled_at is not None:
            fields["disabled_at"] = self.disabled_at
        return fields


def from_record(raw: Mapping[Any, Any]) -> Webhook | None:
    if not raw:
        return None
    fields = {str(name): str(value) for name, value in raw.items()}
    until = fields.get("previous_until")
    return Webhook(
        id=fields["id"],
        scope=Scope(fields["company"], fields["campaign"]),
        url=fields["url"],
        events=tuple(kind for kind in fields["events"].split(",") if kind),
        secret=fields["secret"],
        created_at=fields["created_at"],
        created_by=fields.get("created_by") or None,
        previous_secret=fields.get("previous_secret") or None,
        previous_until=int(until) if until else None,
        disabled_at=fields.get("disabled_at") or None,
    )


def new_webhook(scope: Scope, url: str, events: tuple[str, ...], created_by: str) -> Webhook:
    """A webhook the key `created_by` (its id) creates for its campaign `scope`."""
    return Webhook(new_id(), scope, url, events, new_secret(), iso(now_ms()), created_by)
