"""The operations on webhooks in the store: the web's (AsyncWebhooks: create, list,
delete, rotate a secret, read the attempts) and the operator's (Webhooks, the CLI's:
the same creation, reads and deletes, and what a key's revoke does to the webhooks it created),
with the scripts they run. What a webhook is and its keys: shared.webhooks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from shared import lua
from shared.apikeys import Scope
from shared.clock import SERVER_TIME
from shared.deliveries import DUE, due_key
from shared.events import iso
from shared.keyspace import feed_record_key
from shared.webhooks import (
    CURSORS,
    MAX_PER_CAMPAIGN,
    REVOKED,
    ROTATION_OVERLAP_MS,
    Cursor,
    Webhook,
    campaign_webhooks_key,
    feed_stream_key,
    from_record,
    key_webhooks_key,
    log_key,
    looks_like_id,
    new_secret,
    now_ms,
    webhook_key,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

log = logging.getLogger("endcontact.webhooks")


class Creation(Enum):
    CREATED = 1
    FULL = 0  # the campaign has MAX_PER_CAMPAIGN
    REVOKED = -1  # its key was revoked since it was admitted


# Where a new webhook starts: the feed's end, read in the campaign's slot.
FEED_END_SCRIPT = lua.load("shared", "webhooks_feed_end")
# A webhook created unless its campaign has its fill or its key was revoked.
CREATE_SCRIPT = lua.load("shared", "webhooks_create")
# A webhook deleted, all its keys or none.
DELETE_SCRIPT = lua.load("shared", "webhooks_delete")


def feed_end_keys(feed: str) -> list[str]:
    """FEED_END_SCRIPT's keys for the campaign `feed`: its feed and feed record."""
    return [feed_stream_key(feed), feed_record_key(feed)]


def start_at(reply: list[Any], feed: str) -> Cursor:
    """A new webhook's cursor in the campaign `feed`, from FEED_END_SCRIPT's reply."""
    entry, added = reply
    return Cursor(str(entry), int(added), feed)


def create_call(webhook: Webhook, cursor: Cursor) -> tuple[list[str], list[str | int]]:
    """CREATE_SCRIPT's keys and arguments for `webhook`, starting at `cursor` in its
    campaign's feed (cursor.feed)."""
    if webhook.created_by is None:
        raise ValueError("a new webhook records the key that creates it")
    fields = [item for pair in webhook.record().items() for item in pair]
    keys = [
        webhook_key(webhook.id),
        campaign_webhooks_key(cursor.feed),
        CURSORS,
        key_webhooks_key(cursor.feed, webhook.created_by),
    ]
    return keys, [MAX_PER_CAMPAIGN, webhook.id, str(cursor), REVOKED, *fields]


def delete_call(webhook: Webhook, feed: str) -> tuple[list[str], list[str]]:
    """DELETE_SCRIPT's keys and arguments: `webhook` of the campaign `feed`."""
    keys = [
        webhook_key(webhook.id),
        log_key(webhook.id),
        campaign_webhooks_key(feed),
        CURSORS,
    ]
    if webhook.created_by is not None:
        keys.append(key_webhooks_key(feed, webhook.created_by))
    return keys, [webhook.id]


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
    keys (shared.keyspace.feed_name), so this module need not know the store's layout."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._feed_end = client.register_script(FEED_END_SCRIPT)
        self._create = client.register_script(CREATE_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)
        self._rotate = client.register_script(ROTATE_SCRIPT)

    async def create(self, webhook: Webhook, feed: str) -> Creation:
        """Store `webhook`, unless the campaign already has MAX_PER_CAMPAIGN or its
        key was revoked (then nothing is stored). It gets the changes written from
        about now on: those after the end of the feed read first."""
        cursor = start_at(await self._feed_end(keys=feed_end_keys(feed)), feed)
        keys, args = create_call(webhook, cursor)
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
        keys, args = delete_call(webhook, feed)
        await self._delete(keys=keys, args=args)

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
    has too are the same reads and writes (create, get, of_feed, delete), and a key's
    revoke."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._feed_end = client.register_script(FEED_END_SCRIPT)
        self._create = client.register_script(CREATE_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)
        self._disable = client.register_script(DISABLE_SCRIPT)

    def create(self, webhook: Webhook, feed: str) -> Creation:
        """As the web's AsyncWebhooks.create, on a synchronous client."""
        cursor = start_at(self._feed_end(keys=feed_end_keys(feed)), feed)
        keys, args = create_call(webhook, cursor)
        return Creation(int(self._create(keys=keys, args=args)))

    def get(self, webhook_id: str, scope: Scope) -> Webhook | None:
        """The webhook, if it exists and is this campaign's."""
        if not looks_like_id(webhook_id):
            return None
        return in_scope(self._redis.hgetall(webhook_key(webhook_id)), scope)

    def of_feed(self, feed: str) -> list[Webhook]:
        return self._records(self._redis.smembers(campaign_webhooks_key(feed)))

    def delete(self, webhook: Webhook, feed: str) -> None:
        keys, args = delete_call(webhook, feed)
        self._delete(keys=keys, args=args)

    def key_revoked(self, key_id: str, feed: str, *, disable: bool) -> list[Webhook]:
        """After the key `key_id` of the campaign `feed` was revoked: no webhook may be
        created by it from now on, and those it created are disabled (`disable`) or
        kept. Returns those disabled now (or, kept, all of them), oldest first.
        Webhooks created before keys were recorded are not known to be its."""
        index = key_webhooks_key(feed, key_id)
        self._redis.sadd(index, REVOKED)
        # From here on its set can only shrink (CREATE_SCRIPT refuses it), so it is
        # read after: no MULTI needed (a Cluster's pipelines in redis-py < 6 have none).
        members = self._redis.smembers(index)
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
