"""`python -m bench.store_cluster`: the service with its store on one valkey server
against the same service with its store on a six-node Valkey Cluster, side by side in
one run on this machine (issue 22).

Columns: one server (`appendfsync always`, as the embedded default); a Valkey Cluster of
three primaries with a replica each (tests/valkey_cluster.py, `appendfsync always`,
ENDCONTACT_REDIS_CLUSTER=true) with ENDCONTACT_DURABLE_REPLICAS=0; the same with =1.
Each column has fresh servers, its broker apart, one `endcontact web` and
`endcontact worker --concurrency 2`.

In each column, in order: end-contact at 1 client, then at 16 clients (50 fresh numbers
a request, each client its own campaign, the campaigns spread evenly over the
primaries); checks of 1000 numbers (half ended) from one client, in a campaign of
--check-marks marks; --marks marks over --campaigns campaigns written straight into
the store as the workers write them, for the store's memory per mark. Store CPU is
every store process's CPU time over a phase, less what the same processes used at rest
(measured beforehand, with the web and workers running), divided by the numbers the
phase changed or checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
from redis.crc import key_slot

from bench.cluster import Cluster, run_seconds
from bench.load import Samples, closed_loop
from bench.reads import CheckBodies, bench_check, fill, national, quantiles
from bench.report import machine
from shared.apikeys import Scope
from shared.keyspace import ended_key
from shared.settings import Settings
from shared.store import Store
from tests.valkey_cluster import ValkeyCluster

COLUMNS = {"one server": None, "cluster durable=0": 0, "cluster durable=1": 1}
WORKERS = 2
CLIENTS = 16
COMPANY = "bench"
# A check's 500 ended numbers are distinct marks of one campaign (the API refuses a
# number twice in a request).
CHECK_ENDED = 500
ENDED_PATTERN = "ec:ended:{*}"  # as shared.keyspace.ended_key names them
# Nothing here fails a node: Valkey's own default, so that a node the busy machine
# starves of CPU for a second is not failed over in the middle of a measurement.
NODE_TIMEOUT_MS = 15_000


@dataclass
class Processes:
    """The store's server processes by name, and clients of its primaries."""

    all: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    primaries: dict[str, redis.Redis] = field(default_factory=dict)  # of some of them

    def cpu(self, only_primaries: bool = False) -> float:
        names = self.primaries if only_primaries else self.all
        return sum(run_seconds(self.all[name]) for name in names)

    def memory(self) -> tuple[int, int]:
        """The primaries' used_memory, and of it their replication backlogs (which grow
        with the writes up to repl-backlog-size, 10 MB, and then stay: a node's fixed
        cost, not the marks')."""
        infos = [client.info("memory") for client in self.primaries.values()]
        return (
            sum(int(info["used_memory"]) for info in infos),
            sum(int(info.get("mem_replication_backlog", 0)) for info in infos),
        )

    def key_counts(self) -> list[int]:
        return [int(client.dbsize()) for client in self.primaries.values()]

    def mark_counts(self) -> list[int]:
        """The marks each primary holds (a campaign's marks are one hash)."""
        return [
            sum(int(client.hlen(key)) for key in client.scan_iter(ENDED_PATTERN, count=1000))
            for client in self.primaries.values()
        ]


@dataclass
class Usage:
    """CPU seconds (store, store primaries, broker, web, workers) since `start`."""

    processes: Processes
    cluster: Cluster
    rest: tuple[float, float]  # the store's CPU seconds a second at rest (all, primaries)
    started: float = 0.0
    before: tuple[float, ...] = ()

    def start(self) -> Usage:
        self.started, self.before = time.perf_counter(), self._now()
        return self

    def _now(self) -> tuple[float, ...]:
        c = self.cluster
        return (
            self.processes.cpu(),
            self.processes.cpu(only_primaries=True),
            run_seconds(c.broker),
            run_seconds(c.web),
            run_seconds(c.worker),
        )

    def per(self, count: int) -> dict[str, float]:
        """Microseconds of CPU per one of `count` (the store's less its rest)."""
        wall = time.perf_counter() - self.started
        used = [now - then for now, then in zip(self._now(), self.before, strict=True)]
        used[0] -= self.rest[0] * wall
        used[1] -= self.rest[1] * wall
        names = ("store", "store primaries", "broker", "web", "workers")
        return {
            name: max(0.0, u) * 1e6 / max(1, count) for name, u in zip(names, used, strict=True)
        }


@dataclass
class Column:
    name: str
    figures: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: float | str, digits: int = 1) -> None:
        self.figures[name] = value if isinstance(value, str) else f"{value:,.{digits}f}"


def spread_campaigns(count: int, owner: Callable[[int], int]) -> list[str]:
    """`count` campaign names whose marks' slots go round the owners (the primaries, by
    `owner(slot)`) in turn, so that every primary takes as many writing clients."""
    owners = sorted({owner(slot) for slot in range(0, 16384, 64)})
    names: list[str] = []
    candidate = 0
    while len(names) < count:
        name = f"load-{candidate}"
        candidate += 1
        if (
            owner(key_slot(ended_key(Scope(COMPANY, name)).encode()))
            == owners[len(names) % len(owners)]
        ):
            names.append(name)
    return names


def store_servers(
    kind: int | None, work: Path, stack: ExitStack
) -> tuple[str | None, dict[str, str], Processes, Callable[[int], int]]:
    """A column's store, stopped when `stack` closes: its URL (None: the bench's own
    server, bench.cluster's), settings, processes, and which primary holds a slot."""
    if kind is None:
        return None, {}, Processes(), lambda slot: 0
    cluster = stack.enter_context(ValkeyCluster(work / "cluster", node_timeout_ms=NODE_TIMEOUT_MS))
    ports = cluster.primaries()
    processes = Processes(
        all={f"node {port}": process for port, process in cluster.nodes.items()},
        primaries={f"node {port}": cluster.client(port) for port in ports},
    )
    settings = {"ENDCONTACT_REDIS_CLUSTER": "true", "ENDCONTACT_DURABLE_REPLICAS": str(kind)}
    return cluster.url, settings, processes, cluster.primary_of_slot


def run_column(name: str, args: argparse.Namespace, work: Path) -> Column:
    column = Column(name)
    directory = work / name.replace(" ", "-").replace("=", "-")
    directory.mkdir()
    with ExitStack() as stack:
        url, settings, processes, owner = store_servers(COLUMNS[name], directory, stack)
        c = stack.enter_context(
            Cluster(directory, "endcontact", "endcontact", WORKERS, store_url=url, env=settings)
        )
        if url is None:  # the bench's own server
            assert c.redis is not None
            client = redis.Redis.from_url(c.redis_url, decode_responses=True)
            processes = Processes(all={"server": c.redis}, primaries={"server": client})
        env = {"REDIS_URL": c.redis_url, "ENDCONTACT_BROKER_URL": c.broker_url, **settings}
        store = Store.connect(Settings.from_env(env))
        stack.callback(store.close)
        secrets = [store.create_key(COMPANY, n)[1] for n in spread_campaigns(CLIENTS, owner)]
        asyncio.run(closed_loop("127.0.0.1", c.port, secrets[:2], 2, 1.0, warmup=0.5))

        # The store's CPU at rest, with the web and workers running (their sweeps, the
        # cluster's bus and cron): taken off every phase's figure.
        before, started = (processes.cpu(), processes.cpu(True)), time.perf_counter()
        time.sleep(args.rest)
        wall = time.perf_counter() - started
        rest = ((processes.cpu() - before[0]) / wall, (processes.cpu(True) - before[1]) / wall)
        column.put("store CPU at rest, ms/s", rest[0] * 1000, 1)

        one = asyncio.run(
            closed_loop("127.0.0.1", c.port, secrets[:1], 1, args.seconds, first_number=1_000_000)
        )
        cuts = statistics.quantiles(one.latencies, n=100)
        column.put("end-contact, 1 client: p50 ms", cuts[49] * 1000)
        column.put("end-contact, 1 client: p99 ms", cuts[98] * 1000)
        column.put("end-contact, 1 client: numbers/s", _rate(one), 0)

        usage = Usage(processes, c, rest).start()
        many = asyncio.run(
            closed_loop("127.0.0.1", c.port, secrets, CLIENTS, args.seconds, first_number=2_000_000)
        )
        cost = usage.per(many.all_numbers)
        column.put(f"end-contact, {CLIENTS} clients: numbers/s", _rate(many), 0)
        cuts = statistics.quantiles(many.latencies, n=100)
        column.put(f"end-contact, {CLIENTS} clients: p50 ms", cuts[49] * 1000)
        column.put(f"end-contact, {CLIENTS} clients: p99 ms", cuts[98] * 1000)
        failed = one.failures + one.errors * 50 + many.failures + many.errors * 50
        column.put("failed numbers (both levels)", failed, 0)
        column.put("store CPU µs per changed number", cost["store"])
        column.put("store CPU µs per changed number, primaries alone", cost["store primaries"])
        column.put("broker CPU µs per number", cost["broker"])
        column.put("web CPU µs per number", cost["web"])
        column.put("workers CPU µs per number", cost["workers"])

        # Checks of 1000 (half of them ended) in a campaign of their own, one after the
        # other; before the memory fill, whose append-only file may be rewritten after
        # it (a child process, counted with its server).
        key, secret = store.create_key(COMPANY, "check")
        fill(store, key.id, key.scope, args.check_marks)
        usage = Usage(processes, c, rest).start()
        base = f"http://127.0.0.1:{c.port}"
        with httpx.Client(base_url=base, headers={"x-api-key": secret}, timeout=60) as http:
            latencies = bench_check(http, CheckBodies(args.check_marks, national), args.checks)
        cost = usage.per((args.checks + 20) * 1000)  # bench_check warms up with 20
        p50, _, p99 = quantiles(latencies)
        column.put("check of 1000: p50 ms", p50)
        column.put("check of 1000: p99 ms", p99)
        column.put("store CPU µs per checked number", cost["store"], 2)
        column.put("store CPU µs per checked number, primaries alone", cost["store primaries"], 2)
        column.put("web CPU µs per checked number", cost["web"], 2)
        column.put("broker CPU µs per checked number", cost["broker"], 3)

        # Memory per mark: --marks marks in --campaigns campaigns, as the workers
        # write them (each with its event in the feed and in its history).
        per_campaign = args.marks // args.campaigns
        (used, backlog) = processes.memory()
        for n in range(args.campaigns):
            fill(store, key.id, Scope(COMPANY, f"memory-{n}"), per_campaign)
        marks = per_campaign * args.campaigns
        (used_after, backlog_after) = processes.memory()
        column.put("store bytes per mark (primaries' used_memory)", (used_after - used) / marks, 0)
        column.put(
            "  less the replication backlogs' growth",
            (used_after - used - (backlog_after - backlog)) / marks,
            0,
        )
        column.put(
            "replication backlog per primary, MiB",
            backlog_after / 2**20 / len(processes.primaries),
            1,
        )
        column.put("keys per primary", " / ".join(str(k) for k in processes.key_counts()))
        column.put("marks per primary", " / ".join(f"{m:,}" for m in processes.mark_counts()))
    return column


def _rate(samples: Samples) -> float:
    return (samples.numbers - samples.failures) / samples.seconds


def table(columns: list[Column]) -> str:
    rows = [f"| | {' | '.join(c.name for c in columns)} |", "|---" * (len(columns) + 1) + "|"]
    names = dict.fromkeys(name for c in columns for name in c.figures)
    for name in names:
        cells = " | ".join(c.figures.get(name, "-") for c in columns)
        rows.append(f"| {name} | {cells} |")
    return "\n".join(rows)


def main() -> None:
    # SIGTERM ends the run like Ctrl-C, through the exits that stop every process.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    parser = argparse.ArgumentParser(prog="python -m bench.store_cluster", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per end-contact level")
    parser.add_argument("--checks", type=int, default=400, help="checks of 1000 a column")
    parser.add_argument("--marks", type=int, default=200_000, help="the memory fill")
    parser.add_argument("--campaigns", type=int, default=100, help="the memory fill's")
    parser.add_argument("--check-marks", type=int, default=10_000, help="the checks' campaign")
    parser.add_argument("--rest", type=float, default=3.0, help="seconds at rest measured")
    parser.add_argument("--columns", default=",".join(COLUMNS))
    parser.add_argument("--short", action="store_true", help="a few seconds: does it work?")
    args = parser.parse_args()
    if args.short:
        args.seconds, args.checks, args.rest = 0.5, 5, 0.3
        args.marks, args.campaigns, args.check_marks = 2000, 10, CHECK_ENDED
    if args.check_marks < CHECK_ENDED:
        parser.error(f"--check-marks must be at least {CHECK_ENDED}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    columns = []
    with tempfile.TemporaryDirectory(prefix="endcontact-store-cluster-") as tmp:
        for name in args.columns.split(","):
            started = time.perf_counter()
            columns.append(run_column(name, args, Path(tmp)))
            print(f"{name}: done in {time.perf_counter() - started:.1f} s", flush=True)
    print()
    print(
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        f"{args.seconds:g} s a level after a 1 s warm-up, {args.checks} checks, "
        f"checks in a campaign of {args.check_marks:,} marks, "
        f"{args.marks:,} marks over {args.campaigns} campaigns; `endcontact web` and "
        f"`endcontact worker --concurrency {WORKERS}`, broker apart; "
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}."
    )
    print()
    print(table(columns))


if __name__ == "__main__":
    main()
