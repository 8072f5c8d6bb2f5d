"""A closed-loop HTTP load generator: `concurrency` connections, each sending its next
50-number request as soon as the last one is answered, for a fixed time.

A bare HTTP/1.1 client over asyncio streams, so the generator, sharing the machine
with what it measures, spends as little CPU per request as it can.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

PATH = "/api/v1/leads/end-contact"


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    numbers: int = 0  # numbers in answered 201s
    failures: int = 0  # of those, numbers in `failure`
    errors: int = 0  # requests not answered 201
    seconds: float = 0.0
    # Including the warm-up: what the CPU used over the whole run is divided by.
    all_requests: int = 0
    all_numbers: int = 0
    server_errors: int = 0  # 5xx answers, warm-up included
    # E.164 numbers answered as successes, when asked for (to check them afterwards).
    successes: list[str] | None = None

    def add(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.numbers += other.numbers
        self.failures += other.failures
        self.errors += other.errors
        self.all_requests += other.all_requests
        self.all_numbers += other.all_numbers
        self.server_errors += other.server_errors
        if other.successes is not None:
            self.successes = (self.successes or []) + other.successes


class Numbers:
    """Fresh valid numbers for every request: each one is a full first-time write."""

    def __init__(self, start: int = 0) -> None:
        self._counter = itertools.count(start)

    def take(self, count: int) -> list[str]:
        out = []
        for n in itertools.islice(self._counter, count):
            exchange, line = 200 + (n // 10_000) % 800, n % 10_000
            out.append(f"(509) {exchange:03d}-{line:04d}")
        return out


def _request(host: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _user(
    host: str,
    port: int,
    key: str,
    numbers: Numbers,
    per_request: int,
    measure_from: float,
    until: float,
    samples: Samples,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (started := time.perf_counter()) < until:
            body = json.dumps({"phoneNumberList": numbers.take(per_request)}).encode()
            writer.write(_request(host, key, body))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            payload = await reader.readexactly(length)
            finished = time.perf_counter()
            samples.all_requests += 1
            samples.all_numbers += per_request if status == 201 else 0
            samples.server_errors += status >= 500
            if samples.successes is not None and status == 201:
                samples.successes += json.loads(payload)["success"]
            if started < measure_from:
                continue
            samples.latencies.append(finished - started)
            if status == 201:
                samples.numbers += per_request
                samples.failures += len(json.loads(payload)["failure"])
            else:
                samples.errors += 1
    finally:
        writer.close()


async def closed_loop(
    host: str,
    port: int,
    key: str | Sequence[str],
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    per_request: int = 50,
    first_number: int = 0,
    keep_successes: bool = False,
) -> Samples:
    numbers = Numbers(first_number)
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    per_user = [Samples(successes=[] if keep_successes else None) for _ in range(concurrency)]
    # Several keys: connection i writes with key i (mod their count), each to its campaign.
    keys = [key] if isinstance(key, str) else list(key)
    await asyncio.gather(
        *(
            _user(
                host, port, keys[i % len(keys)], numbers, per_request, measure_from, until, samples
            )
            for i, samples in enumerate(per_user)
        )
    )
    total = Samples(
        seconds=time.perf_counter() - measure_from, successes=[] if keep_successes else None
    )
    for samples in per_user:
        total.add(samples)
    return total
