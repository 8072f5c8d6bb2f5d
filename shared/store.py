"""The store (REDIS_URL): the operations on what must last (its keys: shared.keyspace).

`Store` is synchronous (worker, CLI); `AsyncStore` has what the web needs. Record
decoding and the metrics write are shared by both, which only send and await. The
marks' writes, the worker's, are shared.mark_writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import redis

from shared import events, lua
from shared.apikeys import ApiKey, Scope, check_name, digest, generate_id, generate_secret
from shared.clock import seconds
from shared.connection import sync_client
from shared.deliveries import PENDING
from shared.events import (
    ORIGIN,
    Change,
    Event,
    EventId,
    FeedAhead,
    FeedPage,
    FeedTrimmed,
)
from shared.keyspace import (
    ADDED,
    KEY_IDS,
    ended_key,
    events_key,
    feed_name,
    feed_record_key,
    key_record,
)
from shared.mark_writes import MarkWrites
from shared.marks import EXPORT_COUNT, Batch, Cursor, Listing, Page, csv_chunk
from shared.metrics import METRICS_KEY
from shared.migrations import upgrade
from shared.nodes import ready_probes
from shared.webhook_store import Webhooks
from shared.webhooks import CURSORS, pending_events
from shared.webhooks import Cursor as HookCursor

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client
    import redis.client

    from shared.settings import Settings

log = logging.getLogger(__name__)

# A feed entry holds 1 to 100 events (a request's changes in a worker batch): a page
# reads entries a hundred at a time, and stops short (with a cursor) after this many reads.
FEED_ENTRIES_PER_READ = 100
FEED_READS_PER_PAGE = 32


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


# Scripts rather than MULTI for what must be read or written at one instant: they run
# on a Cluster too (redis-py's cluster pipelines had no MULTI before 6.x), their keys
# in one hash slot (shared.keyspace).
METRICS_SCRIPT = lua.load("shared", "metrics_add")
FEED_READ_SCRIPT = lua.load("shared", "feed_read")
PAGE_READ_SCRIPT = lua.load("shared", "page_read")


def _metrics_args(counts: Mapping[str, float]) -> list[str | float]:
    """METRICS_SCRIPT's arguments: one process's counts, added to everyone's (shared.metrics)."""
    return [item for pair in counts.items() for item in pair]


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    """A flat [name, value, ...] reply (from a script) as a dict."""
    return {str(flat[at]): str(flat[at + 1]) for at in range(0, len(flat), 2)}


def _feeds(cursors: Mapping[Any, Any]) -> list[str]:
    """The feeds that the webhooks' cursors follow, each once: PENDING and CURSORS share
    the {hooks} tag (one round trip), the feeds' records are each on its campaign's
    node (one more)."""
    return sorted({HookCursor.parse(str(value)).feed for value in cursors.values()})


class Store:
    def __init__(
        self, client: redis.Redis, replicas: int = 0, retention_days: float = 30.0
    ) -> None:
        # The client must decode responses: everything stored here is text.
        self._redis = client
        self._writes = MarkWrites(client, replicas, retention_days)
        # The keyspace is at its version (shared.migrations), as far as this Store knows.
        self._current = False
        self._metrics_add = client.register_script(METRICS_SCRIPT)

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

    def upgrade_keyspace(self, wait: Callable[[float], object] = time.sleep) -> bool:
        """As shared.migrations.upgrade; once it has answered, never asked again."""
        if self._current:
            return False
        moved = upgrade(self._redis, wait)
        self._current = True
        return moved

    def apply_changes(self, changes: Sequence[Change]) -> list[bool | None]:
        """As MarkWrites.apply_changes, the keyspace upgraded first (before a write lands
        beside names it would move): raises as a write would if that cannot be done."""
        self.upgrade_keyspace()
        return self._writes.apply_changes(changes)

    def time(self) -> float:
        """The store's clock (TIME), in seconds since the epoch."""
        return seconds(self._redis.time())

    def trim_feeds(self, every_ms: int = 0) -> int:
        """As MarkWrites.trim_feeds."""
        return self._writes.trim_feeds(every_ms)

    def ended_at(self, scope: Scope, phone: str) -> str | None:
        return _text(self._redis.hget(ended_key(scope), phone))

    def history(self, scope: Scope, phone: str) -> list[Event]:
        return events.history(phone, self._redis.hget(ended_key(scope), phone))

    def pending_deliveries(self) -> int:
        """As AsyncStore.pending_deliveries."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(PENDING)
            pipe.hgetall(CURSORS)
            retries, cursors = pipe.execute()
        feeds = _feeds(cursors)
        with self._redis.pipeline(transaction=False) as pipe:
            for feed in feeds:
                pipe.hget(feed_record_key(feed), ADDED)
            added = dict(zip(feeds, pipe.execute(), strict=True))
        return int(retries or 0) + pending_events(cursors, added)

    def add_metrics(self, counts: Mapping[str, float]) -> None:
        self._metrics_add(keys=[METRICS_KEY], args=_metrics_args(counts))

    def create_key(self, company: str, campaign: str, label: str = "") -> tuple[ApiKey, str]:
        """Store a new key; return it with its secret, which exists nowhere else after."""
        scope = Scope(check_name("company", company), check_name("campaign", campaign))
        label = check_name("label", label) if label.strip() else ""
        secret = generate_secret()
        key = ApiKey(generate_id(), scope, label, utc_now(), None)
        secret_digest = digest(secret)
        # Two keys, two slots on a Cluster: the id first, so that a failure between
        # leaves an id with no record (listed as nothing, its secret never shown),
        # never a key that works but cannot be listed or revoked.
        self._redis.hset(KEY_IDS, key.id, secret_digest)
        self._redis.hset(
            key_record(secret_digest),
            mapping={
                "id": key.id,
                "company": scope.company,
                "campaign": scope.campaign,
                "label": label,
                "created_at": key.created_at,
            },
        )
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
        self._metrics_add = client.register_script(METRICS_SCRIPT)
        self._feed_read = client.register_script(FEED_READ_SCRIPT)
        self._page_read = client.register_script(PAGE_READ_SCRIPT)

    async def find_key(self, secret_digest: str) -> ApiKey | None:
        """The key whose secret has this digest (shared.apikeys.digest)."""
        return _api_key(await self._redis.hgetall(key_record(secret_digest)))

    async def ping(self) -> bool:
        """Every primary answers (one server: it does)."""
        for probe in await ready_probes(self._redis, WRITE_PROBE_KEY):
            if not await probe.ping():
                return False
        return True

    async def takes_writes(self) -> bool:
        """A write every primary accepts: a server that answers PING may still refuse
        every write (full under noeviction, a replica after a failover, a failing disk)."""
        for probe in await ready_probes(self._redis, WRITE_PROBE_KEY):
            if not await probe.write(WRITE_PROBE_MS):
                return False
        return True

    async def add_metrics(self, counts: Mapping[str, float]) -> None:
        await self._metrics_add(keys=[METRICS_KEY], args=_metrics_args(counts))

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
            retries, cursors = await pipe.execute()
        feeds = _feeds(cursors)
        async with self._redis.pipeline(transaction=False) as pipe:
            for feed in feeds:
                pipe.hget(feed_record_key(feed), ADDED)
            added = dict(zip(feeds, await pipe.execute(), strict=True))
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
        # At the same instant: what was trimmed, what follows the cursor, the clock
        # that stamps new entries.
        trimmed_text, raw, clock = await self._feed_read(
            keys=[feed_record_key(feed_name(scope)), stream],
            args=["-" if after is None else after.entry, count],
        )
        entries = [(str(entry), _fields(flat)) for entry, flat in raw]
        trimmed = None if trimmed_text is None else EventId.parse(str(trimmed_text))
        if after is not None:
            if trimmed is not None and after < trimmed:
                raise FeedTrimmed(str(trimmed))
            seconds, micros = int(clock[0]), int(clock[1])
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
            more = await self._redis.xrange(stream, f"({entries[-1][0]}", "+", count=count)
            entries = cast("list[tuple[str, dict[str, str]]]", more)
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
            scan, flat, length = await self._page_read(keys=[key], args=[read, listing.room])
            listing.read_batch(Batch(int(scan), _fields(flat), int(length)))
        return listing.page

    async def export(self, scope: Scope) -> AsyncIterator[str]:
        """As Store.export; the caller bounds each step's wait."""
        key, scan = ended_key(scope), 0
        while True:
            scan, pairs = await self._redis.hscan(key, scan, count=EXPORT_COUNT)
            yield csv_chunk(cast("dict[str, str]", pairs).items())
            if scan == 0:
                return
