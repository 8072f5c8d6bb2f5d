"""The Valkey Cluster harness (tests/valkey_cluster.py) against a real cluster: its shape,
routing through redis-py's RedisCluster, and the failovers the service's tests rely on."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from redis.cluster import RedisCluster

from tests.valkey_cluster import SLOTS, ValkeyCluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster_client(valkey_cluster: ValkeyCluster) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(
        valkey_cluster.url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1
    )
    yield client
    # RedisCluster.close() (redis-py 8.1) can leave a node's connection open after MOVED
    # redirections: an unclosed-socket ResourceWarning, an error in this suite. Each
    # node's pool is disconnected first.
    for node in client.get_nodes():  # type: ignore[no-untyped-call]
        if node.redis_connection is not None:
            node.redis_connection.connection_pool.disconnect()
    client.close()


def key_on(cluster: ValkeyCluster, primary: int, prefix: str) -> str:
    """A key whose slot `primary` serves."""
    return next(
        key
        for key in (f"{prefix}:{n}" for n in range(10_000))
        if cluster.primary_of_key(key) == primary
    )


def test_three_primaries_with_a_replica_each_serve_every_slot(
    valkey_cluster: ValkeyCluster,
) -> None:
    primaries = valkey_cluster.primaries()
    assert len(primaries) == 3
    assert len(valkey_cluster.nodes) == 6
    served = []
    for view in valkey_cluster.topology():
        if view.port in primaries:
            served += [slot for first, last in view.slots for slot in range(first, last + 1)]
    assert sorted(served) == list(range(SLOTS))
    replicas = [valkey_cluster.replicas_of(primary) for primary in primaries]
    assert all(len(ports) == 1 for ports in replicas)
    assert sorted([*primaries, *(port for ports in replicas for port in ports)]) == sorted(
        valkey_cluster.nodes
    )


def test_no_node_answers_without_the_password(valkey_cluster: ValkeyCluster) -> None:
    # A bare socket: redis-py would retry an AuthenticationError (a ConnectionError),
    # with backoff, for seconds.
    for port in valkey_cluster.nodes:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as anonymous:
            anonymous.sendall(b"GET any\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH")


def test_a_key_written_on_its_primary_is_read_through_a_cluster_client(
    valkey_cluster: ValkeyCluster, cluster_client: RedisCluster
) -> None:
    for primary in valkey_cluster.primaries():
        key = key_on(valkey_cluster, primary, "written")
        valkey_cluster.client(primary).set(key, f"on {primary}")
        assert cluster_client.get(key) == f"on {primary}"
        assert valkey_cluster.keys_per_primary()[primary] >= 1


def test_a_killed_primary_is_replaced_by_its_replica_which_has_its_keys(
    valkey_cluster: ValkeyCluster,
    cluster_client: RedisCluster,
) -> None:
    primary = valkey_cluster.primaries()[0]
    replica = valkey_cluster.replica_of(primary)
    key = key_on(valkey_cluster, primary, "kept")
    cluster_client.set(key, "before the kill")
    # Replicated before the kill: asynchronous replication alone could lose it.
    assert valkey_cluster.command(primary, "WAIT", 1, 5000) == 1
    began = time.monotonic()
    valkey_cluster.kill(primary)
    assert valkey_cluster.wait_failover(primary) == replica
    # Seen with -s: the failover's real time with this node timeout.
    print(f"failover in {time.monotonic() - began:.2f} s")
    assert valkey_cluster.primary_of_key(key) == replica
    # The client's map still names the dead primary: it finds the new one by itself.
    assert cluster_client.get(key) == "before the kill", valkey_cluster.topology()

    valkey_cluster.restart(primary)
    valkey_cluster.wait_ready()
    assert valkey_cluster.replicas_of(replica) == [primary]


def test_a_primary_stopped_past_the_node_timeout_comes_back_as_a_replica(
    valkey_cluster: ValkeyCluster,
    cluster_client: RedisCluster,
) -> None:
    primary = valkey_cluster.primaries()[0]
    replica = valkey_cluster.replica_of(primary)
    key = key_on(valkey_cluster, primary, "stopped")
    cluster_client.set(key, "before the stop")
    assert valkey_cluster.command(primary, "WAIT", 1, 5000) == 1
    began = time.monotonic()
    valkey_cluster.stop(primary)
    assert valkey_cluster.wait_failover(primary) == replica
    # Seen with -s: the failover's real time with this node timeout.
    print(f"failover in {time.monotonic() - began:.2f} s")

    valkey_cluster.cont(primary)
    valkey_cluster.wait_ready()
    assert valkey_cluster.replicas_of(replica) == [primary]
    assert valkey_cluster.client(primary).info("replication")["role"] == "slave"
    assert cluster_client.get(key) == "before the stop", valkey_cluster.topology()


def test_waitaof_never_confirms_a_write_that_a_failover_lost(
    valkey_cluster: ValkeyCluster,
) -> None:
    """What ENDCONTACT_DURABLE_REPLICAS rests on. A write sent to a primary while it is
    SIGSTOPped waits in its socket; after its replica took over and it is continued, it
    may still run the write as a primary and answer OK (seen every time on Valkey 8.1),
    then become a replica and drop it. WAITAOF for one replica on the same connection is
    the only thing that tells: it must never confirm that write."""
    primary = valkey_cluster.primaries()[0]
    replica = valkey_cluster.replica_of(primary)
    key = key_on(valkey_cluster, primary, "late")
    with socket.create_connection(("127.0.0.1", primary), timeout=30) as connection:
        replies = connection.makefile("rb")
        send(connection, "AUTH", valkey_cluster.password)
        assert read_reply(replies) == "+OK"
        valkey_cluster.stop(primary)
        send(connection, "SET", key, "late")
        send(connection, "WAITAOF", "1", "1", "5000")
        assert valkey_cluster.wait_failover(primary) == replica
        valkey_cluster.cont(primary)
        # "+OK" or "-MOVED …"; then "*2 :1 :0", or "-UNBLOCKED …" as it became a replica.
        written, waited = read_reply(replies), read_reply(replies)
    valkey_cluster.wait_ready()

    assert valkey_cluster.client(replica).get(key) is None, (written, waited)
    assert not (waited.startswith("*") and int(waited.split(":")[2]) >= 1), (written, waited)


def send(connection: socket.socket, *args: str) -> None:
    """One command in RESP."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        parts.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
    connection.sendall(b"".join(parts))


def read_reply(replies: BinaryIO) -> str:
    """One reply: a simple string, an error or an integer as its line; an array (of
    integers, as WAITAOF's) as its lines joined by spaces."""
    line = replies.readline().decode().rstrip("\r\n")
    if line.startswith("*"):
        return " ".join([line, *(read_reply(replies) for _ in range(int(line[1:])))])
    return line


def test_reshard_moves_slots_and_their_keys_to_another_primary(
    valkey_cluster: ValkeyCluster, cluster_client: RedisCluster
) -> None:
    source, target, _ = valkey_cluster.primaries()
    keys = [f"moved:{n}" for n in range(300)]
    for key in keys:
        cluster_client.set(key, key)
    on_source = [key for key in keys if valkey_cluster.primary_of_key(key) == source]
    before = valkey_cluster.keys_per_primary()

    output = valkey_cluster.reshard(source, target, 500).wait()

    valkey_cluster.wait_ready()
    after = valkey_cluster.keys_per_primary()
    moved = [key for key in on_source if valkey_cluster.primary_of_key(key) == target]
    assert moved, output
    assert after[target] - before[target] == before[source] - after[source] >= len(moved)
    # The client's map is stale for the moved slots: MOVED sends it to the target.
    assert [cluster_client.get(key) for key in keys] == keys
