"""`python -m bench`: endcontact against the naive way, Celery's floor and the direct
floor, on this machine, each system with its own Redis-compatible server and processes.

Prints a table and the ratios the targets are stated in; writes results.md and
results.png to --out. `--short` runs a few seconds in all, to prove the benchmark
works (the test suite does that), not to measure anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio

from api.results import result_key
from bench.cluster import Cluster, cpu_seconds, rss_mib
from bench.load import Numbers, Samples, closed_loop
from bench.overload import load
from bench.report import HEADER, Memory, Overload, Point, plot, report, row
from shared.apikeys import Scope
from shared.keyspace import ended_key
from shared.phones import to_e164
from shared.settings import Settings
from shared.tasks import TASK_NAME, task_args
from worker.app import create_celery

# name: (web, worker). "typical" is Celery with its defaults (bench/typical.py): what
# most people run; "naive + our worker" shows how much of the gap the worker alone closes.
SYSTEMS = {
    "endcontact": ("endcontact", "endcontact"),
    "naive": ("bench.baselines:naive_app", "typical"),
    "naive + our worker": ("bench.baselines:naive_app", "endcontact"),
    "direct": ("bench.baselines:direct_app", None),
}


def run_system(
    name: str,
    concurrencies: list[int],
    seconds: float,
    workers: int,
    work: Path,
    overload: int = 0,
) -> tuple[list[Point], Memory, Overload | None]:
    points = []
    web, worker = SYSTEMS[name]
    typical = worker == "typical"
    # The typical worker runs Celery's usual prefork pool with a process per core.
    count = (os.cpu_count() or 1) if typical else workers
    directory = work / name.replace(" + ", "-").replace(" ", "-")
    directory.mkdir()
    with Cluster(directory, web, worker, count) as cluster:
        key = cluster.create_key()
        # A short warm-up so start-up costs are not in the first point or memory.
        asyncio.run(closed_loop("127.0.0.1", cluster.port, key, 2, 1.0, warmup=0.5))
        web0, worker0 = rss_mib(cluster.web), rss_mib(cluster.worker)
        first = 1_000_000
        for concurrency in concurrencies:
            parts = {"web": cluster.web, "workers": cluster.worker, "redis": cluster.redis}
            before = {part: cpu_seconds(process) for part, process in parts.items()}
            generator, started = time.process_time(), time.perf_counter()
            samples = asyncio.run(
                closed_loop(
                    "127.0.0.1", cluster.port, key, concurrency, seconds, first_number=first
                )
            )
            first += 1_000_000
            point = Point.of(name, concurrency, samples)
            wall = time.perf_counter() - started
            used = {part: cpu_seconds(process) - before[part] for part, process in parts.items()}
            point.cores = {part: seconds / wall for part, seconds in used.items()}
            point.cores["load generator"] = (time.process_time() - generator) / wall
            point.web_cpu_ms = used["web"] * 1000 / max(1, samples.all_requests)
            if cluster.worker is not None:
                point.worker_cpu_ms = used["workers"] * 1000 / max(1, samples.all_numbers)
            points.append(point)
            print(row(points[-1]), flush=True)
        past = None
        if overload and name == "endcontact":
            # Past saturation: clients that wait their Retry-After, as the project's client does.
            past = Overload.of(
                overload, asyncio.run(load(cluster.port, key, overload, seconds, first))
            )
            print(past.row(), flush=True)
        memory = Memory(name, web0, rss_mib(cluster.web), worker0, rss_mib(cluster.worker))
    return points, memory, past


def celery_floor(seconds: float, workers: int, work: Path) -> Point:
    """No HTTP: plain apply_async of 50 tasks, then read the result keys every 1 ms."""
    with Cluster(work / "floor", None, "endcontact", workers) as cluster:
        app = create_celery(
            Settings.from_env(
                {"REDIS_URL": cluster.redis_url, "ENDCONTACT_BROKER_URL": cluster.broker_url}
            )
        )
        client = redis.Redis.from_url(cluster.broker_url)  # the result keys
        scope, numbers = Scope("bench", "floor"), Numbers()
        samples = Samples()
        warm_until = time.perf_counter() + 1.0
        until = warm_until + seconds
        while True:
            # As the web hands them on: in E.164 (the worker takes nothing else).
            phones = [to_e164(phone, "US") for phone in numbers.take(50)]
            if (started := time.perf_counter()) >= until:
                break
            ids = [app.send_task(TASK_NAME, args=task_args(scope, phone)).id for phone in phones]
            keys = [result_key(task_id) for task_id in ids]
            deadline = started + 5
            while any(value is None for value in client.mget(keys)):
                if time.perf_counter() > deadline:
                    break
                time.sleep(0.001)
            finished = time.perf_counter()
            if started >= warm_until:
                done = sum(
                    value is not None and b'"SUCCESS"' in value for value in client.mget(keys)
                )
                samples.latencies.append(finished - started)
                samples.numbers += 50
                samples.failures += 50 - done
        samples.seconds = time.perf_counter() - warm_until
    return Point.of("celery floor", 1, samples)


def drain_ceiling(tasks: int, workers: int, work: Path, runs: int = 3) -> float:
    """Tasks per second the same worker command drains from a pre-filled queue:
    the median of `runs` runs, each on a fresh server (one run spreads by ±10 %)."""
    rates = []
    for run in range(runs):
        directory = work / f"drain-{run}"
        directory.mkdir()
        rates.append(_drain_once(tasks, workers, directory))
    return statistics.median(rates)


def _drain_once(tasks: int, workers: int, directory: Path) -> float:
    with Cluster(directory, None, None, workers) as cluster:
        scope = Scope("bench", "drain")
        cluster.fill_queue(scope, tasks)
        cluster.start_worker()
        return cluster.drain_rate(scope, tasks, timeout=120)


def soak(seconds: float, concurrency: int, workers: int, work: Path) -> None:
    """endcontact under steady load, the workers restarted (SIGTERM, then started
    again) in the middle of every minute; RSS every minute; at the end, every number
    answered as a success is looked up in Redis."""
    directory = work / "soak"
    directory.mkdir()
    with Cluster(directory, "endcontact", "endcontact", workers) as cluster:
        key = cluster.create_key()

        def restart() -> None:
            assert cluster.worker is not None
            cluster.worker.terminate()
            cluster.worker.wait(60)
            cluster.start_worker()

        async def minute_of_load(first: int) -> Samples:
            async def restart_later() -> None:
                await asyncio.sleep(30)
                await asyncio.to_thread(restart)

            samples, _ = await asyncio.gather(
                closed_loop(
                    "127.0.0.1",
                    cluster.port,
                    key,
                    concurrency,
                    59.0,
                    warmup=0.0,
                    first_number=first,
                    keep_successes=True,
                ),
                restart_later(),
            )
            return samples

        print("minute | web RSS MiB | worker RSS MiB | numbers/s | p99 ms | failed | 5xx")
        print(f"0 | {rss_mib(cluster.web):.1f} | {rss_mib(cluster.worker):.1f} | | | |")
        successes: list[str] = []
        first = 0
        for minute in range(1, int(seconds // 60) + 1):
            samples = asyncio.run(minute_of_load(first))
            first += 3_000_000
            successes += samples.successes or []
            point = Point.of("soak", concurrency, samples)
            print(
                f"{minute} | {rss_mib(cluster.web):.1f} | {rss_mib(cluster.worker):.1f} | "
                f"{point.numbers_per_s:.0f} | {point.p99:.0f} | {point.failures} | "
                f"{samples.server_errors}",
                flush=True,
            )
        client = redis.Redis.from_url(cluster.redis_url)
        marks = ended_key(Scope("bench", "bench"))
        missing = 0
        for start in range(0, len(successes), 1000):
            chunk = successes[start : start + 1000]
            missing += sum(value is None for value in client.hmget(marks, chunk))
        print(f"{len(successes)} numbers answered as successes; {missing} of them not stored")


def main() -> None:
    # SIGTERM ends the run like Ctrl-C: through the clusters' exits, so no server,
    # worker or web is left behind (they run in sessions of their own).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per point")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    parser.add_argument(
        "--overload",
        type=int,
        default=512,
        metavar="CLIENTS",
        help="endcontact past saturation: this many clients that wait their Retry-After (0: none)",
    )
    parser.add_argument("--drain-tasks", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--short", action="store_true", help="a few seconds: does it work?")
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="only endcontact at concurrency 16 for SECONDS, memory every minute",
    )
    args = parser.parse_args()
    if args.soak:
        with tempfile.TemporaryDirectory(prefix="endcontact-soak-") as tmp:
            soak(args.soak, 16, args.workers, Path(tmp))
        return
    if args.short:
        args.seconds, args.concurrency, args.drain_tasks = 0.5, "1,4", 300
        args.overload = min(args.overload, 32)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    points: list[Point] = []
    memory: list[Memory] = []
    overloaded: Overload | None = None
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="endcontact-bench-") as tmp:
        work = Path(tmp)
        for system in args.systems.split(","):
            system_points, system_memory, past = run_system(
                system, concurrencies, args.seconds, args.workers, work, args.overload
            )
            points += system_points
            memory.append(system_memory)
            overloaded = overloaded or past
        (work / "floor").mkdir()
        floor = celery_floor(max(args.seconds, 1.0), args.workers, work)
        print(row(floor), flush=True)
        # One run proves it works; three are what a figure needs (a run spreads ±10 %).
        drain = drain_ceiling(args.drain_tasks, args.workers, work, runs=1 if args.short else 3)
    text = report(points, floor, drain, memory, args.seconds, args.workers, overloaded)
    print()
    print(text)
    (args.out / "results.md").write_text(text)
    plot(points, floor, drain, args.out / "results.png", overloaded)
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.png'}")


if __name__ == "__main__":
    main()
