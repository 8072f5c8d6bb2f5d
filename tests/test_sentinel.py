"""Several hosts: Redis found through Sentinel, a failover, and successes that survive it.

A primary, a replica and a Sentinel (all valkey-server), the web and a worker pointed
at the Sentinel with ENDCONTACT_DURABLE_REPLICAS=1. The primary is SIGKILLed; Sentinel
promotes the replica; the service follows it by itself, and every success told to a
client before the failover is on the new primary. The broker is a group of its own,
found through the same Sentinel (ENDCONTACT_BROKER_SENTINEL_MASTER).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from shared.broker import WORKERS
from shared.embedded import BROKER_ARGS, free_port, server_binary, start_server, stop_server
from shared.keyspace import ended_key
from shared.store import Store
from shared.tasks import RESULT_KEY_PREFIX
from tests.conftest import new_caller
from tests.helpers import TLS, post_numbers, wait_until
from tests.processes import http_ready, spawn, stop, wait_for, worker_ready

GROUP = "endcontact"
BROKER_GROUP = "endcontact-broker"
pytestmark = pytest.mark.timeout(180)


def start_sentinel(
    directory: Path, port: int, primary: int, broker: int
) -> subprocess.Popen[bytes]:
    directory.mkdir()
    config = directory / "sentinel.conf"
    # Sentinel rewrites this file as it learns; quick timings so the test is short.
    text = f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
    for name, server in ((GROUP, primary), (BROKER_GROUP, broker)):
        text += (
            f"sentinel monitor {name} 127.0.0.1 {server} 1\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 5000\n"
        )
    config.write_text(text)
    process = subprocess.Popen(
        [str(server_binary()), str(config), "--sentinel"], start_new_session=True
    )
    client = redis.Redis(port=port, socket_timeout=1)
    wait_until(lambda: _answers(client), 45, "sentinel up")
    return process


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def primary_port(sentinel: redis.Redis) -> int:
    host_port = sentinel.execute_command(  # type: ignore[no-untyped-call]
        "SENTINEL", "get-master-addr-by-name", GROUP
    )
    return int(host_port[1])


@pytest.fixture
def group(tmp_path: Path) -> Iterator[dict[str, int]]:
    ports = {
        "primary": free_port(),
        "replica": free_port(),
        "sentinel": free_port(),
        "broker": free_port(),
    }
    servers = [start_server(tmp_path / "primary", ports["primary"])]
    servers.append(start_server(tmp_path / "broker", ports["broker"], extra_args=BROKER_ARGS))
    servers.append(
        start_server(
            tmp_path / "replica",
            ports["replica"],
            extra_args=("--replicaof", "127.0.0.1", str(ports["primary"])),
        )
    )
    servers.append(
        start_sentinel(tmp_path / "sentinel", ports["sentinel"], ports["primary"], ports["broker"])
    )
    replica = redis.Redis(port=ports["replica"], decode_responses=True)
    wait_until(
        lambda: replica.info("replication").get("master_link_status") == "up",
        45,
        "replica in sync",
    )
    yield ports
    for server in servers:
        stop_server(server)


def test_failover_keeps_every_success(group: dict[str, int], tmp_path: Path) -> None:
    env = {
        "REDIS_URL": f"sentinel://127.0.0.1:{group['sentinel']}/0",
        "REDIS_SENTINEL_MASTER": GROUP,
        "ENDCONTACT_BROKER_URL": f"sentinel://127.0.0.1:{group['sentinel']}/0",
        "ENDCONTACT_BROKER_SENTINEL_MASTER": BROKER_GROUP,
        "ENDCONTACT_DURABLE_REPLICAS": "1",
        # A deadline no loaded machine misses: this is about what a failover keeps.
        "ENDCONTACT_RESULT_TIMEOUT": "10",
    }
    worker_log, web_log = tmp_path / "worker.log", tmp_path / "web.log"
    worker = spawn(["worker", "--concurrency=1"], env, worker_log)
    port = free_port()
    web = spawn(["web", f"--port={port}"], env, web_log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: worker_ready(worker_log), worker, worker_log)
        wait_for(lambda: http_ready(base), web, web_log)
        _fail_over(group, tmp_path, base)
        assert worker.poll() is None
        assert web.poll() is None
    finally:
        stop(web)
        stop(worker)


def _fail_over(group: dict[str, int], tmp_path: Path, base: str) -> None:
    store = Store(redis.Redis(port=group["primary"], decode_responses=True))
    caller = new_caller(store)
    before = [f"(509) 555-{n:04d}" for n in range(20)]
    first = post_numbers(base, caller.headers, before)
    assert first.status_code == 201
    assert len(first.json()["success"]) == 20, first.json()

    # The primary dies; Sentinel promotes the replica.
    old_primary = group["primary"]
    sentinel = redis.Redis(port=group["sentinel"], socket_timeout=2)
    pid = int(redis.Redis(port=old_primary).info("server")["process_id"])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: primary_port(sentinel) == group["replica"], 45, "replica promoted")

    # The old primary comes back; Sentinel makes it a replica of the new one, so
    # writes can again be confirmed on a replica's disk.
    back = start_server(tmp_path / "primary", old_primary)
    try:
        after = [f"(509) 555-{n:04d}" for n in range(100, 120)]
        answers: list[httpx.Response] = []

        def all_succeed() -> bool:
            answer = post_numbers(base, caller.headers, after)
            answers.append(answer)
            # Meanwhile: a 201 with failures to retry, or a 503; never a hang or a 500.
            assert answer.status_code in (201, 503), answer.text
            return answer.status_code == 201 and len(answer.json()["success"]) == 20

        wait_until(all_succeed, 60, "requests succeed after the failover", interval=0.2)
        new_primary = redis.Redis(port=group["replica"], decode_responses=True)
        marks = new_primary.hgetall(ended_key(caller.key.scope))
        assert set(marks) == {
            *first.json()["success"],
            *answers[-1].json()["success"],
        }
        ready = httpx.get(f"{base}/readyz", timeout=5, verify=TLS)
        assert ready.status_code == 200, ready.text
        # The broker group's primary carries the heartbeats and results; the store's
        # does not.
        broker = redis.Redis(port=group["broker"], decode_responses=True)
        assert broker.zcard(WORKERS) == 1
        assert broker.keys(f"{RESULT_KEY_PREFIX}*")
        assert not new_primary.exists(WORKERS)
        assert not new_primary.keys(f"{RESULT_KEY_PREFIX}*")
    finally:
        stop_server(back)
