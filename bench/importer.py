"""The bulk import against the service's saturated rate:
`python -m bench.importer [N] [ROUNDS] [CONCURRENCY ...]` (default 100,000 numbers, 3
rounds, the command's default --concurrency).

Starts its own store, broker, `endcontact worker --concurrency 3` and `endcontact web`
(bench.cluster, as the main benchmark runs endcontact), then, ROUNDS times in turn so
that other load on the machine falls on all of them alike:

- saturated: bench.load's closed loop at 16 clients for 10 s, the service's numbers/s
  as bench/results/results.md measures it;
- for each CONCURRENCY: a CSV of N fresh valid numbers (a name column, then
  phoneNumber, national format) imported with `endcontact import FILE --concurrency C`
  as a user runs it; numbers/s over the whole command (start-up and reading the file
  included), the importer's CPU per number, every row checked `ended`;

and a last saturated run. Each import is set against the mean of the saturated runs
either side of it; prints each figure, then per concurrency the median ratio over the
rounds with the lowest and highest.
"""

from __future__ import annotations

import asyncio
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.arguments import counts
from bench.cluster import ROOT, Cluster
from bench.load import Numbers, closed_loop
from cli.importer.sending import DEFAULT_CONCURRENCY, KEY_VARIABLE
from shared.store import Store

WORKERS = 3  # as bench/results/results.md's endcontact
SATURATING_CLIENTS = 16
SECONDS = 10.0


def saturated(cluster: Cluster, key: str, first: int) -> float:
    """Numbers per second at 16 clients, as the main benchmark measures them."""
    samples = asyncio.run(
        closed_loop("127.0.0.1", cluster.port, key, SATURATING_CLIENTS, SECONDS, first_number=first)
    )
    assert samples.errors == 0, samples.errors
    return samples.numbers / samples.seconds


def write_csv(path: Path, count: int, first: int) -> None:
    numbers = Numbers(first)
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("name", "phoneNumber"))
        for start in range(0, count, 1000):
            for i, number in enumerate(numbers.take(min(1000, count - start))):
                writer.writerow((f"Lead {start + i}", number))


def run_import(
    cluster: Cluster, key: str, source: Path, concurrency: int
) -> tuple[float, float, str]:
    """Seconds the command took, its CPU seconds, and its summary line."""
    env = {**os.environ, KEY_VARIABLE: key}
    command = [
        sys.executable,
        "-m",
        "cli",
        "import",
        str(source),
        f"--url=http://127.0.0.1:{cluster.port}",
        f"--concurrency={concurrency}",
    ]
    log = source.with_suffix(".log")
    with open(log, "wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
        # wait4: the command's own CPU time, which Popen does not give.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    out = log.read_text()
    assert process.returncode == 0, (process.returncode, out)
    return seconds, usage.ru_utime + usage.ru_stime, out.strip()


def check_results(path: Path, count: int) -> None:
    with open(path, encoding="utf-8", newline="") as results:
        rows = list(csv.reader(results))
    # The input's columns, then the outcome's (phoneNumber renamed: the input has one).
    assert rows[0] == ["name", "phoneNumber", "phoneNumber_result", "status", "detail"]
    assert len(rows) == count + 1, len(rows)
    statuses = {row[3] for row in rows[1:]}
    assert statuses == {"ended"}, statuses


def main() -> None:
    count, rounds, *concurrencies = counts(__doc__, [100_000, 3], more=True)
    concurrencies = concurrencies or [DEFAULT_CONCURRENCY]
    ratios: dict[int, list[float]] = {c: [] for c in concurrencies}
    rates: dict[int, list[float]] = {c: [] for c in concurrencies}
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        with Cluster(directory, "endcontact", "endcontact", WORKERS) as cluster:
            client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
            key = Store(client).create_key("bench", "import")[1]
            client.close()
            # Start-up costs (first connections, imports) out of the first figure.
            asyncio.run(closed_loop("127.0.0.1", cluster.port, key, 2, 1.0, warmup=0.5))
            # Fresh numbers for every run: each one a first-time write, as in results.md.
            first = 0
            before = saturated(cluster, key, first)
            print(f"saturated (closed loop, 16 clients): {before:,.0f} numbers/s", flush=True)
            for round_ in range(rounds):
                runs = []
                for concurrency in concurrencies:
                    first += 250_000
                    source = directory / f"numbers-{round_}-{concurrency}.csv"
                    write_csv(source, count, first)
                    seconds, cpu, _ = run_import(cluster, key, source, concurrency)
                    check_results(source.with_name(f"{source.stem}.results.csv"), count)
                    runs.append((concurrency, count / seconds))
                    print(
                        f"round {round_}: import of {count:,} numbers, --concurrency "
                        f"{concurrency}: {seconds:.1f} s, {count / seconds:,.0f} numbers/s; "
                        f"importer CPU {cpu * 1e6 / count:.0f} µs a number",
                        flush=True,
                    )
                first += 250_000
                after = saturated(cluster, key, first)
                print(f"saturated: {after:,.0f} numbers/s", flush=True)
                for concurrency, rate in runs:
                    rates[concurrency].append(rate)
                    ratios[concurrency].append(rate / ((before + after) / 2))
                before = after
    for concurrency in concurrencies:
        rate, ratio = statistics.median(rates[concurrency]), statistics.median(ratios[concurrency])
        low, high = min(ratios[concurrency]), max(ratios[concurrency])
        print(
            f"import --concurrency {concurrency}: median {rate:,.0f} numbers/s, {ratio:.2f}x "
            f"the saturated rate (rounds {low:.2f}-{high:.2f})"
        )


if __name__ == "__main__":
    main()
