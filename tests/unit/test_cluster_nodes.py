"""tests/valkey_cluster.py's reading of CLUSTER NODES and CLUSTER INFO, on lines as
Valkey 8.1 writes them: a failed node, a replica, and slots migrating mid-reshard."""

from __future__ import annotations

from tests.valkey_cluster import parse_info, parse_nodes

NODES = (
    "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]\n"
    "b2 127.0.0.1:7002@17002,host.example master - 0 1 2 connected 5461-10922 16000\n"
    "c3 127.0.0.1:7003@17003 master,fail - 0 1 3 disconnected\n"
    "d4 127.0.0.1:7004@17004 slave a1 0 1 1 connected\n"
)


def test_cluster_nodes_lines_are_read_as_nodes_with_their_slots() -> None:
    a1, b2, c3, d4 = parse_nodes(NODES)
    # A migrating slot stays its owner's until the move ends.
    assert (a1.port, a1.is_primary, a1.slots, a1.failed) == (7001, True, ((0, 5460),), False)
    assert (b2.port, b2.slots) == (7002, ((5461, 10922), (16000, 16000)))
    assert (c3.failed, c3.slots) == (True, ())
    assert (d4.is_primary, d4.primary_id, d4.failed) == (False, "a1", False)


def test_cluster_info_is_read_as_its_fields() -> None:
    info = parse_info("# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n")
    assert info == {"cluster_state": "ok", "cluster_slots_ok": "16384"}
