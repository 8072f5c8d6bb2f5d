"""Prometheus metrics: counted in each process, summed in Redis, rendered by any web.

Why in Redis: the service is several web processes (uvicorn workers, compose replicas
behind one proxy) and several Celery workers, which serve no HTTP at all. Each process
counts in memory and adds its counts to one Redis hash every FLUSH_INTERVAL
(HINCRBYFLOAT, atomic), and /metrics on any web process renders that hash. So a
scrape through the proxy sees the whole service whichever replica answers, a task's
run time is counted although no worker can be scraped, and a restarted process does
not make a counter go backwards. The price: values are up to FLUSH_INTERVAL old, and a
process killed outright loses its last unflushed counts. Redis holds these next to the
data it already keeps; there is no per-process state for Prometheus to discover.

Each field of the hash is one sample line's name with its labels, e.g.
`endcontact_numbers_total{outcome="success"}`; histograms are stored cumulative, the
way the text format shows them, so rendering is grouping and sorting.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import redis

from shared.connection import failure

log = logging.getLogger(__name__)

METRICS_KEY = "ec:metrics"
FLUSH_INTERVAL = 1.0


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "counter", "histogram" or "gauge"
    help: str
    buckets: tuple[float, ...] = ()
    # Label sets shown as 0 before anything is counted, so rate() works from the start.
    initial: tuple[Mapping[str, str], ...] = ()


# An HTTP exchange's seconds, the web's requests' and the webhook attempts': the
# Prometheus Go client's default buckets (DefBuckets).
EXCHANGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Family(
    "endcontact_http_requests_total",
    "counter",
    "HTTP requests answered, by method, route template and status.",
)
REQUEST_SECONDS = Family(
    "endcontact_http_request_duration_seconds",
    "histogram",
    "Time from a request's arrival to its last byte, by method and route template.",
    buckets=EXCHANGE_BUCKETS,
)
NUMBERS = Family(
    "endcontact_numbers_total",
    "counter",
    "Phone numbers in accepted end-contact requests, by outcome: success, or failure "
    "because its task did not finish in time (timeout) or failed (error).",
    initial=(
        {"outcome": "success"},
        {"outcome": "failure", "reason": "timeout"},
        {"outcome": "failure", "reason": "error"},
    ),
)
TASKS = Family(
    "endcontact_tasks_total",
    "counter",
    "End-contact tasks taken by workers: ran (success or error) or discarded as expired.",
    initial=({"outcome": "success"}, {"outcome": "error"}, {"outcome": "expired"}),
)
TASK_SECONDS = Family(
    "endcontact_task_duration_seconds",
    "histogram",
    "Run time of an end-contact task in a worker: that of its batch (writes and fsync).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
WORKERS = Family(
    "endcontact_workers", "gauge", "Workers whose heartbeat is younger than 10 seconds."
)
QUEUED = Family("endcontact_queued_tasks", "gauge", "Tasks waiting in the broker queue.")

WEBHOOK_DELIVERIES = Family(
    "endcontact_webhook_deliveries_total",
    "counter",
    "Webhook delivery attempts by outcome: delivered (2xx), retry (scheduled again), "
    "gave_up (the retry schedule is over) or disabled (410: the endpoint is disabled).",
    initial=tuple(
        {"outcome": outcome} for outcome in ("delivered", "retry", "gave_up", "disabled")
    ),
)
WEBHOOK_ATTEMPT_SECONDS = Family(
    "endcontact_webhook_attempt_duration_seconds",
    "histogram",
    "Time of one webhook delivery attempt: address check, request, answer's status.",
    buckets=EXCHANGE_BUCKETS,
)
WEBHOOK_PENDING = Family(
    "endcontact_webhook_pending",
    "gauge",
    "Webhook deliveries waiting for their first attempt, a retry, or in flight.",
)

FAMILIES = (
    REQUESTS,
    REQUEST_SECONDS,
    NUMBERS,
    TASKS,
    TASK_SECONDS,
    WORKERS,
    QUEUED,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ATTEMPT_SECONDS,
    WEBHOOK_PENDING,
)
_BY_NAME = {family.name: family for family in FAMILIES}


def sample(name: str, labels: Mapping[str, str]) -> str:
    """One sample's name with its labels, as the text format writes it."""
    if not labels:
        return name
    pairs = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return f"{name}{{{pairs}}}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


class Registry:
    """This process's counts since its last flush. Thread-safe: a worker's task and its
    heartbeat thread both touch it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[str, float] = defaultdict(float)
        # Counters since the process started, never taken: for the worker's drain rate.
        self._totals: defaultdict[str, float] = defaultdict(float)

    def inc(self, family: Family, labels: Mapping[str, str], amount: float = 1.0) -> None:
        if amount:
            name = sample(family.name, labels)
            with self._lock:
                self._counts[name] += amount
                self._totals[name] += amount

    def total(self, family: Family, labels: Mapping[str, str]) -> float:
        """All that inc() counted for these labels since this process started."""
        with self._lock:
            return self._totals[sample(family.name, labels)]

    def observe(
        self, family: Family, labels: Mapping[str, str], value: float, times: int = 1
    ) -> None:
        """Observe `value` (`times` times: e.g. the run time of each task of a batch)."""
        name = family.name
        fields = [sample(f"{name}_bucket", {**labels, "le": _bound(b)}) for b in family.buckets]
        with self._lock:
            for bound, field in zip(family.buckets, fields, strict=True):
                # Adding 0 still creates the field: every bucket of a series is shown.
                self._counts[field] += times if value <= bound else 0
            self._counts[sample(f"{name}_bucket", {**labels, "le": "+Inf"})] += times
            self._counts[sample(f"{name}_sum", labels)] += value * times
            self._counts[sample(f"{name}_count", labels)] += times

    def count_tasks(self, succeeded: int, failed: int, seconds: float) -> None:
        """Count a batch of tasks run together in `seconds`: that is each one's run time."""
        self.inc(TASKS, {"outcome": "success"}, succeeded)
        self.inc(TASKS, {"outcome": "error"}, failed)
        self.observe(TASK_SECONDS, {}, seconds, succeeded + failed)

    def take(self) -> dict[str, float]:
        """The counts so far, and a fresh start; give_back() them if the flush fails."""
        with self._lock:
            counts, self._counts = dict(self._counts), defaultdict(float)
        return counts

    def give_back(self, counts: Mapping[str, float]) -> None:
        with self._lock:
            for field, amount in counts.items():
                self._counts[field] += amount

    @contextlib.contextmanager
    def flushing(self) -> Iterator[dict[str, float]]:
        """The counts to flush (maybe none), taken for the block that writes them.

        If the block fails with a Redis error or a timeout, the counts are given back
        for the next flush and the failure is logged, not raised: a flush must never
        stop a web or a worker. All or nothing (MULTI): only a reply lost after Redis
        applied it counts twice, which is rarer and smaller than a gap.
        """
        counts = self.take()
        try:
            yield counts
        except (TimeoutError, redis.RedisError, OSError) as exc:
            self.give_back(counts)
            log.warning("metrics flush failed: %s", failure(exc))


def render(stored: Mapping[str, str], gauges: Mapping[Family, float]) -> str:
    """The Prometheus text format (version 0.0.4) of the stored sums and the gauges."""
    by_family: dict[str, dict[str, float]] = {family.name: {} for family in FAMILIES}
    for family in FAMILIES:
        for labels in family.initial:
            by_family[family.name][sample(family.name, labels)] = 0.0
    for family, value in gauges.items():
        by_family[family.name][family.name] = float(value)
    for field, text in stored.items():
        family_name = _family_of(field)
        if family_name is not None:
            by_family[family_name][field] = float(text)
    lines: list[str] = []
    for family in FAMILIES:
        samples = by_family[family.name]
        if not samples and family.kind == "gauge":
            continue
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines.extend(f"{field} {_number(samples[field])}" for field in _ordered(samples))
    return "\n".join(lines) + "\n"


def _family_of(field: str) -> str | None:
    name = field.split("{", 1)[0]
    if name in _BY_NAME:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in _BY_NAME:
            return base
    return None


def _ordered(fields: Iterable[str]) -> list[str]:
    """Series together, buckets by bound, then _sum and _count (as clients print them)."""

    def key(field: str) -> tuple[str, int, float]:
        name, _, labels = field.partition("{")
        labels = labels.rstrip("}")
        le = math.inf
        if name.endswith("_bucket"):
            # `le` is always the last label (Registry.observe puts it there).
            labels, _, bound = labels.rpartition('le="')
            labels = labels.rstrip(",")
            le = math.inf if bound == '+Inf"' else float(bound.rstrip('"'))
        order = 1 if name.endswith("_sum") else 2 if name.endswith("_count") else 0
        return labels, order, le

    return sorted(fields, key=key)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)
