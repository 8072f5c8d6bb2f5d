"""Webhook deliveries: `python -m bench.webhooks [--short]`.

On one system (store, broker, `endcontact worker`, `endcontact web`) with a receiver
on this machine (bench.receiver, threads of this process):

1. latency: one number per request, one at a time; from the 201's arrival here to
   the delivery's arrival at the receiver (both on this process's monotonic clock);
2. throughput: 1,000 events (20 requests of 50, one after the other) to one fast receiver, the
   rate from the first delivery's arrival to the 1,000th;
3. what webhooks cost end-contact: the closed-loop benchmark (bench.load) for a
   campaign without webhooks and one with a webhook, alternating, at 16 clients with
   a fast receiver and at 1 client with one that hangs on every request. Between
   runs it waits for the deliveries to drain, so that one run's deliveries do not
   fall on the next.

The receiver shares the machine (2 cores here) with everything it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.cluster import Cluster
from bench.load import Numbers, closed_loop
from bench.receiver import Receiver, always
from shared.store import Store
from worker.deliveries.process import lowest_priority

URL = "/api/v1/leads/end-contact"


def make_webhook(base: str, key: str, url: str) -> str:
    answer = httpx.post(f"{base}/api/v1/webhooks", json={"url": url}, headers={"x-api-key": key})
    answer.raise_for_status()
    return str(answer.json()["id"])


def wait_for(receiver: Receiver, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(receiver.received)} of {count} deliveries in {timeout} s")
        time.sleep(0.001)


def drained(client: redis.Redis, timeout: float = 300) -> None:
    """Until no delivery is pending (every event passed, no retry due)."""
    deadline = time.monotonic() + timeout
    store = Store(client)
    while store.pending_deliveries():
        if time.monotonic() > deadline:
            raise RuntimeError("deliveries did not drain")
        time.sleep(0.05)


def latency(base: str, key: str, receiver: Receiver, samples: int) -> list[float]:
    numbers = Numbers(5_000_000)
    found: list[float] = []
    with httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=30) as http:
        for _ in range(samples):
            before = len(receiver.received)
            answer = http.post(URL, json={"phoneNumberList": numbers.take(1)})
            answered = time.monotonic()
            assert answer.status_code == 201, answer.text
            wait_for(receiver, before + 1, 30)
            found.append(receiver.received[before].at - answered)
    return found


def throughput(
    base: str, key: str, receiver: Receiver, events: int, first: int = 6_000_000
) -> tuple[float, float]:
    """Deliveries per second, first to last arrival; seconds from the first request
    sent to the last delivery."""
    numbers = Numbers(first)
    bodies = [numbers.take(50) for _ in range(events // 50)]
    before = len(receiver.received)

    started = time.monotonic()
    # One after the other: at once, they would be refused as more than the workers are
    # known to do in time (api.admission), after the quiet before.
    with httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=30) as http:
        for phones in bodies:
            answer = http.post(URL, json={"phoneNumberList": phones})
            assert answer.status_code == 201, answer.text
    wait_for(receiver, before + events, 120)
    arrivals = [one.at for one in receiver.received[before : before + events]]
    return (events - 1) / (arrivals[-1] - arrivals[0]), arrivals[-1] - started


def load(cluster: Cluster, key: str, clients: int, seconds: float, first: int) -> float:
    """Numbers per second, end-contact, closed loop."""
    samples = asyncio.run(
        closed_loop("127.0.0.1", cluster.port, key, clients, seconds, first_number=first)
    )
    assert samples.failures == 0, samples.failures
    return samples.numbers / samples.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="a few seconds: proves it runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of load runs")
    parser.add_argument("--seconds", type=float, default=8.0, help="of one load run")
    args = parser.parse_args()
    samples, events, seconds, rounds = (
        (5, 100, 1.0, 1) if args.short else (100, 1000, args.seconds, args.rounds)
    )
    # The receivers are on 127.0.0.1; the processes read this from the environment.
    os.environ["ENDCONTACT_WEBHOOK_ALLOW_PRIVATE"] = "true"
    with (
        tempfile.TemporaryDirectory() as work,
        Cluster(Path(work), "endcontact", "endcontact", args.workers) as cluster,
        Receiver(always(200)) as fast,
    ):
        base = f"http://127.0.0.1:{cluster.port}"
        client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
        store = Store(client)
        keys = {name: store.create_key("bench", name)[1] for name in ("plain", "fast")}
        make_webhook(base, keys["fast"], fast.url)

        found = latency(base, keys["fast"], fast, samples)
        drained(client)
        print(
            f"delivery latency after the 201, {samples} events one at a time: "
            f"p50 {statistics.median(found) * 1000:.1f} ms, "
            f"p90 {sorted(found)[int(len(found) * 0.9) - 1] * 1000:.1f} ms, "
            f"max {max(found) * 1000:.1f} ms"
        )
        rate, total = throughput(base, keys["fast"], fast, events)
        drained(client)
        print(
            f"{events} events to one fast receiver: {rate:.0f} deliveries/s "
            f"(first to last arrival); {total:.2f} s from the first request to the last"
        )

        first = 10_000_000
        for clients, hooked in ((16, "fast"), (1, "stuck")):
            # The receiver in a process of its own: in this one it would slow the load
            # generator, not the service.
            with subprocess.Popen(
                [sys.executable, "-m", "bench.receiver", *(["hang"] if hooked == "stuck" else [])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                # It stands for a receiver on another machine: it takes only the CPU
                # the service leaves.
                preexec_fn=lowest_priority,
            ) as apart:
                assert apart.stdout is not None
                assert apart.stdin is not None
                key = store.create_key("bench", f"{hooked}-{clients}")[1]
                make_webhook(base, key, apart.stdout.readline().strip())
                keys[hooked] = key
                runs: dict[str, list[float]] = {"plain": [], hooked: []}
                for round_ in range(rounds):
                    order = ("plain", hooked) if round_ % 2 == 0 else (hooked, "plain")
                    for name in order:
                        runs[name].append(load(cluster, keys[name], clients, seconds, first))
                        first += 1_000_000
                        if hooked == "fast":
                            drained(client)
                apart.stdin.close()
            plain, with_hook = statistics.median(runs["plain"]), statistics.median(runs[hooked])
            print(
                f"end-contact at {clients} client(s), numbers/s, median of {rounds}: "
                f"without webhooks {plain:.0f}, with a {hooked} receiver {with_hook:.0f} "
                f"({(with_hook / plain - 1) * 100:+.1f} %) "
                f"[{', '.join(f'{v:.0f}' for v in runs['plain'])} / "
                f"{', '.join(f'{v:.0f}' for v in runs[hooked])}]"
            )
        client.close()


if __name__ == "__main__":
    main()
