"""The reads: `python -m bench.reads [MARKS] [ROUNDS]` (default 1,000,000 and 3).

Starts its own server and `endcontact web` (no worker: nothing here goes through
Celery), fills one campaign with MARKS marks straight into the store as the workers
write them (Store.apply_changes: requests of 50 numbers, each number with its event in
the feed and in its history, 20 requests a round trip), and measures the store's memory
per mark, against the same numbers stored as before events existed (a hash of
endedAt, in a campaign of its own). Then, ROUNDS times in turn so that
other load on the machine falls on all of them:

- check: 200 bulk checks of 1000 numbers each from one client, one after the other,
  after 20 to warm up; half the numbers ended, half not, each request new numbers,
  in E.164 (what a sender keeps) and, in a second set, written nationally;
- page: 200 listing pages of 1000, following `next`;
- feed: 200 change-feed pages of 1000 events, following `next` from the start;
- export: the whole campaign as CSV (Accept: text/csv), read as it streams, while the
  web's resident memory is sampled every 20 ms.

Prints each round and, per figure, the median over rounds with the lowest and
highest. Latency is the client's: from sending the request to the last byte; the
web's CPU per check request (warm-up included) says what the machine's other load
cannot: what one request costs.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import redis

from bench.arguments import counts
from bench.cluster import Cluster, cpu_seconds, rss_mib
from shared.apikeys import Scope
from shared.events import ENDED, Change, Context
from shared.keyspace import ended_key
from shared.phones import to_e164
from shared.store import Store

URL = "/api/v1/leads/end-contact"
ENDED_AT = "2026-11-29T12:00:00.000Z"


def national(n: int) -> str:
    """The n-th number of a range of valid US numbers, as people write them."""
    return f"(509) {200 + (n // 10_000) % 800:03d}-{n % 10_000:04d}"


def e164(n: int) -> str:
    return f"+1509{200 + (n // 10_000) % 800:03d}{n % 10_000:04d}"


def fill(store: Store, key_id: str, scope: Scope, marks: int) -> float:
    """MARKS marks, numbers 0..MARKS-1, with their events, as the workers write them
    (requests of 50, 20 of them a round trip); seconds."""
    started = time.perf_counter()
    for start in range(0, marks, 1000):
        changes = [
            Change(scope, e164(n), ENDED, Context(key_id, f"{uuid.uuid4().hex}"))
            for n in range(start, min(start + 1000, marks))
        ]
        # A request's 50 numbers share their context, as the web sends them.
        for at in range(0, len(changes), 50):
            context = changes[at].context
            for i in range(at, min(at + 50, len(changes))):
                changes[i] = Change(scope, changes[i].phone, ENDED, context)
        assert all(store.apply_changes(changes))
    return time.perf_counter() - started


def fill_plain(client: redis.Redis, scope: Scope, marks: int) -> None:
    """The same numbers as marks were stored before events: number -> endedAt."""
    key = ended_key(scope)
    pipe = client.pipeline(transaction=False)
    for start in range(0, marks, 1000):
        phones = [e164(n) for n in range(start, min(start + 1000, marks))]
        pipe.hset(key, mapping=dict.fromkeys(phones, ENDED_AT))
        if len(pipe) == 100:
            pipe.execute()
    pipe.execute()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def quantiles(latencies: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


class CheckBodies:
    """Request bodies of 1000 numbers, 500 ended and 500 not, new ones each time."""

    def __init__(self, marks: int, write: object) -> None:
        assert callable(write)
        self.marks = marks
        self.write = write
        self.next = 0

    def take(self) -> bytes:
        start = self.next
        self.next += 500
        ended = [(start + i) % self.marks for i in range(500)]
        fresh = [self.marks + (start + i) % 4_000_000 for i in range(500)]
        numbers = [self.write(n) for pair in zip(ended, fresh, strict=True) for n in pair]
        return b'{"phoneNumberList": [' + ", ".join(f'"{n}"' for n in numbers).encode() + b"]}"


def bench_check(http: httpx.Client, bodies: CheckBodies, requests: int) -> list[float]:
    headers = {"content-type": "application/json"}
    for _ in range(20):
        assert http.post(f"{URL}/check", content=bodies.take(), headers=headers).status_code == 200
    latencies = []
    for _ in range(requests):
        body = bodies.take()
        started = time.perf_counter()
        response = http.post(f"{URL}/check", content=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


def bench_pages(http: httpx.Client, requests: int) -> list[float]:
    latencies = []
    cursor = None
    for _ in range(requests):
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        started = time.perf_counter()
        response = http.get(URL, params=params)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        cursor = response.json()["next"]
    return latencies


def bench_feed(http: httpx.Client, requests: int) -> list[float]:
    latencies = []
    after = None
    for _ in range(requests):
        params = {"limit": "1000", **({"after": after} if after else {})}
        started = time.perf_counter()
        response = http.get(f"{URL}/events", params=params)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        page = response.json()
        # At the end of a feed shorter than the run (the tests' small one): again.
        after = page["next"] if len(page["events"]) == 1000 else None
    return latencies


def bench_export(http: httpx.Client, cluster: Cluster) -> tuple[float, int, float, float]:
    """Rows per second, rows, and the web's RSS (MiB) before and at most during."""
    before = rss_mib(cluster.web)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, rss_mib(cluster.web))

    sampler = threading.Thread(target=sample)
    sampler.start()
    lines = 0
    started = time.perf_counter()
    try:
        with http.stream("GET", URL, headers={"accept": "text/csv"}) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    rows = lines - 1  # the header
    return rows / seconds, rows, before, peak


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    return (
        f"median {statistics.median(values):.{digits}f} {unit} "
        f"(rounds {min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main() -> None:
    marks, rounds = counts(__doc__, [1_000_000, 3])
    # The numbers a check sends must be valid: a bench of 400s would measure nothing.
    for n in (0, marks - 1, marks, marks + 3_999_999):
        assert to_e164(national(n), "US") == e164(n), n
    results: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as work, Cluster(Path(work), "endcontact", None, 0) as c:
        client = redis.Redis.from_url(c.redis_url, decode_responses=True)
        store = Store(client)
        key, secret = store.create_key("bench", "reads")
        empty = used_memory(client)
        seconds = fill(store, key.id, key.scope, marks)
        print(f"filled {marks:,} marks with their events in {seconds:.1f} s", flush=True)
        per_mark = (used_memory(client) - empty) / marks
        # The same numbers as before events, beside (not after a delete: valkey frees a
        # deleted key in the background, so the next reading would still count it).
        empty = used_memory(client)
        fill_plain(client, Scope("bench", "plain"), marks)
        plain = (used_memory(client) - empty) / marks
        keep("store bytes per mark (before events)", plain)
        keep("store bytes per mark with its event (feed and history)", per_mark)
        print(
            f"store memory per mark: {per_mark:.0f} B with its event in the feed and in "
            f"its history; {plain:.0f} B as marks were stored before events "
            f"({per_mark / plain:.2f}x)",
            flush=True,
        )
        base = f"http://127.0.0.1:{c.port}"
        with httpx.Client(base_url=base, headers={"x-api-key": secret}, timeout=60) as http:
            e164_bodies = CheckBodies(marks, e164)
            national_bodies = CheckBodies(marks, national)
            for round_ in range(rounds):
                for name, bodies in (
                    ("check e164", e164_bodies),
                    ("check national", national_bodies),
                ):
                    cpu = cpu_seconds(c.web)
                    p50, p95, p99 = quantiles(bench_check(http, bodies, 200))
                    # CPU moves less than latency with the machine's other load.
                    cpu_ms = (cpu_seconds(c.web) - cpu) / 220 * 1000
                    keep(f"{name} p50 ms", p50)
                    keep(f"{name} p95 ms", p95)
                    keep(f"{name} web CPU ms per request", cpu_ms)
                    print(
                        f"round {round_}: {name} of 1000: "
                        f"p50 {p50:.1f} ms, p95 {p95:.1f}, p99 {p99:.1f}; "
                        f"web CPU {cpu_ms:.1f} ms per request",
                        flush=True,
                    )
                p50, p95, p99 = quantiles(bench_pages(http, 200))
                keep("page of 1000 p50 ms", p50)
                print(
                    f"round {round_}: page of 1000: p50 {p50:.1f} ms, p95 {p95:.1f}, p99 {p99:.1f}",
                    flush=True,
                )
                p50, p95, p99 = quantiles(bench_feed(http, 200))
                keep("feed page of 1000 p50 ms", p50)
                print(
                    f"round {round_}: feed page of 1000: "
                    f"p50 {p50:.1f} ms, p95 {p95:.1f}, p99 {p99:.1f}",
                    flush=True,
                )
                rate, rows, before, peak = bench_export(http, c)
                keep("export rows/s", rate)
                keep("export web RSS growth MiB", peak - before)
                print(
                    f"round {round_}: export {rows:,} rows at {rate:,.0f} rows/s; web RSS "
                    f"{before:.1f} MiB before, {peak:.1f} MiB at most during",
                    flush=True,
                )
        client.close()
    for name, values in results.items():
        print(f"{name}: {spread(values, '', 0 if 'rows/s' in name else 1)}")


if __name__ == "__main__":
    main()
