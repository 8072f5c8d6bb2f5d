"""The dispatcher: webhook deliveries (shared.deliveries), sent by the worker.

Each worker process starts one of these as a process of its own (`python -m
worker.deliveries`, worker/app.py), at a lower CPU priority and with its own GIL and
Redis clients, so no new command is needed and end-contact keeps the CPU it needs;
it stops with its worker (and dies with it, SIGKILL included). In it:

- the fan-out thread reads the outbox through the consumer group `deliveries` and turns
  each entry into deliveries, one per event and subscribed, enabled webhook of the
  campaign: scheduled in the due set with NX, then the entry acknowledged and deleted,
  in one script per entry (FAN_OUT_SCRIPT), so a crash in between only makes it do
  the same again. Entries a
  dead worker had read are taken over once idle for CLAIM_IDLE_MS (XAUTOCLAIM).
- the claim loop records finished attempts and claims due deliveries in one round trip
  (CLAIM_SCRIPT: a claimed delivery's score moves to the end of its lease, so no other
  worker sends it meanwhile; a dead worker's lease runs out and someone sends it again,
  with the same webhook-id), a webhook at a time (a receiver's backlog costs the
  others nothing), and hands them to
- a pool of sender threads, at most PER_ENDPOINT of them on one webhook, so a receiver
  that hangs holds its own slots and no one else's, and the end-contact path (Celery's
  consumer, in another process) never waits for a receiver.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from shared import deliveries, logs
from shared.addresses import AddressError, resolve_public, target
from shared.connection import sync_client
from shared.deliveries import DUE, GROUP, OUTBOX, PENDING, Attempt
from shared.events import entry_events, iso
from shared.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_DELIVERIES, Registry
from shared.settings import Settings, exit_on_bad_settings
from shared.store import Store, events_key, scope_of_feed
from shared.webhooks import (
    LOG_LENGTH,
    Webhook,
    campaign_webhooks_key,
    from_record,
    log_key,
    now_ms,
    webhook_key,
)

log = logging.getLogger(__name__)

# The contract's limit on one attempt (httpx applies it to connecting, sending and each
# read: a receiver that says nothing for this long is given up on).
ATTEMPT_TIMEOUT = 10.0
# A claimed delivery is another worker's to send again after this long: longer than an
# attempt can take, so a live worker's attempt is never sent twice meanwhile.
LEASE_MS = 30_000
# Sender threads per worker process, and how many of them one webhook may hold.
SENDERS = 32
PER_ENDPOINT = 8
# Webhooks with due deliveries one claim looks at.
SCAN = 1000
# A deleted or disabled webhook's deliveries dropped per claim (the rest at the next).
DROP_CHUNK = 1000
# The claim loop's nap with nothing to do: how late another worker's new deliveries or
# a retry that came due may start (new deliveries of this worker wake it at once).
POLL = 0.25
# Outbox entries read at once, and how long a read waits for new ones (ms).
READ_COUNT = 100
READ_BLOCK_MS = 1000
# An outbox entry read by a worker that died is taken over after this long.
CLAIM_IDLE_MS = 60_000
SWEEP_EVERY = 15.0
# A consumer (one per worker process ever started) with nothing pending is forgotten
# after this long idle.
CONSUMER_IDLE_MS = 3_600_000
# How long a stopping worker waits for attempts in flight, to record their outcome.
STOP_GRACE = 3.0
# Redis away: how long to wait before trying again.
BACKOFF = 1.0
MAX_CLIENTS = 256
# The dispatcher process's niceness (19 is the lowest priority): deliveries take the
# CPU that end-contact leaves, not what it needs.
NICE = 19
FLUSH_INTERVAL = 1.0
# Of a receiver's answer, at most this much is read; it is not kept.
MAX_ANSWER_BYTES = 65_536

# Key names the scripts build (shared.deliveries, shared.webhooks): prefixes in ARGV.
_PREFIXES = """
local due_prefix, delivery_prefix, hook_prefix = ARGV[1], ARGV[2], ARGV[3]
"""

# A webhook's place in DUE: the earliest score of its own set, or none when it is empty.
_PLACE = """
local function place(due, set, hook)
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[1] then redis.call('ZADD', due, first[2], hook) else redis.call('ZREM', due, hook) end
end
"""

# Schedules deliveries and acknowledges the outbox entries they came from.
# KEYS: DUE, PENDING, OUTBOX. ARGV: the three prefixes, now ms, group, count of outbox
# ids, the ids, then per delivery: webhook id, event id, body. A delivery that exists
# already (a redo after a crash) is left as it is.
FAN_OUT_SCRIPT = (
    _PREFIXES
    + """
local now, group, k = ARGV[4], ARGV[5], tonumber(ARGV[6])
local added = 0
for i = 7 + k, #ARGV, 3 do
  local hook, event = ARGV[i], ARGV[i + 1]
  if redis.call('ZADD', due_prefix .. hook, 'NX', now, event) == 1 then
    redis.call('HSET', delivery_prefix .. hook .. ':' .. event, 'attempts', 0, 'body', ARGV[i + 2])
    local at = redis.call('ZSCORE', KEYS[1], hook)
    if not at or tonumber(at) > tonumber(now) then redis.call('ZADD', KEYS[1], now, hook) end
    added = added + 1
  end
end
if added > 0 then redis.call('INCRBY', KEYS[2], added) end
if k > 0 then
  redis.call('XACK', KEYS[3], group, unpack(ARGV, 7, 6 + k))
  redis.call('XDEL', KEYS[3], unpack(ARGV, 7, 6 + k))
end
return added
"""
)

# Claims due deliveries, a webhook at a time. KEYS: DUE, PENDING. ARGV: the three
# prefixes, now ms, lease ms, most to claim, most webhooks to look at, per-webhook cap,
# drop chunk, then per webhook with attempts in flight here: its id, how many. A
# claimed delivery's score becomes the end of its lease. A deleted or disabled
# webhook's deliveries are dropped, not sent. Returns the claimed deliveries (webhook
# id, event id, attempts so far, body) flat, the records of their webhooks (id,
# HGETALL reply) flat, and how many deliveries were dropped.
CLAIM_SCRIPT = (
    _PREFIXES
    + _PLACE
    + """
local now, lease, want = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local scan, cap, chunk = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local busy = {}
for i = 10, #ARGV, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local claimed, records, dropped, taken = {}, {}, 0, 0
for _, hook in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, scan)) do
  if taken >= want then break end
  local set = due_prefix .. hook
  local free = cap - (busy[hook] or 0)
  local record = redis.call('HGETALL', hook_prefix .. hook)
  local live = #record > 0
  for x = 1, #record, 2 do
    if record[x] == 'disabled_at' then live = false end
  end
  if not live then
    local events = redis.call('ZRANGE', set, 0, chunk - 1)
    for _, event in ipairs(events) do redis.call('DEL', delivery_prefix .. hook .. ':' .. event) end
    if #events > 0 then
      redis.call('ZREM', set, unpack(events))
      redis.call('DECRBY', KEYS[2], #events)
      dropped = dropped + #events
    end
    place(KEYS[1], set, hook)
  elseif free > 0 then
    local got = 0
    local count = math.min(free, want - taken)
    for _, event in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, count)) do
      local d = redis.call('HMGET', delivery_prefix .. hook .. ':' .. event, 'attempts', 'body')
      if d[2] then
        redis.call('ZADD', set, now + lease, event)
        claimed[#claimed + 1] = hook
        claimed[#claimed + 1] = event
        claimed[#claimed + 1] = d[1] or '0'
        claimed[#claimed + 1] = d[2]
        got = got + 1
      else
        redis.call('ZREM', set, event)
        redis.call('DECR', KEYS[2])
        dropped = dropped + 1
      end
    end
    place(KEYS[1], set, hook)
    if got > 0 then
      records[#records + 1] = hook
      records[#records + 1] = record
      taken = taken + got
    end
  end
end
return {claimed, records, dropped}
"""
)

# Records one attempt's outcome. KEYS: DUE, PENDING. ARGV: the three prefixes, webhook
# id, event id, outcome, next attempt (ms), attempts made, log entry, disabled at, log
# length, log key. A retry is scheduled only while the delivery is still there (not
# dropped meanwhile) and its webhook still exists; a deleted webhook keeps no log. A
# disabled webhook comes first in DUE, so that the next claim drops its deliveries.
RECORD_SCRIPT = (
    _PREFIXES
    + _PLACE
    + """
local hook, event, outcome = ARGV[4], ARGV[5], ARGV[6]
local set, delivery, record = due_prefix .. hook, delivery_prefix .. hook .. ':' .. event,
  hook_prefix .. hook
local exists = redis.call('EXISTS', record) == 1
if exists then
  redis.call('LPUSH', ARGV[12], ARGV[9])
  redis.call('LTRIM', ARGV[12], 0, tonumber(ARGV[11]) - 1)
end
if outcome == 'retry' and exists and redis.call('ZSCORE', set, event) then
  redis.call('ZADD', set, ARGV[7], event)
  redis.call('HSET', delivery, 'attempts', ARGV[8])
else
  if redis.call('ZREM', set, event) == 1 then redis.call('DECR', KEYS[2]) end
  redis.call('DEL', delivery)
end
if outcome == 'disabled' and exists then
  redis.call('HSETNX', record, 'disabled_at', ARGV[10])
  if redis.call('EXISTS', set) == 1 then redis.call('ZADD', KEYS[1], 0, hook) end
else
  place(KEYS[1], set, hook)
end
return 1
"""
)


def _prefixes() -> list[str | int]:
    return [deliveries.due_key(""), "ec:delivery:", webhook_key("")]


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


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[x]): _text(flat[x + 1]) for x in range(0, len(flat), 2)}


def parse_claim(reply: Sequence[Any]) -> tuple[list[Job], int]:
    """CLAIM_SCRIPT's reply as jobs, and how many deliveries it dropped."""
    claimed, records, dropped = reply
    hooks: dict[str, Webhook] = {}
    for x in range(0, len(records), 2):
        found = from_record(_pairs(records[x + 1]))
        if found is not None:
            hooks[_text(records[x])] = found
    jobs = []
    for x in range(0, len(claimed), 4):
        hook = hooks.get(_text(claimed[x]))
        if hook is not None:
            attempts = int(_text(claimed[x + 2]))
            jobs.append(Job(hook, _text(claimed[x + 1]), attempts, _text(claimed[x + 3])))
    return jobs, int(dropped)


class Senders:
    """HTTP clients, one per origin (scheme, host, port): a connection kept alive for
    one host name is never reused for another that shares its address, which would
    send a request over a TLS session made for a different name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[str, str, int], httpx.Client] = OrderedDict()

    def client(self, origin: tuple[str, str, int]) -> httpx.Client:
        with self._lock:
            found = self._clients.get(origin)
            if found is not None:
                self._clients.move_to_end(origin)
                return found
            made = httpx.Client(
                timeout=ATTEMPT_TIMEOUT,
                follow_redirects=False,
                # No proxy from the environment: it would connect to the name, not to
                # the address that was checked.
                trust_env=False,
                limits=httpx.Limits(
                    max_connections=PER_ENDPOINT, max_keepalive_connections=PER_ENDPOINT
                ),
                headers={"user-agent": "endcontact-webhooks/1"},
            )
            self._clients[origin] = made
            while len(self._clients) > MAX_CLIENTS:
                _, oldest = self._clients.popitem(last=False)
                oldest.close()
            return made

    def close(self) -> None:
        with self._lock:
            for made in self._clients.values():
                made.close()
            self._clients.clear()


def attempt(job: Job, senders: Senders, allow_private: bool) -> Finished:
    """Make one attempt: the address checked after resolution, the request sent to
    that address (Host header and TLS name kept), signed at this moment."""
    at = now_ms()
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        status = _post(job, senders, allow_private, at)
    except AddressError as exc:
        error = f"address refused: URL {exc}"
    except httpx.TimeoutException:
        error = f"timeout ({ATTEMPT_TIMEOUT:g} s)"
    except httpx.ConnectError:
        error = "connection failed"
    except httpx.HTTPError as exc:
        error = f"HTTP error ({exc.__class__.__name__})"
    except Exception as exc:  # a bug must cost one attempt, never the sender thread
        log.exception("webhook attempt raised %s", exc.__class__.__name__)
        error = "internal error"
    duration = round((time.perf_counter() - started) * 1000)
    return Finished(job, Attempt(status, error, duration), at)


def _post(job: Job, senders: Senders, allow_private: bool, at_ms: int) -> int:
    hook = job.webhook
    where = target(hook.url, allow_private)
    address = resolve_public(where.host, where.port, allow_private)[0]
    url = httpx.URL(hook.url)
    sent_to = url.copy_with(host=str(address))
    headers = deliveries.headers(
        deliveries.message_id(hook.id, job.event_id),
        at_ms // 1000,
        job.body,
        hook.secrets_at(at_ms),
    )
    headers["host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": where.host} if where.scheme == "https" else {}
    client = senders.client((where.scheme, where.host, where.port))
    request = client.build_request(
        "POST", sent_to, content=job.body.encode(), headers=headers, extensions=extensions
    )
    # Only the status counts. The body is read (up to a bound) so that the connection
    # goes back to the pool for the next attempt: closed unread, it would be dropped.
    response = client.send(request, stream=True)
    try:
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                break
    finally:
        response.close()
    return response.status_code


def _deliveries(feed_entry: Iterable[tuple[str, Any]], hooks: list[Webhook]) -> list[str]:
    """Webhook id, event id and body of each delivery of one feed entry's events (none
    if the feed was trimmed since): one per event and enabled webhook subscribed to it."""
    triples: list[str] = []
    for entry, data in feed_entry:
        for event in entry_events(entry, data):
            body = None
            for hook in hooks:
                if hook.disabled_at is None and event.kind in hook.events:
                    body = body or deliveries.payload(event)
                    triples.extend((hook.id, str(event.id), body))
    return triples


class InFlight:
    """This process's attempts in flight, per webhook: what the claim may add."""

    def __init__(self) -> None:
        self._started: defaultdict[str, int] = defaultdict(int)
        self.total = 0

    def add(self, webhook_id: str) -> None:
        self._started[webhook_id] += 1
        self.total += 1

    def remove(self, webhook_id: str) -> None:
        self._started[webhook_id] -= 1
        if not self._started[webhook_id]:
            del self._started[webhook_id]
        self.total -= 1

    def claim_args(self) -> list[str | int]:
        """Per webhook with attempts in flight: its id, how many."""
        args: list[str | int] = []
        for webhook_id, started in self._started.items():
            args.extend((webhook_id, started))
        return args


class Dispatcher:
    def __init__(self, settings: Settings, name: str, metrics: Registry) -> None:
        self._name = name
        self._metrics = metrics
        self._allow_private = settings.webhook_allow_private
        self._schedule = settings.webhook_retry_schedule
        # Own clients, bounded waits: the outbox read blocks for READ_BLOCK_MS at most.
        self._reader = sync_client(
            settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        self._redis = sync_client(
            settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        self._fan_out_script = self._reader.register_script(FAN_OUT_SCRIPT)
        self._claim = self._redis.register_script(CLAIM_SCRIPT)
        self._record = self._redis.register_script(RECORD_SCRIPT)
        # httpx logs every request with its URL at INFO: the URL may hold a receiver's
        # token, and a line per delivery would cost more than the rest of it.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._done: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._unrecorded: list[Finished] = []
        self._in_flight = InFlight()
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")
        self._senders = Senders()
        self._threads = [
            threading.Thread(target=self._fan_out_loop, name="webhook-outbox", daemon=True),
            threading.Thread(target=self._claim_loop, name="webhook-claim", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(READ_BLOCK_MS / 1000 + STOP_GRACE + 6)
        self._senders.close()
        for client in (self._reader, self._redis):
            with contextlib.suppress(redis.RedisError, OSError):
                client.close()

    # The outbox: feed entries to deliveries.

    def _fan_out_loop(self) -> None:
        swept = -SWEEP_EVERY
        grouped = False
        while not self._stop.is_set():
            try:
                if not grouped:
                    self._create_group()
                    grouped = True
                if time.monotonic() - swept >= SWEEP_EVERY:
                    swept = time.monotonic()
                    self._sweep()
                read: Any = self._reader.xreadgroup(
                    GROUP, self._name, {OUTBOX: ">"}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                for _, entries in read or []:
                    self.fan_out(entries)
            except redis.ResponseError as exc:
                # The group is gone (a store restarted without its data): make it again.
                grouped = grouped and "NOGROUP" not in str(exc)
                log.warning("webhook outbox read failed: %s", exc.__class__.__name__)
                self._stop.wait(BACKOFF)
            except (redis.RedisError, OSError) as exc:
                log.warning("webhook outbox read failed: %s", exc.__class__.__name__)
                self._stop.wait(BACKOFF)

    def _create_group(self) -> None:
        try:
            # From the stream's start: entries written before any worker ran count too.
            self._reader.xgroup_create(OUTBOX, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _sweep(self) -> None:
        """Take over entries a dead worker read and never finished; forget consumers
        long gone."""
        start = "0-0"
        for _ in range(10):
            reply: Any = self._reader.xautoclaim(
                OUTBOX, GROUP, self._name, CLAIM_IDLE_MS, start_id=start, count=READ_COUNT
            )
            start, entries = str(reply[0]), list(reply[1])
            if entries:
                self.fan_out(entries)
            if start == "0-0":
                break
        for consumer in self._reader.xinfo_consumers(OUTBOX, GROUP):
            idle = int(consumer.get("inactive", consumer.get("idle", 0)))
            gone = consumer["name"] != self._name and int(consumer["pending"]) == 0
            if gone and idle > CONSUMER_IDLE_MS:
                self._reader.xgroup_delconsumer(OUTBOX, GROUP, consumer["name"])

    def fan_out(self, entries: Sequence[tuple[str, Mapping[str, str] | None]]) -> None:
        """Schedule the deliveries of these outbox entries, and acknowledge them."""
        wanted = [(entry_id, fields) for entry_id, fields in entries if fields]
        with self._reader.pipeline(transaction=False) as pipe:
            for _, fields in wanted:
                feed = fields["f"]
                pipe.xrange(events_key(scope_of_feed(feed)), fields["e"], fields["e"])
                pipe.smembers(campaign_webhooks_key(feed))
            replies = pipe.execute()
        ids = sorted({str(hook) for members in replies[1::2] for hook in members})
        hooks = self._webhooks(ids)
        scheduled = False
        # A script per outbox entry: its deliveries and its acknowledgement together.
        with self._reader.pipeline(transaction=False) as pipe:
            for (entry_id, _), feed_entry, members in zip(
                wanted, replies[0::2], replies[1::2], strict=True
            ):
                listening = [hooks[str(hook)] for hook in members if str(hook) in hooks]
                triples = _deliveries(feed_entry, listening)
                scheduled = scheduled or bool(triples)
                args = [*_prefixes(), now_ms(), GROUP, 1, entry_id, *triples]
                self._fan_out_script(keys=[DUE, PENDING, OUTBOX], args=args, client=pipe)
            empty = [entry_id for entry_id, fields in entries if not fields]
            if empty:  # deleted from the stream, still pending: only acknowledged
                pipe.xack(OUTBOX, GROUP, *empty)
            pipe.execute()
        if scheduled:
            self._wake.set()

    def _webhooks(self, ids: Iterable[str]) -> dict[str, Webhook]:
        ids = list(ids)
        with self._reader.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(webhook_key(webhook_id))
            records = pipe.execute()
        found = (from_record(record) for record in records)
        return {hook.id: hook for hook in found if hook is not None}

    # Due deliveries: claimed, sent, recorded.

    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = self._step(claim=True)
            except (redis.RedisError, OSError) as exc:
                log.warning("webhook deliveries: store failed: %s", exc.__class__.__name__)
                self._stop.wait(BACKOFF)
                continue
            if not busy:
                self._wake.wait(POLL)
        self._finish()

    def _finish(self) -> None:
        """On the way out: no new attempts; record those that end within STOP_GRACE.
        The others' leases run out and another worker makes them again."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + STOP_GRACE
        while self._in_flight.total and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
            self._collect()
        with contextlib.suppress(redis.RedisError, OSError):
            self._step(claim=False)

    def _collect(self) -> None:
        while True:
            try:
                finished = self._done.get_nowait()
            except queue.Empty:
                return
            self._in_flight.remove(finished.job.webhook.id)
            self._unrecorded.append(finished)

    def _step(self, claim: bool) -> bool:
        """Record what finished and claim what is due, in one round trip. True if
        there may be more to do at once."""
        self._collect()
        recording = self._unrecorded
        room = SENDERS - self._in_flight.total if claim else 0
        if not recording and room <= 0:
            return False
        outcomes = [self._outcome(finished) for finished in recording]
        with self._redis.pipeline(transaction=False) as pipe:
            for _, args in outcomes:
                self._record(keys=[DUE, PENDING], args=args, client=pipe)
            if room > 0:
                args = [*_prefixes(), now_ms(), LEASE_MS, room, SCAN, PER_ENDPOINT, DROP_CHUNK]
                args += self._in_flight.claim_args()
                self._claim(keys=[DUE, PENDING], args=args, client=pipe)
            replies = pipe.execute()
        self._unrecorded = []
        for finished, (result, _) in zip(recording, outcomes, strict=True):
            self._count(finished, result)
        if room <= 0:
            return False
        jobs, _ = parse_claim(replies[-1])
        for job in jobs:
            self._in_flight.add(job.webhook.id)
            future = self._pool.submit(attempt, job, self._senders, self._allow_private)
            future.add_done_callback(self._attempted)
        return bool(jobs) or bool(recording)

    def _attempted(self, future: Future[Finished]) -> None:
        if not future.cancelled():
            self._done.put(future.result())
            self._wake.set()

    def _outcome(self, finished: Finished) -> tuple[str, list[str | int]]:
        """The outcome of an attempt, and RECORD_SCRIPT's arguments to record it."""
        job = finished.job
        made = job.attempts + 1
        result = deliveries.outcome(finished.attempt, made, self._schedule)
        next_ms = 0
        if result == deliveries.RETRY:
            next_ms = now_ms() + deliveries.retry_delay(made, self._schedule) * 1000
        hook = job.webhook.id
        entry = deliveries.log_entry(job.event_id, made, finished.at_ms, finished.attempt, result)
        args: list[str | int] = [
            *_prefixes(),
            hook,
            job.event_id,
            result,
            next_ms,
            made,
            entry,
            iso(now_ms()),
            LOG_LENGTH,
            log_key(hook),
        ]
        return result, args

    def _count(self, finished: Finished, result: str) -> None:
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


def _die_with_parent() -> None:
    """Linux: SIGTERM when the worker that started this process dies, even SIGKILLed,
    so that no dispatcher outlives its worker."""
    with contextlib.suppress(AttributeError, OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the worker died before the line above
        raise SystemExit(0)


PR_SET_PDEATHSIG = 1


def main() -> None:
    """`python -m worker.deliveries`: the dispatcher in a process of its own, which
    each worker process starts and stops with itself (worker/app.py). A process, not a
    thread of the worker: deliveries cost about ten times the CPU of the marks they
    follow, and at a lower priority, with a GIL of their own, they take only what
    end-contact leaves (bench/webhooks.py)."""
    logs.configure()
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(NICE)
    with exit_on_bad_settings():
        settings = Settings.from_env()
    store = Store.connect(settings)
    metrics = Registry()
    dispatcher = Dispatcher(settings, f"{socket.gethostname()}-{os.getpid()}", metrics)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    dispatcher.start()
    while not stopping.wait(FLUSH_INTERVAL):
        _flush(store, metrics)
    dispatcher.stop()
    _flush(store, metrics)
    store.close()


def _flush(store: Store, metrics: Registry) -> None:
    with metrics.flushing() as counts:
        if counts:
            store.add_metrics(counts)


if __name__ == "__main__":
    main()
