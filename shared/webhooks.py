"""Webhooks: the endpoints a campaign's changes are pushed to, and how they are stored.

Keys (on the store, with the marks: a webhook and its pending deliveries must last):
  ec:webhook:<id>              hash: id, company, campaign, url, events, secret,
                               created_at[, created_by][, previous_secret,
                               previous_until][, disabled_at] (created_by: the id of
                               the key that created it; none on webhooks older than it)
  ec:webhooks:<feed name>      set: the campaign's webhook ids (the write script reads
                               it to know whether a change has somewhere to go)
  ec:webhooks-by-key:<feed name>:<key id>
                               set: the ids of the webhooks that key created (a key has
                               one campaign), and REVOKED once the key is revoked, so
                               that revoking it finds them without a scan
  ec:webhook-log:<id>          list: the latest LOG_LENGTH delivery attempts, newest
                               first, each a JSON object {eventId, attempt, at,
                               status | error, durationMs} (written by the deliveries)
  ec:webhook-cursors           hash: webhook id -> its Cursor in its campaign's feed,
                               for every enabled webhook (the deliveries' registry)
  ec:deliveries:added          hash: feed name -> events written to the feed while
                               the campaign had a webhook (the write script counts
                               them; with a Cursor's `passed`, the pending gauge)

A secret is stored as is (it signs every delivery; a hash could not) and never leaves
the service except once, in the answer that creates or rotates it. After a rotation the
previous secret signs too, for ROTATION_OVERLAP_MS, so receivers can switch over.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from shared import lua
from shared.apikeys import Scope
from shared.clock import SERVER_TIME
from shared.deliveries import DUE, due_key
from shared.events import ENDED, RESUMED, iso

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    import redis.asyncio.client
    import redis.client

log = logging.getLogger("endcontact.webhooks")

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


def webhook_key(webhook_id: str) -> str:
    return f"ec:webhook:{webhook_id}"


def campaign_webhooks_key(feed: str) -> str:
    """`feed` is the campaign's feed name (shared.store.feed_name)."""
    return f"ec:webhooks:{feed}"


def key_webhooks_key(feed: str, key_id: str) -> str:
    """The webhooks the key `key_id` created in its campaign `feed`. Named after the
    campaign, as the campaign's other keys are: when the store moves to a Valkey Cluster
    and a campaign's keys share a hash tag, the scripts that touch this one with them
    (CREATE_SCRIPT) stay in one slot."""
    return f"ec:webhooks-by-key:{feed}:{key_id}"


# In a key's set once the key is revoked: CREATE_SCRIPT then refuses a webhook by it
# (a creation admitted just before the revoke, writing after it). Never a webhook id.
REVOKED = "revoked"
_ID = re.compile(r"wh_[0-9a-f]{16}")


def looks_like_id(webhook_id: str) -> bool:
    """Shaped as new_id makes them: anything else is no webhook, without a lookup."""
    return _ID.fullmatch(webhook_id) is not None


def log_key(webhook_id: str) -> str:
    return f"ec:webhook-log:{webhook_id}"


CURSORS = "ec:webhook-cursors"
ADDED = "ec:deliveries:added"


def feed_stream_key(feed: str) -> str:
    """The campaign's feed (shared.store.events_key), by its feed name."""
    return f"ec:events:{feed}"


@dataclass(frozen=True)
class Cursor:
    """Where a webhook stands in its campaign's feed: every event of the entries up to
    `entry` (a stream id) was delivered, given up or scheduled for a retry, and
    `passed` counts the events the feed's ADDED count held at that point."""

    entry: str
    passed: int
    feed: str

    def __str__(self) -> str:
        # Feed names are percent-encoded (shared.store.feed_name): no spaces in them.
        return f"{self.entry} {self.passed} {self.feed}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        entry, passed, feed = value.split(" ", 2)
        return cls(entry, int(passed), feed)


def pending_events(cursors: Mapping[Any, Any], added: Mapping[Any, Any]) -> int:
    """Events in the feeds that the webhooks following them have yet to pass."""
    total = 0
    for value in cursors.values():
        cursor = Cursor.parse(str(value))
        total += max(0, int(added.get(cursor.feed, 0)) - cursor.passed)
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


class Creation(Enum):
    CREATED = 1
    FULL = 0  # the campaign has MAX_PER_CAMPAIGN
    REVOKED = -1  # its key was revoked since it was admitted


# A webhook created unless its campaign has its fill or its key was revoked.
CREATE_SCRIPT = lua.load("shared", "webhooks_create")


def create_call(webhook: Webhook, feed: str) -> tuple[list[str], list[str | int]]:
    """CREATE_SCRIPT's keys and arguments for `webhook` in the campaign `feed`."""
    if webhook.created_by is None:
        raise ValueError("a new webhook records the key that creates it")
    fields = [item for pair in webhook.record().items() for item in pair]
    keys = [
        webhook_key(webhook.id),
        campaign_webhooks_key(feed),
        CURSORS,
        feed_stream_key(feed),
        ADDED,
        key_webhooks_key(feed, webhook.created_by),
    ]
    return keys, [MAX_PER_CAMPAIGN, webhook.id, feed, REVOKED, *fields]


def queue_delete(
    pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline, webhook: Webhook, feed: str
) -> None:
    """Queue the deletion of `webhook` of the campaign `feed`: its record, its log, its
    place in the campaign's and its key's sets, its cursor (the caller's MULTI applies
    them all or none). Deliveries still due find no webhook and are dropped by the
    dispatcher."""
    pipe.delete(webhook_key(webhook.id), log_key(webhook.id))
    pipe.srem(campaign_webhooks_key(feed), webhook.id)
    if webhook.created_by is not None:
        pipe.srem(key_webhooks_key(feed, webhook.created_by), webhook.id)
    pipe.hdel(CURSORS, webhook.id)


# Disables webhooks as a receiver's 410 does.
DISABLE_SCRIPT = lua.load("shared", "webhooks_disable")


def disable_call(webhook_ids: list[str], at: str) -> tuple[list[str], list[str]]:
    """DISABLE_SCRIPT's keys and arguments: these webhooks disabled at `at`."""
    keys = [CURSORS, DUE]
    for webhook_id in webhook_ids:
        keys += [webhook_key(webhook_id), due_key(webhook_id)]
    return keys, [at, *webhook_ids]


def in_scope(raw: Mapping[Any, Any], scope: Scope) -> Webhook | None:
    """A stored record as a webhook, if there is one and it is this campaign's."""
    found = from_record(raw)
    return found if found is not None and found.scope == scope else None


def listing(records: list[Mapping[Any, Any]]) -> list[Webhook]:
    """Stored records as webhooks, oldest first (those deleted meanwhile left out)."""
    found = [hook for hook in map(from_record, records) if hook is not None]
    return sorted(found, key=lambda hook: (hook.created_at, hook.id))


# A new secret, the current one kept signing for a while on the store's clock.
ROTATE_SCRIPT = SERVER_TIME + lua.load("shared", "webhooks_rotate")


@dataclass(frozen=True)
class Rotated:
    secret: str
    previous_until: int  # ms since the epoch: when the previous secret stops signing


def _parse_attempts(raw: list[Any]) -> list[dict[str, Any]]:
    attempts = []
    for entry in raw:
        try:
            attempt = json.loads(entry)
        except ValueError:
            attempt = None
        if isinstance(attempt, dict):
            attempts.append(attempt)
        else:
            # Written by us, so never expected; one bad entry must not hide the rest.
            log.warning("unreadable webhook log entry")
    return attempts


class AsyncWebhooks:
    """The web's operations on a campaign's webhooks. `feed` names the campaign's
    keys (shared.store.feed_name), so this module need not know the store's layout."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._create = client.register_script(CREATE_SCRIPT)
        self._rotate = client.register_script(ROTATE_SCRIPT)

    async def create(self, webhook: Webhook, feed: str) -> Creation:
        """Store `webhook`, unless the campaign already has MAX_PER_CAMPAIGN or its
        key was revoked (then nothing is stored)."""
        keys, args = create_call(webhook, feed)
        return Creation(int(await self._create(keys=keys, args=args)))

    async def get(self, webhook_id: str, scope: Scope) -> Webhook | None:
        """The webhook, if it exists and is this campaign's."""
        if not looks_like_id(webhook_id):
            return None
        return in_scope(await self._redis.hgetall(webhook_key(webhook_id)), scope)

    async def of_feed(self, feed: str) -> list[Webhook]:
        ids = await self._redis.smembers(campaign_webhooks_key(feed))
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(webhook_key(str(webhook_id)))
            return listing(await pipe.execute())

    async def delete(self, webhook: Webhook, feed: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            queue_delete(pipe, webhook, feed)
            await pipe.execute()

    async def rotate(self, webhook: Webhook) -> Rotated | None:
        """A new secret; the current one keeps signing for ROTATION_OVERLAP_MS. None
        if the webhook is gone."""
        secret = new_secret()
        until = await self._rotate(
            keys=[webhook_key(webhook.id)], args=[secret, ROTATION_OVERLAP_MS]
        )
        return Rotated(secret, int(until)) if until else None

    async def attempts(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        """The latest `limit` delivery attempts, newest first, as the deliveries wrote them."""
        return _parse_attempts(await self._redis.lrange(log_key(webhook_id), 0, limit - 1))


class Webhooks:
    """The operator's operations (the CLI's), on a synchronous client: those the web
    has too are the same reads and writes (get, of_feed, delete), and a key's revoke."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._disable = client.register_script(DISABLE_SCRIPT)

    def get(self, webhook_id: str, scope: Scope) -> Webhook | None:
        """The webhook, if it exists and is this campaign's."""
        if not looks_like_id(webhook_id):
            return None
        return in_scope(self._redis.hgetall(webhook_key(webhook_id)), scope)

    def of_feed(self, feed: str) -> list[Webhook]:
        return self._records(self._redis.smembers(campaign_webhooks_key(feed)))

    def delete(self, webhook: Webhook, feed: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            queue_delete(pipe, webhook, feed)
            pipe.execute()

    def key_revoked(self, key_id: str, feed: str, *, disable: bool) -> list[Webhook]:
        """After the key `key_id` of the campaign `feed` was revoked: no webhook may be
        created by it from now on, and those it created are disabled (`disable`) or
        kept. Returns those disabled now (or, kept, all of them), oldest first.
        Webhooks created before keys were recorded are not known to be its."""
        index = key_webhooks_key(feed, key_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(index, REVOKED)
            pipe.smembers(index)
            members = pipe.execute()[1]
        # From here on its set can only shrink (CREATE_SCRIPT refuses it).
        ids = sorted(str(member) for member in members if str(member) != REVOKED)
        if disable and ids:
            keys, args = disable_call(ids, iso(now_ms()))
            ids = [str(hook) for hook in self._disable(keys=keys, args=args)]
        return self._records(ids)

    def _records(self, ids: Iterable[Any]) -> list[Webhook]:
        with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(webhook_key(str(webhook_id)))
            return listing(pipe.execute())
