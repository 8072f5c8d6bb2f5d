"""A store written before the keyspace's version 2 (shared.migrations), upgraded:
every mark, history, feed event, webhook and pending delivery is where the service
reads it after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from shared.apikeys import Scope
from shared.deliveries import DISPATCHERS, DUE, PENDING, delivery_key, due_key, lease_key
from shared.events import ENDED, RESUMED, Change, Context
from shared.keyspace import ADDED, TRIMMED, ended_key, events_key, feed_name, feed_record_key
from shared.migrations import VERSION, VERSION_KEY
from shared.store import Store
from shared.webhook_store import AsyncWebhooks, Creation
from shared.webhooks import (
    CURSORS,
    EVENT_TYPES,
    Cursor,
    campaign_webhooks_key,
    key_webhooks_key,
    log_key,
    new_webhook,
    webhook_key,
)

# A database of its own: the test empties it.
DB = 9


@pytest.fixture
def url(redis_server: str) -> str:
    return f"{redis_server}/{DB}"


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        client.flushdb()
        yield client
        client.flushdb()


def _as_version_1(client: redis.Redis, scope: Scope) -> None:
    """The campaign's keys as version 1 named them, its feed record as its hashes."""
    feed = feed_name(scope)
    client.rename(ended_key(scope), f"ec:ended:{feed}")
    client.rename(events_key(scope), f"ec:events:{feed}")
    record = client.hgetall(feed_record_key(feed))
    client.delete(feed_record_key(feed))
    client.hset("ec:events-trimmed", feed, record.get(TRIMMED, "1-0-0"))
    client.hset("ec:deliveries:added", feed, record[ADDED])
    client.sadd("ec:feeds", feed)
    client.delete(VERSION_KEY)


def test_a_version_1_store_is_read_as_before_after_the_upgrade(client: redis.Redis) -> None:
    store = Store(client)
    scopes = [Scope("acme", "spring:sale"), Scope("acme{x}", "b")]
    context = Context("key_test", "request-test")
    store.apply_changes(
        [Change(scope, "+15095550001", ENDED, context) for scope in scopes]
        + [Change(scopes[0], "+15095550002", ENDED, context)]
    )
    store.apply_changes([Change(scopes[0], "+15095550002", RESUMED, context)])
    before = {scope: store.history(scope, "+15095550002") for scope in scopes}
    ended = {scope: store.ended_at(scope, "+15095550001") for scope in scopes}
    for scope in scopes:
        _as_version_1(client, scope)
    assert store.ended_at(scopes[0], "+15095550001") is None

    # A worker started on it (this Store has seen the keyspace current already).
    store = Store(client)
    assert store.upgrade_keyspace(time.sleep) is True

    for scope in scopes:
        assert store.ended_at(scope, "+15095550001") == ended[scope]
        assert store.history(scope, "+15095550002") == before[scope]
        record = client.hgetall(feed_record_key(feed_name(scope)))
        assert record[TRIMMED] == "1-0-0"
        # Events ever added: two ended and one resumed, and one ended.
        assert record[ADDED] == ("3" if scope == scopes[0] else "1")
    assert sorted(client.keys("ec:*")) == sorted(
        [VERSION_KEY]
        + [key for scope in scopes for key in (ended_key(scope), events_key(scope))]
        + [feed_record_key(feed_name(scope)) for scope in scopes]
    )
    assert int(client.get(VERSION_KEY) or 0) == VERSION
    # Once at its version, nothing more to do.
    assert store.upgrade_keyspace(time.sleep) is False


def test_a_new_store_is_marked_current_with_nothing_to_move(client: redis.Redis) -> None:
    assert Store(client).upgrade_keyspace(time.sleep) is False
    assert int(client.get(VERSION_KEY) or 0) == VERSION


def _hooks_as_version_1(client: redis.Redis, hook: str, feed: str, key: str, event: str) -> None:
    """The webhook's and its deliveries' keys as version 1 named them (every one)."""
    old = {
        webhook_key(hook): f"ec:webhook:{hook}",
        campaign_webhooks_key(feed): f"ec:webhooks:{feed}",
        key_webhooks_key(feed, key): f"ec:webhooks-by-key:{feed}:{key}",
        CURSORS: "ec:webhook-cursors",
        log_key(hook): f"ec:webhook-log:{hook}",
        DUE: "ec:deliveries:due",
        due_key(hook): f"ec:deliveries:due:{hook}",
        delivery_key(hook, event): f"ec:delivery:{hook}:{event}",
        PENDING: "ec:deliveries:pending",
        lease_key(hook): f"ec:webhook-lease:{hook}",
        DISPATCHERS: "ec:dispatchers",
    }
    assert sorted(client.keys("ec:{hooks}:*")) == sorted(old)
    for new, name in old.items():
        client.rename(new, name)


def test_a_webhook_of_a_version_1_store_and_its_deliveries_are_found_after_the_upgrade(
    client: redis.Redis, url: str
) -> None:
    store, hooks = Store(client), Store(client).webhooks()
    scope, key = Scope("acme", "hooked"), "key_0123abcd4567ef89"
    feed = feed_name(scope)
    context = Context(key, "request-test")
    store.apply_changes([Change(scope, "+15095550001", ENDED, context)])
    hook = new_webhook(scope, "https://example.com/hook", EVENT_TYPES, key)
    assert hooks.create(hook, feed) is Creation.CREATED
    # It starts at the feed's end: the change made before it is not its to deliver.
    cursor = Cursor.parse(str(client.hget(CURSORS, hook.id)))
    assert (cursor.passed, cursor.feed) == (1, feed)
    # What the deliveries write: an attempt logged, a retry due with its body, the
    # lease of the dispatcher that follows it.
    event, attempt = "1-0-0", '{"eventId":"1-0-0","attempt":1,"status":500}'
    client.lpush(log_key(hook.id), attempt)
    client.hset(delivery_key(hook.id, event), mapping={"attempts": 1, "body": "{}"})
    client.zadd(due_key(hook.id), {event: 5})
    client.zadd(DUE, {hook.id: 5})
    client.set(PENDING, 1)
    client.set(lease_key(hook.id), "dispatcher-1", px=60_000)
    client.zadd(DISPATCHERS, {"dispatcher-1": 5})
    _hooks_as_version_1(client, hook.id, feed, key, event)
    _as_version_1(client, scope)
    assert hooks.of_feed(feed) == []

    # A worker started on it (this Store has seen the keyspace current already).
    store = Store(client)
    assert store.upgrade_keyspace(time.sleep) is True

    assert hooks.of_feed(feed) == [hook]
    assert hooks.get(hook.id, scope) == hook
    assert Cursor.parse(str(client.hget(CURSORS, hook.id))) == cursor
    assert client.hgetall(delivery_key(hook.id, event)) == {"attempts": "1", "body": "{}"}
    assert client.zscore(DUE, hook.id) == 5
    assert client.get(lease_key(hook.id)) == "dispatcher-1"
    assert 0 < client.pttl(lease_key(hook.id)) <= 60_000
    assert client.zscore(DISPATCHERS, "dispatcher-1") == 5
    # The retry, and no event past its cursor.
    assert store.pending_deliveries() == 1

    async def attempts() -> list[dict[str, object]]:
        async with redis.asyncio.Redis.from_url(url, decode_responses=True) as aclient:
            return await AsyncWebhooks(aclient).attempts(hook.id, 10)

    assert asyncio.run(attempts()) == [{"eventId": "1-0-0", "attempt": 1, "status": 500}]
    # Its key's set moved too: revoking the key finds and disables it.
    (disabled,) = hooks.key_revoked(key, feed, disable=True)
    assert disabled.id == hook.id
    assert disabled.disabled_at is not None
    assert not client.keys("ec:webhook*") + client.keys("ec:deliver*") + client.keys("ec:disp*")
