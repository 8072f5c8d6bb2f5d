"""Where the CPU goes, per number, process by process: endcontact or the direct floor
under closed-loop load, each part's CPU from the scheduler's own account (run_seconds);
and what endcontact's broker holds at the end (its memory and keys: results are kept a
little past their deadline, so a run of a minute or more shows the steady state).

    python -m bench.cpu --clients 16 --seconds 10 [--system direct]

The benchmark's columns (psutil's tick counts) miss much of what servers spend in
short bursts; this is the figure the floor is compared by (bench/README.md, "Closer
to the floor").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis

from bench.__main__ import SYSTEMS
from bench.cluster import Cluster, run_seconds
from bench.load import closed_loop


def measure(system: str, clients: int, seconds: float, workers: int) -> str:
    web, worker = SYSTEMS[system]
    with (
        tempfile.TemporaryDirectory(prefix="endcontact-cpu-") as tmp,
        Cluster(Path(tmp), web, worker, workers) as cluster,
    ):
        key = cluster.create_key()
        asyncio.run(closed_loop("127.0.0.1", cluster.port, key, clients, 2.0, warmup=0.5))
        parts = {
            "web": cluster.web,
            "workers": cluster.worker,
            "store": cluster.redis,
            "broker": cluster.broker,
        }
        if cluster.worker is None:  # the floor: its web and its store, nothing else
            del parts["workers"], parts["broker"]
        before = {name: run_seconds(process) for name, process in parts.items()}
        generator, started = time.process_time(), time.perf_counter()
        samples = asyncio.run(
            closed_loop("127.0.0.1", cluster.port, key, clients, seconds, first_number=5_000_000)
        )
        wall = time.perf_counter() - started
        used = {name: run_seconds(process) - before[name] for name, process in parts.items()}
        used["load generator"] = time.process_time() - generator
        # What the broker holds at the end: each result until ten seconds past its
        # deadline (shared.tasks.KEPT_PAST_EXPIRY) and the queue's tasks; the steady
        # state once the run is longer than a result's life.
        held = ""
        if cluster.worker is not None:
            with redis.Redis.from_url(cluster.broker_url) as broker:
                memory, keys = broker.info("memory")["used_memory"], broker.dbsize()
            held = f"; broker memory at the end {memory / 1e6:.0f} MB ({keys:,} keys)"
    numbers = 50 * samples.all_requests
    total = sum(used.values())
    p50 = 1000 * statistics.median(samples.latencies) if samples.latencies else float("nan")
    per_number = ", ".join(f"{name} {1e6 * cpu / numbers:.1f}" for name, cpu in used.items())
    return (
        f"{system}, {clients} clients: {samples.numbers / samples.seconds:,.0f} numbers/s, "
        f"p50 {p50:.1f} ms; CPU per number (µs): {per_number}; total "
        f"{1e6 * total / numbers:.1f}; cores busy {total / wall:.2f}{held}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("--system", choices=["endcontact", "direct"], default="endcontact")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    args = parser.parse_args()
    print(measure(args.system, args.clients, args.seconds, args.workers), flush=True)


if __name__ == "__main__":
    main()
