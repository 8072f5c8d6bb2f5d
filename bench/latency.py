"""Latency of 50-number requests, one at a time, against a running service.

    python bench/latency.py --url http://127.0.0.1:8000 --key "$KEY" [--requests 200]

Prints p50/p95/p99/max in milliseconds and how many numbers failed. Every request
uses fresh numbers, so each one does the full write.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--numbers", type=int, default=50)
    args = parser.parse_args()

    timings: list[float] = []
    failures = 0
    with httpx.Client(base_url=args.url, headers={"x-api-key": args.key}, timeout=30) as http:
        for i in range(args.requests + 10):
            base = 2_000_000 + (i * args.numbers) % 7_000_000
            numbers = [f"+1509{base + n:07d}" for n in range(args.numbers)]
            started = time.perf_counter()
            response = http.post("/api/v1/leads/end-contact", json={"phoneNumberList": numbers})
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if i >= 10:  # the first few warm connections and caches up
                timings.append(elapsed)
                failures += len(response.json()["failure"])
    cuts = statistics.quantiles(timings, n=100)
    print(
        f"{len(timings)} requests x {args.numbers} numbers: "
        f"p50 {cuts[49]:.1f} ms, p95 {cuts[94]:.1f} ms, p99 {cuts[98]:.1f} ms, "
        f"max {max(timings):.1f} ms; failed numbers {failures}"
    )


if __name__ == "__main__":
    main()
