"""Closed-loop load against endcontact with the broker apart (or on one server), where
a refused client waits its Retry-After as the project's client does (a little longer
at random: endcontact_client.retry.wait_before_retry).

    python -m bench.overload --clients 1 16 64 256 --seconds 20 [--one-server]

Per level: answers by status, numbers accepted (in 201s) and failed, numbers/s that
succeeded, latency of the 201s and of the refusals (503), and the slowest answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.cluster import ROOT, _wait, cpu_seconds
from bench.load import Numbers, _request
from cli.run import healthy
from endcontact_client.retry import Backoff, wait_before_retry
from shared.embedded import BROKER_ARGS, free_port, start_server, stop_server
from shared.store import Store


@dataclass
class Level:
    accepted: list[float] = field(default_factory=list)  # latencies of 201s
    refused: list[float] = field(default_factory=list)  # latencies of 503s
    other: int = 0
    numbers: int = 0
    failed: int = 0
    seconds: float = 0.0


async def _client(port: int, key: str, numbers: Numbers, until: float, level: Level) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (started := time.perf_counter()) < until:
            body = json.dumps({"phoneNumberList": numbers.take(50)}).encode()
            writer.write(_request("127.0.0.1", key, body))
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, retry = int(head[9:12]), 0, 0.0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"retry-after":
                    retry = float(value)
            payload = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if status == 201:
                level.accepted.append(elapsed)
                level.numbers += 50
                level.failed += len(json.loads(payload)["failure"])
            elif status == 503:
                level.refused.append(elapsed)
                # A new connection after the wait: the server closes idle ones after
                # 5 s (uvicorn's keep-alive), as long as the longest Retry-After.
                writer.close()
                await asyncio.sleep(wait_before_retry(retry, 0, Backoff(), math.inf) or 0.0)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            else:
                level.other += 1
    finally:
        writer.close()


async def load(port: int, key: str, clients: int, seconds: float, first: int) -> Level:
    level = Level()
    numbers = Numbers(first)
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(port, key, numbers, started + seconds, level) for _ in range(clients))
    )
    level.seconds = time.perf_counter() - started
    return level


def quantile_ms(values: list[float], q: float) -> float:
    """The `q` quantile of latencies in seconds, in milliseconds (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float], q: float) -> str:
    return "-" if not values else f"{quantile_ms(values, q):.0f}"


def report(clients: int, level: Level, cpu: dict[str, float]) -> str:
    answers = level.accepted + level.refused
    failed = 100 * level.failed / level.numbers if level.numbers else 0.0
    done = (level.numbers - level.failed) / level.seconds
    p50 = f"{1000 * statistics.median(level.accepted):.0f}" if level.accepted else "-"
    return (
        f"| {clients} | {len(level.accepted)} | {len(level.refused)} | {level.other} "
        f"| {level.numbers} | {level.failed} ({failed:.2f} %) | {done:.0f} "
        f"| {p50} | {_ms(level.accepted, 0.99)} | {_ms(level.refused, 0.5)} "
        f"| {_ms(level.refused, 0.99)} | {1000 * max(answers, default=0):.0f} | "
        + " / ".join(f"{seconds / level.seconds:.2f}" for seconds in cpu.values())
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    parser.add_argument("--one-server", action="store_true", help="REDIS_URL alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="endcontact-overload-"))
    store_port, broker_port, web_port = free_port(), free_port(), free_port()
    servers = [start_server(work / "store", store_port)]
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{store_port}/0"}
    env["ENDCONTACT_RATE_LIMIT"] = "0"
    if not args.one_server:
        servers.append(start_server(work / "broker", broker_port, extra_args=BROKER_ARGS))
        env["ENDCONTACT_BROKER_URL"] = f"redis://127.0.0.1:{broker_port}/0"
    log = open(work / "processes.log", "ab")  # noqa: SIM115
    spawn = [
        [sys.executable, "-m", "cli", "worker", f"--concurrency={args.workers}"],
        [sys.executable, "-m", "cli", "web", f"--port={web_port}"],
    ]
    processes = [
        subprocess.Popen(a, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        for a in spawn
    ]
    try:
        _wait(lambda: healthy(f"http://127.0.0.1:{web_port}"), processes[1], "web")
        _wait(
            lambda: (
                (work / "processes.log").read_text(errors="replace").count(" ready.")
                >= args.workers
            ),
            processes[0],
            "worker",
        )
        store = Store(redis.Redis(port=store_port, decode_responses=True))
        key = store.create_key("bench", "overload")[1]
        print(f"{'one server' if args.one_server else 'broker apart'}, {args.workers} workers")
        print(
            "| clients | 201 | 503 | other | numbers accepted | failed | done/s "
            "| 201 p50 ms | 201 p99 ms | 503 p50 ms | 503 p99 ms | slowest ms "
            "| cores: web / workers / store / broker / load generator |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        parts = {"web": processes[1], "workers": processes[0], "store": servers[0]}
        if not args.one_server:
            parts["broker"] = servers[1]
        first = 0
        for clients in args.clients:
            asyncio.run(load(web_port, key, min(clients, 16), 3.0, first))  # warm, measured
            first += 1_000_000
            before = {name: cpu_seconds(process) for name, process in parts.items()}
            # This process is the load generator: on the same cores as the service, it
            # competes with it, the more so the more clients it has.
            generating = time.process_time()
            level = asyncio.run(load(web_port, key, clients, args.seconds, first))
            used = {name: cpu_seconds(process) - before[name] for name, process in parts.items()}
            used["load generator"] = time.process_time() - generating
            first += 1_000_000
            print(report(clients, level, used), flush=True)
            time.sleep(6)  # the queue drains, tasks of given-up requests expire
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
        for server in servers:
            stop_server(server)
        log.close()


if __name__ == "__main__":
    main()
