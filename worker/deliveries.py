"""The dispatcher: webhook deliveries (shared.deliveries), sent by the worker.

Each worker process starts one of these as a process of its own (`python -m
worker.deliveries`, worker/app.py), at a lower CPU priority and with its own GIL and
Redis clients, so no new command is needed and end-contact keeps the CPU it needs;
it stops with its worker (and dies with it, SIGKILL included). In it:

- the follow loop keeps leases on a fair share of the webhooks (shared.deliveries)
  and, for each it follows, reads the campaign's feed after what it has read, hands
  the events to runners, and now and then writes in one script per webhook what
  finished: the attempt log, the retries of failed attempts, and the cursor past the
  feed entries whose events all finished. A first attempt thus costs the store no
  write of its own (a write there waits for the fsync end-contact waits for too).
- runners (threads, at most WINDOW per webhook and CAMPAIGN_RUNNERS per campaign)
  send a webhook's events one after the other, so a receiver that hangs holds its own
  runners and no other campaign's, and the end-contact path (Celery's consumer, in
  another process) never waits for one.
  While that worker is busy, they start attempts only in short windows
  (worker/yielding.py).
- the claim loop claims the retries that came due (CLAIM_SCRIPT: a claimed delivery's
  score moves to the end of its lease, so no other worker sends it meanwhile; a dead
  worker's lease runs out and someone sends it again, with the same webhook-id), a
  webhook at a time (at most WINDOW per webhook and CAMPAIGN_RETRIES per campaign in
  flight), sends them in a pool of its own and records each outcome.

Due times, leases and signs of life are on the store's clock, read by the scripts that
write and compare them (shared.clock): dispatchers whose clocks differ still agree on
when a retry is due and whose lease has run out. An attempt is signed at the store's
time too, as this process reads it at each tend (a rotated secret's overlap ends on
that clock).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import heapq
import http.client
import itertools
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from shared import deliveries, logs
from shared.addresses import AddressError, Resolver, ResolverBusy, ResolveTimeout, target
from shared.apikeys import Scope
from shared.clock import SERVER_TIME, ServerClock, seconds
from shared.connection import sync_client
from shared.deliveries import DISPATCHERS, DUE, PENDING, Attempt
from shared.events import entry_events, iso
from shared.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_DELIVERIES, Registry
from shared.settings import Settings, exit_on_bad_settings
from shared.store import Store
from shared.webhooks import (
    ADDED,
    CURSORS,
    LOG_LENGTH,
    Cursor,
    Webhook,
    feed_stream_key,
    from_record,
    log_key,
    webhook_key,
)
from worker.senders import (
    ATTEMPT_TIMEOUT,
    USER_AGENT,
    Connections,
    Request,
    error_of,
    request_target,
)
from worker.yielding import Yielding, process_cpu

log = logging.getLogger(__name__)

# A webhook's lease, and a claimed retry's: another worker's to take after this long.
LEASE_MS = 30_000
# How often leases are renewed and the registry of webhooks read again.
TEND_EVERY = 1.0
# One delivery is never attempted twice at once (issue 19: with attempts longer than
# the lease, one was attempted four times at once). An attempt lasts at most
# ATTEMPT_TIMEOUT, its name's resolution included (the watchdog cuts it then), so it
# starts only while the lease it runs under (the webhook's, or its retry's claim) has
# that plus LEASE_MARGIN left, as this process measures it from before it asked the
# store (a lower bound, whatever the clocks say); and a stopping dispatcher keeps the
# lease of a webhook with attempts in flight until LEASE_MARGIN after their deadline.
# The margin is for the watchdog's cut to land (a thread switch or two, in a process
# of the idle class). What the lease has over that is how long the store may be out of
# reach before this dispatcher stops starting attempts: 18 renewals missed.
LEASE_MARGIN = 2.0
START_WITHIN_LEASE = ATTEMPT_TIMEOUT + LEASE_MARGIN
assert LEASE_MS / 1000 > START_WITHIN_LEASE + TEND_EVERY, "a lease must outlast an attempt"
# Of an attempt's ATTEMPT_TIMEOUT, at most this much goes to resolving its URL's name
# (the system resolver has no deadline of its own): a second name server, asked after
# the usual 5 s, answers in time. Lookups run in at most RESOLVERS threads, one per
# name at a time: with that many names hanging, an attempt is refused at once (and
# retried) rather than left to add a thread.
RESOLVE_TIMEOUT = 5.0
RESOLVERS = 64
# Senders are shared fairly (issue 19: six campaigns with ten webhooks each, to
# receivers that answered a byte every 2 s, held every one of 128 runners, and another
# company's delivery waited more than 30 s). First attempts in flight (runners, threads)
# per webhook, per campaign, and in all: a campaign whose receivers all hang holds at
# most CAMPAIGN_RUNNERS of them for 10 s each (two webhooks' windows: a campaign has at
# most 10 webhooks), so 31 such campaigns leave a 32nd its runners at once. Threads
# are made as runners need them, up to RUNNERS. Past that, threads go to the campaigns
# with the fewest first, and a runner gives its thread up after its attempt while a
# campaign waits for one: that campaign waits for the next attempt to end (with 512
# that hang, one every 20 ms on average).
WINDOW = 8
CAMPAIGN_RUNNERS = 16
RUNNERS = 512
# A runner's turn, in attempts: then it ends, and the next runner goes where it is due.
TURN = 64
# Retries in flight per webhook (WINDOW), per campaign and in all, for the same reason:
# 15 campaigns whose retries all hang leave room for a 16th's at once; past that, the
# claim skips campaigns at their cap, in the order the retries came due.
CAMPAIGN_RETRIES = 8
RETRY_SENDERS = 128
# Feed entries (of up to 100 events) read at once, and events read but not yet
# attempted past which a webhook's feed is not read further.
READ_ENTRIES = 100
AHEAD = 2_000
# While idle, new events are looked for this often: how late a first attempt may
# start after its change. One HMGET of the feeds' counts, whatever their number.
POLL = 0.02
# The attempt log, the retries and the cursor are written at most this often.
COMMIT_EVERY = 0.05
# Retries claimed at once: webhooks with due ones looked at, deliveries dropped of a
# deleted or disabled webhook per claim (the rest at the next).
SCAN = 1000
DROP_CHUNK = 1000
RETRY_POLL = 0.25
# How long a stopping worker waits for attempts in flight, to record their outcome
# (those it did not keep their leases, LEASE_MARGIN past their deadline).
STOP_GRACE = 3.0
# Redis away: how long to wait before trying again.
BACKOFF = 1.0
# The dispatcher process's niceness (19 is the lowest priority), where the idle
# scheduling class (lowest_priority) is not to be had.
NICE = 19
FLUSH_INTERVAL = 1.0


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

# Claims due retries, a webhook at a time. KEYS: DUE, PENDING. ARGV: the three
# Claims due retries, a webhook at a time, on the store's clock. KEYS: DUE, PENDING.
# ARGV: the three prefixes, lease ms, most to claim, most webhooks to look at,
# per-webhook cap, drop chunk, per-campaign cap, how many webhooks follow, then per
# webhook with attempts in flight here: its id, how many; then per campaign with
# attempts in flight here: its company, campaign, how many. A claimed delivery's score
# becomes the end of its lease. A deleted or disabled webhook's deliveries are dropped,
# not sent. Returns the claimed deliveries (webhook id, event id, attempts so far, body)
# flat, the records of their webhooks (id, HGETALL reply) flat, and how many deliveries
# were dropped.
CLAIM_SCRIPT = (
    _PREFIXES
    + _PLACE
    + SERVER_TIME
    + """
local now, lease, want = now_ms, tonumber(ARGV[4]), tonumber(ARGV[5])
local scan, cap, chunk = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local campaign_cap, hooks = tonumber(ARGV[9]), tonumber(ARGV[10])
local busy, campaigns = {}, {}
for i = 11, 10 + 2 * hooks, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local function campaign_of(company)
  campaigns[company] = campaigns[company] or {}
  return campaigns[company]
end
for i = 11 + 2 * hooks, #ARGV, 3 do campaign_of(ARGV[i])[ARGV[i + 1]] = tonumber(ARGV[i + 2]) end
local claimed, records, dropped, taken = {}, {}, 0, 0
for _, hook in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, scan)) do
  if taken >= want then break end
  local set = due_prefix .. hook
  local record = redis.call('HGETALL', hook_prefix .. hook)
  local live, company, campaign = #record > 0, '', ''
  for x = 1, #record, 2 do
    if record[x] == 'disabled_at' then live = false end
    if record[x] == 'company' then company = record[x + 1] end
    if record[x] == 'campaign' then campaign = record[x + 1] end
  end
  local of_company = campaign_of(company)
  local free = math.min(cap - (busy[hook] or 0), campaign_cap - (of_company[campaign] or 0))
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
      of_company[campaign] = (of_company[campaign] or 0) + got
    end
  end
end
return {claimed, records, dropped}
"""
)

# Records one attempt's outcome. KEYS: DUE, PENDING. ARGV: the three prefixes, webhook
# id, event id, outcome, ms until the next attempt, attempts made, log entry, disabled
# at, log length, log key. A retry is scheduled only while the delivery is still there
# (not dropped meanwhile) and its webhook still exists; a deleted webhook keeps no log.
# A disabled webhook comes first in DUE, so that the next claim drops its deliveries.
RECORD_SCRIPT = (
    _PREFIXES
    + _PLACE
    + SERVER_TIME
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
  redis.call('ZADD', set, now_ms + tonumber(ARGV[7]), event)
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


# What a followed webhook's finished first attempts leave, in one script. KEYS: DUE,
# PENDING, CURSORS, the webhook, its log, its due set, its lease. ARGV: the three
# prefixes, webhook id, this dispatcher, the new cursor (or ''), disabled at (or ''),
# log length, number of log entries, the entries (oldest first), then per retry: event
# id, ms until it is due (counted from this commit, at most COMMIT_EVERY after the
# attempt failed), body. The log and the retries are written while the webhook
# exists; the cursor only while this dispatcher holds the lease (else the one that
# took it over sends from the old cursor: duplicates, never a loss). A disabled
# webhook leaves the registry and comes first in DUE, so the next claim drops its
# retries. Returns 1, or 0 when the webhook is gone or the lease lost.
COMMIT_SCRIPT = (
    _PREFIXES
    + _PLACE
    + SERVER_TIME
    + """
local hook, me, cursor, disabled = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
local logged = tonumber(ARGV[9])
if logged > 0 then
  redis.call('LPUSH', KEYS[5], unpack(ARGV, 10, 9 + logged))
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[8]) - 1)
end
local added = 0
for i = 10 + logged, #ARGV, 3 do
  if redis.call('ZADD', KEYS[6], 'NX', now_ms + tonumber(ARGV[i + 1]), ARGV[i]) == 1 then
    local delivery = delivery_prefix .. hook .. ':' .. ARGV[i]
    redis.call('HSET', delivery, 'attempts', 1, 'body', ARGV[i + 2])
    added = added + 1
  end
end
if added > 0 then
  redis.call('INCRBY', KEYS[2], added)
  place(KEYS[1], KEYS[6], hook)
end
if disabled ~= '' then
  redis.call('HSETNX', KEYS[4], 'disabled_at', disabled)
  redis.call('HDEL', KEYS[3], hook)
  if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('ZADD', KEYS[1], 0, hook) end
  return 1
end
if redis.call('GET', KEYS[7]) ~= me then return 0 end
if cursor ~= '' and redis.call('HEXISTS', KEYS[3], hook) == 1 then
  redis.call('HSET', KEYS[3], hook, cursor)
end
return 1
"""
)

# Says this dispatcher is alive, forgets those silent for a lease. KEYS: DISPATCHERS.
# ARGV: this dispatcher, lease ms. Returns how many are alive, and the store's TIME.
ALIVE_SCRIPT = (
    SERVER_TIME
    + """
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
return {redis.call('ZCARD', KEYS[1]), server_time}
"""
)

# KEYS: a lease. ARGV: this dispatcher, lease ms. Renews it if it is this one's.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: a lease. ARGV: this dispatcher. Lets it go if it is this one's.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


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


K = TypeVar("K")


def _less(counts: Counter[K], key: K) -> None:
    counts[key] -= 1
    if not counts[key]:
        del counts[key]


class InFlight:
    """This process's attempts in flight (or runners), per webhook and per campaign:
    what a campaign may add within its cap."""

    def __init__(self) -> None:
        self._hooks: Counter[str] = Counter()
        self._campaigns: Counter[Scope] = Counter()
        self.total = 0

    def add(self, webhook: Webhook) -> None:
        self._hooks[webhook.id] += 1
        self._campaigns[webhook.scope] += 1
        self.total += 1

    def remove(self, webhook: Webhook) -> None:
        _less(self._hooks, webhook.id)
        _less(self._campaigns, webhook.scope)
        self.total -= 1

    def of_campaign(self, scope: Scope) -> int:
        return self._campaigns[scope]

    def claim_args(self) -> list[str | int]:
        """CLAIM_SCRIPT's: how many webhooks have attempts in flight, then per webhook
        its id and how many, then per campaign its company, campaign and how many."""
        args: list[str | int] = [len(self._hooks)]
        for webhook_id, started in self._hooks.items():
            args.extend((webhook_id, started))
        for scope, started in self._campaigns.items():
            args.extend((scope.company, scope.campaign, started))
        return args


@dataclass
class Entry:
    """A feed entry a followed webhook read: passed once none of its events is left."""

    id: str
    events: int  # all of them, as ADDED counted them
    left: int  # those the webhook is subscribed to, not yet finished


@dataclass(frozen=True)
class Todo:
    """A first attempt to make."""

    entry: Entry
    event_id: str
    body: str


@dataclass
class Follow:
    """A webhook this dispatcher follows: what it read of the feed and what finished."""

    webhook: Webhook
    cursor: Cursor  # as stored
    read: str  # the last feed entry read
    entries: deque[Entry] = field(default_factory=deque)  # read, not passed, in order
    todo: deque[Todo] = field(default_factory=deque)
    runners: int = 0
    sending: int = 0  # of the runners, those in an attempt
    sending_until: float = 0.0  # the last deadline of an attempt started (monotonic)
    lease_until: float = 0.0  # the lease lasts at least until then (monotonic)
    logs: list[str] = field(default_factory=list)
    retries: list[str | int] = field(default_factory=list)  # event id, delay ms, body
    disabled_at: str | None = None
    more: bool = True  # the last read was full: more may wait
    seen: int = -1  # the feed's ADDED count when it was last read
    releasing: bool = False
    gone: bool = False

    @property
    def stream(self) -> str:
        return feed_stream_key(self.cursor.feed)

    def passable(self) -> tuple[str, int] | None:
        """The cursor past every entry at the front that finished, or None."""
        entry, passed = None, self.cursor.passed
        for one in self.entries:
            if one.left:
                break
            entry, passed = one.id, passed + one.events
        return None if entry is None else (entry, passed)


def may_start(lease_until: float, now: float) -> bool:
    """Whether an attempt may start at `now` under a lease that lasts until
    `lease_until` (both time.monotonic()): one that outlasts it (LEASE_MS)."""
    return lease_until - now >= START_WITHIN_LEASE


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


class Dispatcher:
    def __init__(
        self, settings: Settings, name: str, metrics: Registry, yielding: Yielding | None = None
    ) -> None:
        self._name = name
        self._yielding = yielding
        self._metrics = metrics
        self._allow_private = settings.webhook_allow_private
        self._schedule = settings.webhook_retry_schedule
        # Own clients, bounded waits.
        self._follower = sync_client(
            settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        self._redis = sync_client(
            settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        # The store's clock as this process reads it at each tend: attempts are
        # signed on it (its due times and leases are the scripts' own reading).
        self._store_clock = ServerClock()
        self._alive = self._follower.register_script(ALIVE_SCRIPT)
        self._commit_script = self._follower.register_script(COMMIT_SCRIPT)
        self._renew = self._follower.register_script(RENEW_SCRIPT)
        self._release = self._follower.register_script(RELEASE_SCRIPT)
        self._claim = self._redis.register_script(CLAIM_SCRIPT)
        self._record = self._redis.register_script(RECORD_SCRIPT)
        self._stop = threading.Event()
        # The follow loop's and the claim loop's: set when a runner or an attempt ends.
        self._woken = threading.Event()
        self._wake = threading.Event()
        # The follows, and everything in them, are shared with the runners.
        self._lock = threading.Lock()
        self._follows: dict[str, Follow] = {}
        # Claimed retries that ended: their attempt, or None when none was made.
        self._done: queue.SimpleQueue[tuple[Job, Finished | None]] = queue.SimpleQueue()
        self._unrecorded: list[Finished] = []
        self._in_flight = InFlight()
        # The runners, per webhook and campaign; and whether a campaign waits for one
        # because all RUNNERS are taken (then runners give theirs up after an attempt).
        self._running = InFlight()
        self._starved = False
        self._runners = ThreadPoolExecutor(RUNNERS, thread_name_prefix="webhook")
        self._pool = ThreadPoolExecutor(RETRY_SENDERS, thread_name_prefix="webhook-retry")
        self._connections = Connections()
        self._threads = [
            threading.Thread(target=self._follow_loop, name="webhook-follow", daemon=True),
            threading.Thread(target=self._claim_loop, name="webhook-claim", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._woken.set()
        for thread in self._threads:
            thread.join(STOP_GRACE + 12)
        self._connections.close()
        for client in (self._follower, self._redis):
            with contextlib.suppress(redis.RedisError, OSError):
                client.close()

    # First attempts: the feeds followed.

    def _follow_loop(self) -> None:
        tended = committed = -TEND_EVERY
        while not self._stop.is_set():
            self._woken.clear()
            try:
                if time.monotonic() - tended >= TEND_EVERY:
                    tended = time.monotonic()
                    self._tend()
                self._read()
                self._start_runners()
                if time.monotonic() - committed >= COMMIT_EVERY:
                    committed = time.monotonic()
                    self._commit()
            except (redis.RedisError, OSError) as exc:
                log.warning("webhook deliveries: store failed: %s", exc.__class__.__name__)
                self._stop.wait(BACKOFF)
                continue
            self._woken.wait(POLL)
        self._leave()

    def _tend(self) -> None:
        """Say this dispatcher is alive, renew its leases, and follow its fair share
        of the webhooks: take free ones below it, let go of some above it."""
        with self._lock:
            owned = list(self._follows)
        asked = time.monotonic()
        with self._follower.pipeline(transaction=False) as pipe:
            self._alive(keys=[DISPATCHERS], args=[self._name, LEASE_MS], client=pipe)
            pipe.hgetall(CURSORS)
            for hook in owned:
                self._renew(
                    keys=[deliveries.lease_key(hook)], args=[self._name, LEASE_MS], client=pipe
                )
                pipe.hgetall(webhook_key(hook))
            sent = time.time()
            replies = pipe.execute()
        self._store_clock.observe(seconds(replies[0][1]), sent, time.time())
        live, registry = int(replies[0][0]), replies[1]
        with self._lock:
            for hook, renewed, record in zip(owned, replies[2::2], replies[3::2], strict=True):
                follow = self._follows.get(hook)
                found = from_record(record)
                if follow is None:
                    continue
                if not renewed or found is None or hook not in registry:
                    self._drop(follow)  # taken over, deleted or disabled
                else:
                    follow.webhook = found
                    follow.lease_until = asked + LEASE_MS / 1000
            share = deliveries.fair_share(len(registry), live)
            active = [one for one in self._follows.values() if not one.releasing]
            for follow in active[share:]:
                follow.releasing = True
            wanted = share - len(active)
        if wanted > 0:
            self._take([hook for hook in registry if hook not in owned], wanted)

    def _take(self, candidates: list[str], wanted: int) -> None:
        """Follow up to `wanted` of the candidates that no one follows. The cursor is
        read after the lease is taken: the one who let it go can no longer move it."""
        if not candidates:
            return
        random.shuffle(candidates)
        leases = self._follower.mget([deliveries.lease_key(hook) for hook in candidates])
        free = [hook for hook, holder in zip(candidates, leases, strict=True) if holder is None]
        free = free[:wanted]
        if not free:
            return
        asked = time.monotonic()
        with self._follower.pipeline(transaction=False) as pipe:
            for hook in free:
                pipe.set(deliveries.lease_key(hook), self._name, nx=True, px=LEASE_MS)
                pipe.hgetall(webhook_key(hook))
                pipe.hget(CURSORS, hook)
            replies = pipe.execute()
        for x, hook in enumerate(free):
            taken, record, value = replies[3 * x : 3 * x + 3]
            found = from_record(record)
            if not taken:
                continue
            if found is None or value is None:
                self._release(keys=[deliveries.lease_key(hook)], args=[self._name])
                continue
            cursor = Cursor.parse(value)
            with self._lock:
                self._follows[hook] = Follow(found, cursor, cursor.entry)
                self._follows[hook].lease_until = asked + LEASE_MS / 1000

    def _drop(self, follow: Follow) -> None:
        """Stop following (the lock held): its runners end after their attempt."""
        follow.gone = True
        follow.todo.clear()
        del self._follows[follow.webhook.id]

    def _read(self) -> None:
        """Read the feed after what was read, for each webhook with room for more
        whose feed grew: one look at the feeds' ADDED counts tells which did, however
        many webhooks this dispatcher follows."""
        with self._lock:
            looking = [
                follow
                for follow in self._follows.values()
                if not follow.releasing and follow.disabled_at is None and len(follow.todo) < AHEAD
            ]
        if not looking:
            return
        counts = self._follower.hmget(ADDED, [follow.cursor.feed for follow in looking])
        reading = [
            (follow, int(count or 0))
            for follow, count in zip(looking, counts, strict=True)
            if follow.more or int(count or 0) != follow.seen
        ]
        if not reading:
            return
        # The webhooks are read again with their feeds, so that none deleted, disabled
        # or rotated since the last look is sent to, or signed, as it was.
        with self._follower.pipeline(transaction=False) as pipe:
            for follow, _ in reading:
                pipe.xrange(follow.stream, f"({follow.read}", "+", count=READ_ENTRIES)
                pipe.hgetall(webhook_key(follow.webhook.id))
            replies = pipe.execute()
        with self._lock:
            for (follow, count), entries, record in zip(
                reading, replies[0::2], replies[1::2], strict=True
            ):
                # What the count said is read now, or in the next read when this one
                # was full.
                follow.seen, follow.more = count, len(entries) == READ_ENTRIES
                found = from_record(record)
                if follow.gone:
                    continue
                if found is None or found.disabled_at is not None:
                    self._drop(follow)
                    continue
                follow.webhook = found
                self._add(follow, entries)

    def _add(self, follow: Follow, entries: Sequence[tuple[str, dict[str, str]]]) -> None:
        kinds = follow.webhook.events
        for entry_id, fields in entries:
            events = entry_events(entry_id, fields)
            wanted = [event for event in events if event.kind in kinds]
            entry = Entry(entry_id, len(events), len(wanted))
            follow.entries.append(entry)
            for event in wanted:
                follow.todo.append(Todo(entry, str(event.id), deliveries.payload(event)))
            follow.read = entry_id

    def _wants_runner(self, follow: Follow, now: float) -> bool:
        """Whether a webhook has events for another runner, and room for it (the lock
        held)."""
        return (
            not follow.releasing
            and follow.runners < WINDOW
            and len(follow.todo) > follow.runners - follow.sending
            and may_start(follow.lease_until, now)
        )

    def _start_runners(self) -> None:
        """Runners where events wait, within the caps, a runner at a time to the
        campaign with the fewest (then to its webhook with the fewest)."""
        now = time.monotonic()
        with self._lock:
            order = itertools.count()
            waiting = [
                (
                    self._running.of_campaign(follow.webhook.scope),
                    follow.runners,
                    next(order),
                    follow,
                )
                for follow in self._follows.values()
                if self._wants_runner(follow, now)
            ]
            heapq.heapify(waiting)
            while waiting and self._running.total < RUNNERS:
                campaign, runners, _, follow = heapq.heappop(waiting)
                now_campaign = self._running.of_campaign(follow.webhook.scope)
                if now_campaign >= CAMPAIGN_RUNNERS:
                    continue
                if (now_campaign, follow.runners) != (campaign, runners):  # others started
                    heapq.heappush(waiting, (now_campaign, follow.runners, next(order), follow))
                    continue
                follow.runners += 1
                self._running.add(follow.webhook)
                self._runners.submit(self._run, follow)
                if self._wants_runner(follow, now):
                    heapq.heappush(waiting, (campaign + 1, follow.runners, next(order), follow))
            self._starved = any(
                self._running.of_campaign(follow.webhook.scope) < CAMPAIGN_RUNNERS
                for *_, follow in waiting
            )

    def _run(self, follow: Follow) -> None:
        """A runner: the webhook's next events, one after the other, for a turn."""
        try:
            for _ in range(TURN):
                if self._yielding is not None:
                    self._yielding.wait(self._stop.wait)
                with self._lock:
                    now = time.monotonic()
                    if (
                        follow.gone
                        or follow.releasing
                        or not follow.todo
                        or self._stop.is_set()
                        or not may_start(follow.lease_until, now)
                    ):
                        return
                    todo = follow.todo.popleft()
                    job = Job(follow.webhook, todo.event_id, 0, todo.body)
                    deadline = now + ATTEMPT_TIMEOUT
                    follow.sending += 1
                    follow.sending_until = max(follow.sending_until, deadline)
                try:
                    finished = attempt(
                        job, self._connections, self._allow_private, self._store_clock, deadline
                    )
                finally:
                    with self._lock:
                        follow.sending -= 1
                result = self._finished(follow, todo, finished)
                self._count(finished, result)
                if self._starved:
                    return  # its thread to a campaign waiting for one
        finally:
            with self._lock:
                follow.runners -= 1
                self._running.remove(follow.webhook)
            self._woken.set()

    def _finished(self, follow: Follow, todo: Todo, finished: Finished) -> str:
        result = deliveries.outcome(finished.attempt, 1, self._schedule)
        entry = deliveries.log_entry(todo.event_id, 1, finished.at_ms, finished.attempt, result)
        with self._lock:
            follow.logs.append(entry)
            todo.entry.left -= 1
            if result == deliveries.RETRY:
                delay = deliveries.retry_delay(1, self._schedule) * 1000
                follow.retries.extend((todo.event_id, delay, todo.body))
            elif result == deliveries.DISABLED and follow.disabled_at is None:
                follow.disabled_at = iso(self._store_clock.now_ms())
                follow.todo.clear()
        return result

    def _commit(self) -> None:
        """Write what finished: per webhook, its log entries, its retries, and its
        cursor past the entries whose events all finished; then let go of those
        released once their runners are done."""
        writes: list[tuple[Follow, list[str], list[str | int], tuple[str, int] | None]] = []
        with self._lock:
            for follow in self._follows.values():
                moved = follow.passable()
                if follow.logs or follow.retries or moved or follow.disabled_at:
                    writes.append((follow, follow.logs, follow.retries, moved))
                    follow.logs, follow.retries = [], []
            leaving = [
                follow
                for follow in self._follows.values()
                if follow.releasing and not follow.runners
            ]
        if not writes and not leaving:
            return
        try:
            with self._follower.pipeline(transaction=False) as pipe:
                for follow, logged, retries, moved in writes:
                    self._commit_one(pipe, follow, logged, retries, moved)
                replies = pipe.execute()
        except BaseException:
            with self._lock:  # written at the next commit
                for follow, logged, retries, _ in writes:
                    follow.logs[:0] = logged
                    follow.retries[:0] = retries
            raise
        with self._lock:
            for (follow, _, _, moved), kept in zip(writes, replies, strict=True):
                if follow.gone:
                    continue
                if not kept or follow.disabled_at is not None:
                    self._drop(follow)
                elif moved is not None:
                    follow.cursor = Cursor(moved[0], moved[1], follow.cursor.feed)
                    while follow.entries and follow.entries[0].id != moved[0]:
                        follow.entries.popleft()
                    follow.entries.popleft()
            released = []
            for follow in leaving:
                if not follow.gone and not follow.logs and not follow.passable():
                    self._drop(follow)
                    released.append(follow.webhook.id)
        for hook in released:
            self._release(keys=[deliveries.lease_key(hook)], args=[self._name])

    def _commit_one(
        self,
        pipe: Any,
        follow: Follow,
        logged: list[str],
        retries: list[str | int],
        moved: tuple[str, int] | None,
    ) -> None:
        hook = follow.webhook.id
        cursor = "" if moved is None else str(Cursor(moved[0], moved[1], follow.cursor.feed))
        keys = [
            DUE,
            PENDING,
            CURSORS,
            webhook_key(hook),
            log_key(hook),
            deliveries.due_key(hook),
            deliveries.lease_key(hook),
        ]
        args: list[str | int] = [*_prefixes(), hook, self._name, cursor]
        args += [follow.disabled_at or "", LOG_LENGTH, len(logged), *logged, *retries]
        self._commit_script(keys=keys, args=args, client=pipe)

    def _leave(self) -> None:
        """On the way out: no new attempts; write what finishes within STOP_GRACE,
        then let go of every lease, so that another worker follows at once; but that
        of a webhook with attempts still in flight only LEASE_MARGIN after their
        deadline, so that no one makes them again meanwhile."""
        self._runners.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + STOP_GRACE
        with contextlib.suppress(redis.RedisError, OSError):
            while time.monotonic() < deadline:
                with self._lock:
                    busy = any(follow.runners for follow in self._follows.values())
                self._commit()
                if not busy:
                    break
                self._woken.wait(0.05)
                self._woken.clear()
            with self._lock:
                owned = [
                    (hook, follow.sending, follow.sending_until)
                    for hook, follow in self._follows.items()
                ]
            now = time.monotonic()
            with self._follower.pipeline(transaction=False) as pipe:
                for hook, sending, until in owned:
                    keys = [deliveries.lease_key(hook)]
                    if sending:
                        ms = math.ceil((until + LEASE_MARGIN - now) * 1000)
                        self._renew(keys=keys, args=[self._name, ms], client=pipe)
                    else:
                        self._release(keys=keys, args=[self._name], client=pipe)
                pipe.zrem(DISPATCHERS, self._name)
                pipe.execute()

    # Retries: claimed when due, sent, recorded.

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
                self._wake.wait(RETRY_POLL)
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
                job, finished = self._done.get_nowait()
            except queue.Empty:
                return
            self._in_flight.remove(job.webhook)
            if finished is not None:
                self._unrecorded.append(finished)

    def _step(self, claim: bool) -> bool:
        """Record what finished and claim what is due, in one round trip. True if
        there may be more to do at once."""
        self._collect()
        recording = self._unrecorded
        room = RETRY_SENDERS - self._in_flight.total if claim else 0
        if not recording and room <= 0:
            return False
        outcomes = [self._outcome(finished) for finished in recording]
        with self._redis.pipeline(transaction=False) as pipe:
            for _, args in outcomes:
                self._record(keys=[DUE, PENDING], args=args, client=pipe)
            # Before the claim's "now": its lease lasts at least LEASE_MS from here.
            asked = time.monotonic()
            if room > 0:
                args = [*_prefixes(), LEASE_MS, room, SCAN, WINDOW, DROP_CHUNK]
                args += [CAMPAIGN_RETRIES, *self._in_flight.claim_args()]
                self._claim(keys=[DUE, PENDING], args=args, client=pipe)
            replies = pipe.execute()
        self._unrecorded = []
        for finished, (result, _) in zip(recording, outcomes, strict=True):
            self._count(finished, result)
        if room <= 0:
            return False
        jobs, _ = parse_claim(replies[-1])
        for job in jobs:
            self._in_flight.add(job.webhook)
            future = self._pool.submit(self._retry, job, asked + LEASE_MS / 1000)
            future.add_done_callback(functools.partial(self._attempted, job))
        return bool(jobs) or bool(recording)

    def _retry(self, job: Job, lease_until: float) -> Finished | None:
        """A claimed retry's attempt, or None when its claim would run out before the
        attempt's deadline: it is left to be claimed again then."""
        now = time.monotonic()
        if not may_start(lease_until, now):
            log.warning(
                "webhook %s, event %s: not attempted, its claim runs out too soon",
                job.webhook.id,
                job.event_id,
                extra={"webhook": job.webhook.id, "event": job.event_id},
            )
            return None
        return attempt(
            job, self._connections, self._allow_private, self._store_clock, now + ATTEMPT_TIMEOUT
        )

    def _attempted(self, job: Job, future: Future[Finished | None]) -> None:
        if not future.cancelled():
            self._done.put((job, future.result()))
        else:
            self._done.put((job, None))
        self._wake.set()

    def _outcome(self, finished: Finished) -> tuple[str, list[str | int]]:
        """The outcome of an attempt, and RECORD_SCRIPT's arguments to record it."""
        job = finished.job
        made = job.attempts + 1
        result = deliveries.outcome(finished.attempt, made, self._schedule)
        delay = 0
        if result == deliveries.RETRY:
            delay = deliveries.retry_delay(made, self._schedule) * 1000
        hook = job.webhook.id
        entry = deliveries.log_entry(job.event_id, made, finished.at_ms, finished.attempt, result)
        args: list[str | int] = [
            *_prefixes(),
            hook,
            job.event_id,
            result,
            delay,
            made,
            entry,
            iso(self._store_clock.now_ms()),
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


def lowest_priority() -> None:
    """Deliveries take the CPU that end-contact leaves, not what it needs. At nice 19
    they still took a quarter of a core from it at 16 clients (bench/webhooks.py): a
    woken end-contact process waited for the dispatcher's time slice. In the idle
    class (SCHED_IDLE) any other process that wakes up runs at once. Called before
    any thread starts: Linux sets the class per thread, and threads inherit it."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(NICE)


def main() -> None:
    """`python -m worker.deliveries`: the dispatcher in a process of its own, which
    each worker process starts and stops with itself (worker/app.py). A process, not a
    thread of the worker: deliveries cost about ten times the CPU of the marks they
    follow, and at a lower priority, with a GIL of their own, they take only what
    end-contact leaves (bench/webhooks.py)."""
    logs.configure()
    _die_with_parent()
    lowest_priority()
    with exit_on_bad_settings():
        settings = Settings.from_env()
    store = Store.connect(settings)
    metrics = Registry()
    name = f"{socket.gethostname()}-{os.getpid()}"
    dispatcher = Dispatcher(settings, name, metrics, Yielding(process_cpu(os.getppid())))
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
