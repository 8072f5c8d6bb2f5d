"""The keyspace's version, and the one-time moves from the names of an earlier one.

Version 2 gave every campaign's keys its hash tag, and every webhook's and delivery's
key the tag {hooks}, for a Valkey Cluster (shared.keyspace, shared.webhooks). A store
written before (one server: it could not be a Cluster) holds the old names; every
worker calls `upgrade` before it takes a task, and the first moves them, under a lock,
before any write of its own could land beside them. Each move is a RENAME (atomic on
one server) or a field copied into the new record, so a worker killed halfway leaves a
store the next one finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import redis

from shared.deliveries import DELIVERY_PREFIX, DISPATCHERS, DUE, PENDING, due_key, lease_key
from shared.keyspace import ADDED, TRIMMED, feed_record_key, tag
from shared.nodes import primaries
from shared.webhooks import (
    CURSORS,
    campaign_webhooks_key,
    key_webhooks_key,
    log_key,
    webhook_key,
)

log = logging.getLogger(__name__)

VERSION_KEY = "ec:keyspace"
VERSION = 2
LOCK_KEY = "ec:keyspace-upgrading"
LOCK_MS = 60_000

# Version 1's names: a campaign's marks and feed were prefix + feed name, untagged.
_RENAMED_PREFIXES = ("ec:ended:", "ec:events:")
# Version 1's hashes of feed name -> value, now fields of each campaign's feed record.
_FIELDS_MOVED = {"ec:events-trimmed": TRIMMED, "ec:deliveries:added": ADDED}
# Version 1's set of feed names: a sweep now scans for feeds.
_DROPPED = ("ec:feeds",)
# Version 1's webhook and delivery keys, untagged: old name -> new name, and old prefix
# -> new prefix (what follows the prefix is kept: an id, a feed name, `<feed>:<key id>`
# or `<id>:<event id>`).
_HOOKS_RENAMED = {
    "ec:webhook-cursors": CURSORS,
    "ec:deliveries:due": DUE,
    "ec:deliveries:pending": PENDING,
    "ec:dispatchers": DISPATCHERS,
}
_HOOKS_PREFIXES = {
    "ec:webhook:": webhook_key(""),
    "ec:webhooks:": campaign_webhooks_key(""),
    # key_webhooks_key(feed, key id) is the prefix, the feed, ':', the key id.
    "ec:webhooks-by-key:": key_webhooks_key("", "").removesuffix(":"),
    "ec:webhook-log:": log_key(""),
    "ec:webhook-lease:": lease_key(""),
    "ec:deliveries:due:": due_key(""),
    "ec:delivery:": DELIVERY_PREFIX,
}


def upgrade(client: redis.Redis, wait: Callable[[float], object]) -> bool:
    """Bring the keyspace to VERSION. Returns True if this call moved anything; while
    another process holds the lock, waits (with `wait(seconds)`) until it is done."""
    while True:
        version = client.get(VERSION_KEY)
        if version is not None and int(version) >= VERSION:
            return False
        if client.set(LOCK_KEY, "1", nx=True, px=LOCK_MS):
            break
        wait(0.5)
    try:
        moved = _to_version_2(client)
        client.set(VERSION_KEY, VERSION)
    finally:
        client.delete(LOCK_KEY)
    if moved:
        log.warning("keyspace upgraded to version %d: %d keys moved", VERSION, moved)
    return moved > 0


def _renames(client: redis.Redis) -> Iterator[tuple[str, str]]:
    """Version 1's keys with their new names."""
    for old, new in _HOOKS_RENAMED.items():
        if client.exists(old):  # routed by the key (a Cluster's other nodes say MOVED)
            yield old, new
    for node in primaries(client):
        for prefix in _RENAMED_PREFIXES:
            for key in node.scan_iter(match=f"{prefix}*", count=1000):
                feed = str(key).removeprefix(prefix)
                if not feed.startswith("{"):
                    yield str(key), prefix + tag(feed)
        for prefix, renamed in _HOOKS_PREFIXES.items():
            for key in node.scan_iter(match=f"{prefix}*", count=1000):
                yield str(key), renamed + str(key).removeprefix(prefix)


def _move(client: redis.Redis, old: str, new: str) -> bool:
    # RENAMENX: a name already taken is never overwritten (nothing writes the new
    # names before the version is set, so it can only be this move's own, redone). A
    # version-1 store is one server, where a rename across hash slots is allowed.
    if client.renamenx(old, new):
        return True
    log.warning("%s not moved: %s exists; merge them by hand", old, new)
    return False


def _to_version_2(client: redis.Redis) -> int:
    moved = sum(_move(client, old, new) for old, new in list(_renames(client)))
    for old, field in _FIELDS_MOVED.items():
        for feed, value in client.hgetall(old).items():
            client.hset(feed_record_key(str(feed)), field, value)
            moved += 1
        client.delete(old)
    client.delete(*_DROPPED)
    return moved
