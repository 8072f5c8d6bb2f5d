"""A store written before the keyspace's version 2 (shared.migrations), upgraded:
every mark, history and feed event is where the service reads it after."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from shared.apikeys import Scope
from shared.events import ENDED, RESUMED, Change, Context
from shared.keyspace import ADDED, TRIMMED, ended_key, events_key, feed_name, feed_record_key
from shared.migrations import VERSION, VERSION_KEY
from shared.store import Store

# A database of its own: the test empties it.
DB = 9


@pytest.fixture
def client(redis_server: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(f"{redis_server}/{DB}", decode_responses=True) as client:
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
