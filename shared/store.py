"""The store's keyspace (REDIS_URL) and the operations on it: what must last.

Keys:
  ec:key:<sha256 of the API key>   hash: id, company, campaign, label, created_at[, revoked_at]
  ec:key-ids                       hash: key id -> sha256, for listing and revoking by id
  ec:ended:<company>:<campaign>    hash: E.164 number -> time it was first ended
  ec:metrics                       hash: metric sample -> its sum over all processes

What lives only for seconds (queue, results, heartbeats, rate-limit counters) is on
the broker (shared.broker), which may be another server, without fsync.

Company and campaign are percent-encoded in key names, so a ':' in a name cannot make
two scopes collide. One hash per campaign keeps small campaigns compact and lets an
operator count or export a campaign's marks with one key.

`Store` is synchronous (worker, CLI); `AsyncStore` has what the web needs. Key names,
record decoding and the metrics write are shared by both, which only send and await.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

import redis

from shared import events, lua
from shared.apikeys import ApiKey, Scope, check_name, digest, generate_id, generate_secret
from shared.clock import SERVER_TIME, seconds
from shared.connection import sync_client
from shared.deliveries import PENDING
from shared.events import (
    CODES,
    ORIGIN,
    Change,
    Event,
    EventId,
    FeedAhead,
    FeedPage,
    FeedTrimmed,
)
from shared.marks import EXPORT_COUNT, Batch, Cursor, Listing, Page, csv_chunk
from shared.metrics import METRICS_KEY
from shared.webhook_store import Webhooks
from shared.webhooks import (
    ADDED,
    CURSORS,
    campaign_webhooks_key,
    feed_stream_key,
    pending_events,
)

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client
    import redis.client

    from shared.settings import Settings

log = logging.getLogger(__name__)

KEY_IDS = "ec:key-ids"
# Feed name (`feed_name`) -> the id of the last event trimmed from it (`<entry>-<index>`).
TRIMMED = "ec:events-trimmed"
# Feed names of every campaign with a feed, for the sweep that trims idle ones.
FEEDS = "ec:feeds"
# Entries past the retention one write trims (a write adds one per request at most, so
# the feed shrinks to its retention however fast it is written), and one sweep.
TRIM_PER_WRITE = 16
TRIM_PER_SWEEP = 1000
# Held for a sweep's period by the process that swept (Store.trim_feeds).
SWEPT = "ec:feeds-swept"
# A feed entry holds 1 to 100 events (a request's changes in a worker batch): a page
# reads entries a hundred at a time, and stops short (with a cursor) after this many reads.
FEED_ENTRIES_PER_READ = 100
FEED_READS_PER_PAGE = 32


def key_record(secret_digest: str) -> str:
    return f"ec:key:{secret_digest}"


def feed_name(scope: Scope) -> str:
    return f"{quote(scope.company, safe='')}:{quote(scope.campaign, safe='')}"


def scope_of_feed(name: str) -> Scope:
    company, _, campaign = name.partition(":")
    return Scope(unquote(company), unquote(campaign))


def ended_key(scope: Scope) -> str:
    """The campaign's hash: number -> its history, state first (shared.events)."""
    return f"ec:ended:{feed_name(scope)}"


def events_key(scope: Scope) -> str:
    """The campaign's feed: a stream, an entry per request's changes in a batch."""
    return feed_stream_key(feed_name(scope))


# Applies one campaign's changes, those past their request's deadline not.
WRITE_SCRIPT = SERVER_TIME + lua.load("shared", "store_write")


def _script_keys(scope: Scope) -> list[str]:
    """WRITE_SCRIPT's keys for one campaign."""
    feed = feed_name(scope)
    return [
        ended_key(scope),
        events_key(scope),
        TRIMMED,
        FEEDS,
        campaign_webhooks_key(feed),
        ADDED,
    ]


@dataclass
class _Plan:
    """One campaign's part of a batch: the script's arguments per request, and where
    each of its numbers stands in the batch."""

    args: list[str | int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


def _plans(changes: Sequence[Change]) -> dict[Scope, _Plan]:
    """The batch's changes by campaign, then by request (same kind, key, request id,
    reason and deadline), each in the order first seen. Within a campaign the requests
    apply in that order; changes of one request never change order."""
    grouped: dict[Scope, dict[tuple[str, str, str, str, int], list[int]]] = {}
    for position, change in enumerate(changes):
        context = change.context
        request = (
            CODES[change.kind],
            context.key_id,
            context.request_id,
            context.stored_reason(),
            change.deadline_ms,
        )
        grouped.setdefault(change.scope, {}).setdefault(request, []).append(position)
    plans: dict[Scope, _Plan] = {}
    for scope, requests in grouped.items():
        plan = plans[scope] = _Plan()
        for request, positions in requests.items():
            plan.args.extend((*request, len(positions)))
            plan.args.extend(changes[position].phone for position in positions)
            plan.positions.extend(positions)
    return plans


def utc_now() -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-11-28T22:34:14.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _api_key(raw: Mapping[Any, Any]) -> ApiKey | None:
    if not raw:
        return None
    fields = {str(name): str(value) for name, value in raw.items()}
    return ApiKey(
        id=fields["id"],
        scope=Scope(fields["company"], fields["campaign"]),
        label=fields.get("label", ""),
        created_at=fields["created_at"],
        revoked_at=fields.get("revoked_at") or None,
    )


def _text(value: object) -> str | None:
    # Only marks are read through this: their value is decoded in one place.
    return None if value is None else events.ended_at_of(value)


def _queue_metrics(
    pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline, counts: Mapping[str, float]
) -> None:
    """Queue the adding of one process's counts to everyone's (shared.metrics); the
    caller's MULTI applies them all or none."""
    for sample, amount in counts.items():
        pipe.hincrbyfloat(METRICS_KEY, sample, amount)


class NotDurable(RuntimeError):
    """The mark was written but Redis did not confirm it is on disk."""


# How long a write may wait for its fsync. With appendfsync always it is already on
# disk when WAITAOF asks; with everysec the wait is up to a second.
DURABLE_TIMEOUT_MS = 2000


class Store:
    def __init__(
        self, client: redis.Redis, replicas: int = 0, retention_days: float = 30.0
    ) -> None:
        # The client must decode responses: everything stored here is text.
        self._redis = client
        # How many replicas must have a mark on disk, besides the primary.
        self._replicas = replicas
        self._waitaof = True
        self._retention_ms = max(1, round(retention_days * 86_400_000))
        self._write_script = client.register_script(WRITE_SCRIPT)

    @classmethod
    def connect(cls, settings: Settings) -> Store:
        """A Store on its own client, with bounded waits: a Redis that stops answering
        fails the call instead of hanging the worker or command that made it."""
        client = sync_client(
            settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(client, settings.durable_replicas, settings.events_retention_days)

    def close(self) -> None:
        self._redis.close()

    def webhooks(self) -> Webhooks:
        """The webhooks' operations (shared.webhook_store) on this store's client."""
        return Webhooks(self._redis)

    def apply_changes(self, changes: Sequence[Change]) -> list[bool | None]:
        """Apply every change, each mark with its event, on disk, in one round trip: a
        script per campaign (shared.events) and one WAITAOF. Per change: True if it
        changed the number's state, False if the number was already so, None if it was
        not applied: Redis refused its campaign's script (e.g. the campaign's key is not
        a hash), or its deadline (Change.deadline_ms) had passed by the store's clock.

        Raises (redis.RedisError, OSError, NotDurable) when no change can be vouched
        for. Errors are returned, not raised: redis-py's message for a failed
        pipeline command quotes the command, numbers included.
        """
        if not changes:
            return []
        plans = _plans(changes)
        with self._redis.pipeline(transaction=False) as pipe:
            for scope, plan in plans.items():
                args = [self._retention_ms, TRIM_PER_WRITE, feed_name(scope), *plan.args]
                self._write_script(keys=_script_keys(scope), args=args, client=pipe)
            waitaof = self._waitaof
            if waitaof:
                # On the same connection, after the writes: it waits for them.
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "WAITAOF", 1, self._replicas, DURABLE_TIMEOUT_MS
                )
            replies = pipe.execute(raise_on_error=False)
        if waitaof:
            self._check_waitaof(replies.pop())
        outcome: dict[int, bool | None] = {}
        for plan, reply in zip(plans.values(), replies, strict=True):
            flags = None if isinstance(reply, Exception) else list(reply)
            for at, position in enumerate(plan.positions):
                flag = None if flags is None else int(flags[at])
                # -1: past its deadline, not applied.
                outcome[position] = None if flag is None or flag < 0 else bool(flag)
        return [outcome[position] for position in range(len(changes))]

    def time(self) -> float:
        """The store's clock (TIME), in seconds since the epoch."""
        return seconds(self._redis.time())

    def trim_feeds(self, every_ms: int = 0) -> int:
        """Trim every campaign's feed of what is past the retention (writes trim as they
        go; this reaches campaigns nobody writes to). Returns the feeds visited.

        With `every_ms`, only if no process has swept in that long: every worker asks
        on its own clock, and one sweep a period is enough for all of them."""
        if every_ms and not self._redis.set(SWEPT, "1", nx=True, px=every_ms):
            return 0
        visited = 0
        for name in self._redis.sscan_iter(FEEDS, count=100):
            scope = scope_of_feed(str(name))
            args: list[str | int] = [self._retention_ms, TRIM_PER_SWEEP, str(name)]
            self._write_script(keys=_script_keys(scope), args=args)
            visited += 1
        return visited

    def _check_waitaof(self, reply: Any) -> None:
        """Raise NotDurable unless WAITAOF's reply (or error) says the writes are on disk."""
        if isinstance(reply, redis.ResponseError):
            if "unknown command" not in str(reply).lower():
                raise NotDurable(str(reply)) from None  # e.g. appendonly is off
            if self._replicas:
                raise NotDurable("replicas can be waited for on Redis 7.2+ only") from None
            self._waitaof = False
            return
        if isinstance(reply, Exception):
            raise reply
        if int(reply[0]) < 1:
            raise NotDurable(f"not fsynced within {DURABLE_TIMEOUT_MS} ms")
        if int(reply[1]) < self._replicas:
            raise NotDurable(f"{reply[1]} of {self._replicas} replicas fsynced in time")

    def ended_at(self, scope: Scope, phone: str) -> str | None:
        return _text(self._redis.hget(ended_key(scope), phone))

    def history(self, scope: Scope, phone: str) -> list[Event]:
        return events.history(phone, self._redis.hget(ended_key(scope), phone))

    def pending_deliveries(self) -> int:
        """As AsyncStore.pending_deliveries."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(PENDING)
            pipe.hgetall(CURSORS)
            pipe.hgetall(ADDED)
            retries, cursors, added = pipe.execute()
        return int(retries or 0) + pending_events(cursors, added)

    def add_metrics(self, counts: Mapping[str, float]) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            _queue_metrics(pipe, counts)
            pipe.execute()

    def create_key(self, company: str, campaign: str, label: str = "") -> tuple[ApiKey, str]:
        """Store a new key; return it with its secret, which exists nowhere else after."""
        scope = Scope(check_name("company", company), check_name("campaign", campaign))
        label = check_name("label", label) if label.strip() else ""
        secret = generate_secret()
        key = ApiKey(generate_id(), scope, label, utc_now(), None)
        secret_digest = digest(secret)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key_record(secret_digest),
                mapping={
                    "id": key.id,
                    "company": scope.company,
                    "campaign": scope.campaign,
                    "label": label,
                    "created_at": key.created_at,
                },
            )
            pipe.hset(KEY_IDS, key.id, secret_digest)
            pipe.execute()
        return key, secret

    def list_keys(self) -> list[ApiKey]:
        digests = self._redis.hgetall(KEY_IDS)
        with self._redis.pipeline(transaction=False) as pipe:
            for secret_digest in digests.values():
                pipe.hgetall(key_record(str(secret_digest)))
            records: list[Mapping[Any, Any]] = pipe.execute()
        keys = []
        for record in records:
            try:
                key = _api_key(record)
            except KeyError:
                # Written by us, so never expected; one bad record must not hide the
                # others from the operator who lists them.
                log.warning("unreadable key record left out of the list")
                continue
            if key is not None:
                keys.append(key)
        return sorted(keys, key=lambda key: (key.created_at, key.id))

    def revoke_key(self, key_id: str) -> ApiKey | None:
        """Revoke by id; revoking twice keeps the first time. None if no such key."""
        secret_digest = self._redis.hget(KEY_IDS, key_id)
        if secret_digest is None:
            return None
        record = key_record(str(secret_digest))
        self._redis.hsetnx(record, "revoked_at", utc_now())
        return _api_key(self._redis.hgetall(record))

    def export(self, scope: Scope) -> Iterator[str]:
        """The campaign's marks as CSV rows, a chunk per HSCAN call (header not
        included): every number ended throughout at least once (shared.marks)."""
        key, scan = ended_key(scope), 0
        while True:
            scan, pairs = self._redis.hscan(key, scan, count=EXPORT_COUNT)
            yield csv_chunk(cast("dict[str, str]", pairs).items())
            if scan == 0:
                return


# /readyz's write: one small key that expires by itself.
WRITE_PROBE_KEY = "ec:ready"
WRITE_PROBE_MS = 10_000


class AsyncStore:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client

    async def find_key(self, secret: str) -> ApiKey | None:
        return _api_key(await self._redis.hgetall(key_record(digest(secret))))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def takes_writes(self) -> bool:
        """A write the server accepts: a server that answers PING may still refuse every
        write (full under noeviction, a replica after a failover, a failing disk)."""
        return bool(await self._redis.set(WRITE_PROBE_KEY, "1", px=WRITE_PROBE_MS))

    async def add_metrics(self, counts: Mapping[str, float]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            _queue_metrics(pipe, counts)
            await pipe.execute()

    async def metrics(self) -> dict[str, str]:
        """The summed metrics."""
        stored = await self._redis.hgetall(METRICS_KEY)
        return {str(field): str(value) for field, value in stored.items()}

    async def pending_deliveries(self) -> int:
        """Webhook deliveries waiting for their first attempt (events the webhooks
        have yet to pass in their feeds), for a retry, or in an attempt."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(PENDING)
            pipe.hgetall(CURSORS)
            pipe.hgetall(ADDED)
            retries, cursors, added = await pipe.execute()
        return int(retries or 0) + pending_events(cursors, added)

    async def ended_at(self, scope: Scope, phone: str) -> str | None:
        return _text(await self._redis.hget(ended_key(scope), phone))

    async def ended_at_many(self, scope: Scope, phones: Sequence[str]) -> list[str | None]:
        """Each number's endedAt, or None where it is not ended, in one HMGET."""
        values = await self._redis.hmget(ended_key(scope), phones)
        return [None if value is None else events.ended_at_of(value) for value in values]

    async def history(self, scope: Scope, phone: str) -> list[Event]:
        return events.history(phone, await self._redis.hget(ended_key(scope), phone))

    async def feed(self, scope: Scope, after: EventId | None, limit: int) -> FeedPage:
        """Up to `limit` events after `after` (None: from the oldest kept), oldest
        first. Raises FeedTrimmed when events after `after` have been trimmed, FeedAhead
        when `after` is past every event the feed could hold now."""
        stream = events_key(scope)
        count = min(limit + 1, FEED_ENTRIES_PER_READ)
        async with self._redis.pipeline(transaction=True) as pipe:
            # At the same instant: what was trimmed, what follows the cursor, the clock
            # that stamps new entries.
            pipe.hget(TRIMMED, feed_name(scope))
            pipe.xrange(stream, "-" if after is None else after.entry, "+", count=count)
            if after is not None:
                pipe.time()
            trimmed_text, entries, *clock = await pipe.execute()
        trimmed = None if trimmed_text is None else EventId.parse(str(trimmed_text))
        if after is not None:
            if trimmed is not None and after < trimmed:
                raise FeedTrimmed(str(trimmed))
            seconds, micros = clock[0]
            if events.ahead_of_feed(after, bool(entries), trimmed, seconds * 1000 + micros // 1000):
                raise FeedAhead
        position = after or trimmed or ORIGIN
        page = FeedPage([], position)
        for _ in range(FEED_READS_PER_PAGE):
            for entry, fields in entries:
                for event in events.entry_events(entry, fields):
                    if event.id <= position:
                        continue
                    page.events.append(event)
                    if len(page.events) == limit:
                        page.next = event.id
                        return page
            if len(entries) < count:
                break
            entries = await self._redis.xrange(stream, f"({entries[-1][0]}", "+", count=count)
        if page.events:
            page.next = page.events[-1].id
        return page

    async def page(self, scope: Scope, cursor: Cursor, limit: int) -> Page:
        """At most `limit` marks from where `cursor` left off (shared.marks)."""
        key = ended_key(scope)
        listing = Listing(cursor, limit)
        while not listing.done:
            read = listing.next_read()
            if isinstance(read, tuple):
                listing.read_carried(await self._redis.hmget(key, read))
                continue
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hscan(key, read, count=listing.room)
                pipe.hlen(key)
                (scan, pairs), length = await pipe.execute()
            listing.read_batch(Batch(int(scan), pairs, int(length)))
        return listing.page

    async def export(self, scope: Scope) -> AsyncIterator[str]:
        """As Store.export; the caller bounds each step's wait."""
        key, scan = ended_key(scope), 0
        while True:
            scan, pairs = await self._redis.hscan(key, scan, count=EXPORT_COUNT)
            yield csv_chunk(cast("dict[str, str]", pairs).items())
            if scan == 0:
                return
