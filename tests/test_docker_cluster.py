"""compose.cluster.yaml for real: compose.yaml with the store on a Valkey Cluster of six
nodes (three primaries, a replica each) made by its one-shot cluster-init, `docker compose
up --wait` with two workers, keys made as docs/operating.md says, numbers ended for three
campaigns through the proxy, and each campaign's marks on the primary that serves their
slot, a campaign on each.

Only what Docker adds is here, cheaply (one `up`, one `down`): the API on a cluster,
failovers and resharding are tested on a cluster of local processes. Needs what
tests/test_docker.py needs.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.crc import key_slot

from shared.apikeys import PREFIX, Scope
from shared.embedded import free_port
from shared.keyspace import ended_key
from tests.helpers import URL, numbers, post_numbers
from tests.test_docker import UP_TIMEOUT, Compose, needs_engine

FILES = ("compose.yaml", "compose.cluster.yaml")
NODES = tuple(f"redis-{n}" for n in range(1, 7))
COMPANY = "acme"
# Where `valkey-cli --cluster create` splits the 16384 slots between three primaries.
THIRDS = (5461, 10923)
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Compose]:
    needs_engine()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_PASSWORD": secrets.token_hex(16),
        "ENDCONTACT_PORT": f"127.0.0.1:{port}",
    }
    stack = Compose(f"endcontact-cluster-{os.getpid()}", env, f"http://127.0.0.1:{port}", FILES)
    try:
        started = time.monotonic()
        stack("up", "--detach", "--build", "--wait", "--scale", "worker=2", timeout=UP_TIMEOUT)
        print(f"cluster up: {time.monotonic() - started:.1f} s")
        yield stack
    finally:
        stack("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


def valkey_cli(stack: Compose, node: str, *args: str) -> str:
    """valkey-cli on a node, with the password from the node's environment (not argv)."""
    return stack(
        "exec", "-T", node, "sh", "-c",
        'REDISCLI_AUTH="$REDIS_PASSWORD" exec valkey-cli --no-auth-warning "$@"', "valkey-cli",
        *args,
    ).stdout  # fmt: skip


def primaries(stack: Compose) -> dict[str, list[range]]:
    """Each primary's service name and the slots it serves, as the cluster says
    (CLUSTER NODES: id, ip:port@bus,hostname, flags, primary, ping, pong, epoch, link,
    slots...)."""
    served: dict[str, list[range]] = {}
    for line in valkey_cli(stack, NODES[0], "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "master" not in fields[2].split(",") or "fail" in fields[2]:
            continue
        ranges = []
        for part in fields[8:]:
            if part.startswith("["):  # a slot being migrated
                continue
            low, _, high = part.partition("-")
            ranges.append(range(int(low), int(high or low) + 1))
        served[fields[1].partition(",")[2]] = ranges
    return served


def campaigns_one_per_primary() -> list[str]:
    """Campaign names whose marks hash into each third of the slots, so that a cluster
    just made gives each primary one."""
    chosen: dict[int, str] = {}
    for index in itertools.count():
        name = f"spread-{index}"
        chosen.setdefault(
            bisect.bisect(THIRDS, key_slot(ended_key(Scope(COMPANY, name)).encode())), name
        )
        if len(chosen) == 3:
            return [chosen[third] for third in range(3)]
    raise AssertionError("unreachable")


def create_keys(stack: Compose, campaigns: list[str]) -> list[str]:
    """A key for each campaign, made as the README says, in one container."""
    made = stack(
        "run", "--rm", "-T", "web", "sh", "-c",
        'for c; do endcontact keys create --company "$0" --campaign "$c"; done',
        COMPANY, *campaigns,
    )  # fmt: skip
    keys = [line for line in made.stdout.splitlines() if line.startswith(PREFIX)]
    assert len(keys) == len(campaigns), made.stdout
    return keys


def test_the_cluster_is_made_once_locked_down_and_not_published(cluster: Compose) -> None:
    services = cluster("config", "--services").stdout.split()
    assert set(NODES) | {"cluster-init", "broker", "web", "worker", "proxy"} == set(services)
    info = valkey_cli(cluster, NODES[0], "CLUSTER", "INFO")
    for line in ("cluster_state:ok", "cluster_known_nodes:6", "cluster_size:3"):
        assert line in info.splitlines(), info
    # Made by the first run; any later one finds it and exits 0 without touching it.
    again = cluster("run", "--rm", "-T", "cluster-init")
    assert "the cluster exists" in again.stdout, again.stdout

    ids = cluster("ps", "--all", "--quiet").stdout.split()
    shown = Compose.docker(
        "inspect", "--format",
        '{{index .Config.Labels "com.docker.compose.service"}} {{.HostConfig.ReadonlyRootfs}} '
        "{{.Config.User}}",
        *ids,
    ).stdout  # fmt: skip
    for line in shown.splitlines():
        service, read_only, user = line.split()
        assert read_only == "true", service
        if service in NODES or service == "cluster-init":
            assert user == "999:999", service
    published = {
        entry["Service"]
        for entry in map(json.loads, cluster("ps", "--format", "json").stdout.splitlines())
        if any(p.get("PublishedPort") for p in entry.get("Publishers") or [])
    }
    assert published == {"proxy"}


def test_campaigns_are_spread_over_the_primaries(cluster: Compose) -> None:
    campaigns = campaigns_one_per_primary()
    keys = create_keys(cluster, campaigns)
    for index, key in enumerate(keys):
        ended = post_numbers(cluster.base, {"x-api-key": key}, numbers(1000 + 10 * index, 10))
        assert ended.status_code == 201, ended.text
        assert ended.json()["failure"] == []
        checked = httpx.post(
            f"{cluster.base}{URL}/check",
            json={"phoneNumberList": numbers(1000 + 10 * index, 10)},
            headers={"x-api-key": key},
            timeout=30,
        )
        assert checked.status_code == 200
        assert checked.json()["notEnded"] == []
    # Ready: every primary took /readyz's write.
    ready = httpx.get(f"{cluster.base}/readyz", timeout=10)
    assert (ready.status_code, ready.json()["redis"]) == (200, "ok")

    served = primaries(cluster)
    assert len(served) == 3, served
    marks = {ended_key(Scope(COMPANY, campaign)) for campaign in campaigns}
    held = {
        node: set(valkey_cli(cluster, node, "--scan", "--pattern", "ec:ended:*").split())
        for node in served
    }
    print("keys per primary:", {n: valkey_cli(cluster, n, "DBSIZE").strip() for n in served})
    # Each campaign's marks on the primary that serves their slot, and on no other.
    assert held == {
        node: {key for key in marks if any(key_slot(key.encode()) in r for r in ranges)}
        for node, ranges in served.items()
    }
    assert sorted(len(keys) for keys in held.values()) == [1, 1, 1]
