"""The store's nodes: one server, or the primaries of a Valkey (Redis) Cluster.

Most of the store's operations are one command on one key, which redis-py's
RedisCluster routes by the key as it follows failovers and slot moves. What must run
on one node's own connection is here: a write and the WAITAOF that vouches for it
(WAITAOF counts the writes of the connection it is sent on, and RedisCluster would
send it to a default node), a SCAN, a /readyz probe of every primary.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions
from redis.crc import key_slot

T = TypeVar("T", bound=Hashable)

# Replies that say the node is not, or no longer, the one for the key: the slot moved
# (MOVED, ASK), is moving (TRYAGAIN), has no primary yet (CLUSTERDOWN), or the node
# became a replica in a failover (READONLY). Worth a retry once the map is read again.
RELOCATED = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
)

# Replies after which the slot map is read again: those, or the node did not answer.
UNREACHED = (*RELOCATED, redis.ConnectionError, redis.TimeoutError)


def cluster_of(client: redis.Redis) -> redis.cluster.RedisCluster | None:
    """The cluster client, if `client` is one (shared.connection makes it so)."""
    return client if isinstance(client, redis.cluster.RedisCluster) else None


def by_node(
    client: redis.Redis, items: Iterable[T], key_of: Callable[[T], str]
) -> dict[str, tuple[redis.Redis, list[T]]]:
    """`items` grouped by the node that holds `key_of(item)`, with a client of that
    node (one server: one group, `client` itself)."""
    cluster = cluster_of(client)
    groups: dict[str, tuple[redis.Redis, list[T]]] = {}
    for item in items:
        if cluster is None:
            name, node_client = "", client
        else:
            node = cluster.get_node_from_key(key_of(item))  # type: ignore[no-untyped-call]
            name, node_client = node.name, cluster.get_redis_connection(node)
        groups.setdefault(name, (node_client, []))[1].append(item)
    return groups


def primaries(client: redis.Redis) -> list[redis.Redis]:
    """A client of each primary (one server: `client` itself)."""
    cluster = cluster_of(client)
    if cluster is None:
        return [client]
    primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
    return [cluster.get_redis_connection(node) for node in primaries]


def reread_map(client: redis.Redis) -> None:
    """Read the cluster's slot map again (after a reply said a slot moved or a node
    failed over), so that the next write goes where the slot is now."""
    cluster = cluster_of(client)
    if cluster is not None:
        cluster.nodes_manager.initialize()


@dataclass(frozen=True)
class Probe:
    """/readyz's look at one primary: does it answer, does it take a write."""

    client: redis.asyncio.Redis
    key: str  # a key of one of the primary's slots
    node: Any = None  # the primary (a Cluster's); None: the client's one server

    async def ping(self) -> bool:
        if self.node is None:
            return bool(await self.client.ping())
        return bool(await self.client.ping(target_nodes=self.node))

    async def write(self, expire_ms: int) -> bool:
        return bool(await self.client.set(self.key, "1", px=expire_ms))


async def ready_probes(client: redis.asyncio.Redis, key: str) -> list[Probe]:
    """A Probe per primary (one server: one). On a Cluster each writes `key` tagged
    with the first whole number whose slot that primary holds."""
    if not isinstance(client, redis.asyncio.cluster.RedisCluster):
        return [Probe(client, key)]
    await client.initialize()
    slots = client.nodes_manager.slots_cache
    probes: dict[str, Probe] = {}
    wanted = {node.name for node in client.get_primaries()}
    number = 0
    while wanted - probes.keys() and number < 100_000:
        tagged = f"{key}:{{{number}}}"
        holders = slots.get(key_slot(tagged.encode()))
        if holders and holders[0].name in wanted and holders[0].name not in probes:
            probes[holders[0].name] = Probe(client, tagged, holders[0])
        number += 1
    return list(probes.values())
