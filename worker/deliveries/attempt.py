"""One attempt to deliver an event to a webhook, its outcome, and how it is counted:
the same for a first attempt (runners.py) and a retry (retries.py)."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

from shared import deliveries
from shared.addresses import AddressError, Resolver, ResolverBusy, ResolveTimeout, target
from shared.clock import ServerClock
from shared.deliveries import Attempt
from shared.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_DELIVERIES, Registry
from shared.settings import Settings
from shared.webhooks import Webhook
from worker.deliveries import log
from worker.senders import (
    ATTEMPT_TIMEOUT,
    USER_AGENT,
    Connections,
    Request,
    error_of,
    request_target,
)

# Of an attempt's ATTEMPT_TIMEOUT, at most this much goes to resolving its URL's name
# (the system resolver has no deadline of its own): a second name server, asked after
# the usual 5 s, answers in time. Lookups run in at most RESOLVERS threads, one per
# name at a time: with that many names hanging, an attempt is refused at once (and
# retried) rather than left to add a thread.
RESOLVE_TIMEOUT = 5.0
RESOLVERS = 64


@dataclass(frozen=True)
class Job:
    """One claimed delivery: an attempt to make."""

    webhook: Webhook
    event_id: str
    attempts: int  # made before this one
    body: str


@dataclass(frozen=True)
class Finished:
    job: Job
    attempt: Attempt
    at_ms: int


@dataclass(frozen=True)
class Outcome:
    """What a finished attempt leads to, and its entry in the webhook's log."""

    result: str  # deliveries.DELIVERED, RETRY, GAVE_UP or DISABLED
    delay_ms: int  # until the next attempt, for a RETRY (else 0)
    log_entry: str


_resolver = Resolver(RESOLVERS)


def attempt(
    job: Job,
    connections: Connections,
    allow_private: bool,
    store_clock: ServerClock,
    deadline: float | None = None,
) -> Finished:
    """Make one attempt: the address checked after resolution, the request sent to
    that address (Host header and TLS name kept), signed at this moment (on the store's
    clock, shared.clock); all of it by `deadline` (time.monotonic(); by default
    ATTEMPT_TIMEOUT from now)."""
    at = store_clock.now_ms()
    started = time.perf_counter()
    if deadline is None:
        deadline = time.monotonic() + ATTEMPT_TIMEOUT
    status: int | None = None
    error: str | None = None
    try:
        status = _post(job, connections, allow_private, at, deadline)
    except ResolveTimeout as exc:
        error = f"timeout (resolving the host name, {exc.timeout:g} s)"
    except ResolverBusy:
        error = f"resolver busy ({RESOLVERS} host names not answering)"
    except AddressError as exc:
        error = f"address refused: URL {exc}"
    except (OSError, http.client.HTTPException) as exc:
        error = error_of(exc)
    except Exception as exc:  # a bug must cost one attempt, never the sender thread
        log.exception("webhook attempt raised %s", exc.__class__.__name__)
        error = "internal error"
    duration = round((time.perf_counter() - started) * 1000)
    return Finished(job, Attempt(status, error, duration), at)


def _post(
    job: Job, connections: Connections, allow_private: bool, at_ms: int, deadline: float
) -> int:
    hook = job.webhook
    where = target(hook.url, allow_private)
    resolving = max(0.0, min(RESOLVE_TIMEOUT, deadline - time.monotonic()))
    address = _resolver.resolve(where.host, where.port, allow_private, resolving)[0]
    host, path = request_target(hook.url)
    body = job.body.encode()
    headers = deliveries.headers(
        deliveries.message_id(hook.id, job.event_id),
        at_ms // 1000,
        job.body,
        hook.secrets_at(at_ms),
    )
    headers["host"] = host
    headers["user-agent"] = USER_AGENT
    request = Request(where.scheme, where.host, where.port, address, path, body, headers)
    return connections.post(request, deadline)


class Attempts:
    """What this dispatcher's attempts share, first ones and retries alike: its
    connections, its reading of the store's clock (attempts are signed on it; the due
    times and leases are the scripts' own reading), the retry schedule, the metrics."""

    def __init__(self, settings: Settings, metrics: Registry) -> None:
        self.connections = Connections()
        self.store_clock = ServerClock()
        self._allow_private = settings.webhook_allow_private
        self._schedule = settings.webhook_retry_schedule
        self._metrics = metrics

    def make(self, job: Job, deadline: float) -> Finished:
        return attempt(job, self.connections, self._allow_private, self.store_clock, deadline)

    def outcome(self, finished: Finished) -> Outcome:
        job = finished.job
        made = job.attempts + 1
        result = deliveries.outcome(finished.attempt, made, self._schedule)
        delay = 0
        if result == deliveries.RETRY:
            delay = deliveries.retry_delay(made, self._schedule) * 1000
        entry = deliveries.log_entry(job.event_id, made, finished.at_ms, finished.attempt, result)
        return Outcome(result, delay, entry)

    def count(self, finished: Finished, result: str) -> None:
        self._metrics.inc(WEBHOOK_DELIVERIES, {"outcome": result})
        self._metrics.observe(WEBHOOK_ATTEMPT_SECONDS, {}, finished.attempt.duration_ms / 1000)
        if result == deliveries.DELIVERED:
            return
        job, attempt = finished.job, finished.attempt
        log.info(
            "webhook %s, event %s, attempt %d: %s -> %s",
            job.webhook.id,
            job.event_id,
            job.attempts + 1,
            attempt.status if attempt.status is not None else attempt.error,
            result,
            extra={"webhook": job.webhook.id, "event": job.event_id, "outcome": result},
        )

    def close(self) -> None:
        self.connections.close()
