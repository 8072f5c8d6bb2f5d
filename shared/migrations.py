"""The keyspace's version, and the one-time moves from the names of an earlier one.

Version 2 gave every campaign's keys its hash tag, for a Valkey Cluster
(shared.keyspace). A store written before (one server: it could not be a Cluster)
holds the old names; every worker calls `upgrade` before it takes a task, and the first
moves them, under a lock, before any write of its own could land beside them. Each
move is a RENAME (atomic on one server) or a field copied into the new record, so a
worker killed halfway leaves a store the next one finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import redis

from shared.keyspace import ADDED, TRIMMED, feed_record_key, tag
from shared.nodes import primaries

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


def _old_names(client: redis.Redis) -> Iterator[str]:
    for node in primaries(client):
        for prefix in _RENAMED_PREFIXES:
            for key in node.scan_iter(match=f"{prefix}*", count=1000):
                name = str(key)
                if not name.removeprefix(prefix).startswith("{"):
                    yield name


def _to_version_2(client: redis.Redis) -> int:
    moved = 0
    for old in list(_old_names(client)):
        prefix = next(p for p in _RENAMED_PREFIXES if old.startswith(p))
        # RENAMENX: a name already taken is never overwritten (nothing writes the new
        # names before the version is set, so it can only be this move's own, redone).
        new = prefix + tag(old.removeprefix(prefix))
        if client.renamenx(old, new):
            moved += 1
        else:
            log.warning("%s not moved: %s exists; merge them by hand", old, new)
    for old, field in _FIELDS_MOVED.items():
        for feed, value in client.hgetall(old).items():
            client.hset(feed_record_key(str(feed)), field, value)
            moved += 1
        client.delete(old)
    client.delete(*_DROPPED)
    return moved
