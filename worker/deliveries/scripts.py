"""The dispatcher's Lua scripts (lua/*.lua, each says its KEYS and ARGV), joined with
the pieces they start with, the key prefixes those pieces take, and the pipeline they
run in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import redis.client

from shared import deliveries, lua
from shared.clock import SERVER_TIME
from shared.nodes import UNREACHED, cluster_of, reread_map
from shared.webhooks import webhook_key

_PREFIXES = lua.load("worker.deliveries", "prefixes")
_PLACE = lua.load("worker.deliveries", "place")

CLAIM_SCRIPT = _PREFIXES + _PLACE + SERVER_TIME + lua.load("worker.deliveries", "claim")
RECORD_SCRIPT = _PREFIXES + _PLACE + SERVER_TIME + lua.load("worker.deliveries", "record")
COMMIT_SCRIPT = _PREFIXES + _PLACE + SERVER_TIME + lua.load("worker.deliveries", "commit")
ALIVE_SCRIPT = SERVER_TIME + lua.load("worker.deliveries", "alive")
RENEW_SCRIPT = lua.load("worker.deliveries", "renew")
RELEASE_SCRIPT = lua.load("worker.deliveries", "release")


def prefixes() -> list[str | int]:
    """lua/prefixes.lua's ARGV: the prefixes of the key names the scripts build."""
    return [deliveries.due_key(""), deliveries.DELIVERY_PREFIX, webhook_key("")]


@contextmanager
def hooks_pipeline(client: redis.Redis) -> Iterator[redis.client.Pipeline]:
    """A pipeline (not a transaction) for commands and scripts on the {hooks} keys
    (shared.webhooks), all of one slot. On a Cluster it is the plain pipeline of the
    node that holds that slot: redis-py's cluster pipelines queue a script's EVALSHA
    without loading it (NOSCRIPT on a node that never ran it, or on a replica promoted
    since), where a plain one loads its scripts first. When the node no longer holds
    the slot, or fails, the map is read again before the error goes up (the caller
    tries again after its backoff)."""
    cluster = cluster_of(client)
    if cluster is None:
        with client.pipeline(transaction=False) as pipe:
            yield pipe
        return
    node = cluster.get_node_from_key(deliveries.DUE)  # type: ignore[no-untyped-call]
    try:
        with cluster.get_redis_connection(node).pipeline(transaction=False) as pipe:
            yield pipe
    except UNREACHED:
        reread_map(client)
        raise
