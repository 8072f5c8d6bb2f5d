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

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import redis

from shared.apikeys import ApiKey, Scope, check_name, digest, generate_id, generate_secret
from shared.connection import sync_client
from shared.marks import EXPORT_COUNT, Batch, Cursor, Listing, Page, csv_chunk, ended_at_of
from shared.metrics import METRICS_KEY

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.client
    import redis.client

    from shared.settings import Settings

KEY_IDS = "ec:key-ids"


def key_record(secret_digest: str) -> str:
    return f"ec:key:{secret_digest}"


def ended_key(scope: Scope) -> str:
    return f"ec:ended:{quote(scope.company, safe='')}:{quote(scope.campaign, safe='')}"


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
    return None if value is None else ended_at_of(value)


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
    def __init__(self, client: redis.Redis, replicas: int = 0) -> None:
        # The client must decode responses: everything stored here is text.
        self._redis = client
        # How many replicas must have a mark on disk, besides the primary.
        self._replicas = replicas
        self._waitaof = True

    @classmethod
    def connect(cls, settings: Settings) -> Store:
        """A Store on its own client, with bounded waits: a Redis that stops answering
        fails the call instead of hanging the worker or command that made it."""
        client = sync_client(
            settings, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(client, settings.durable_replicas)

    def close(self) -> None:
        self._redis.close()

    def end_contact(self, scope: Scope, phone: str) -> bool:
        """Mark `phone` ended for `scope`, on disk; True if this was the first time.

        HSETNX makes this idempotent: a repeat keeps the first time. A single command,
        not a pipeline: redis-py quotes a failed pipeline's commands, number included,
        in its error message, and that message ends up in the worker's log.
        """
        first = bool(self._redis.hsetnx(ended_key(scope), phone, utc_now()))
        self._confirm_on_disk()
        return first

    def end_contact_many(self, marks: Sequence[tuple[Scope, str]]) -> list[bool | None]:
        """Mark every (scope, phone), on disk, in one round trip: all the HSETNX and
        one WAITAOF. Per mark: True if ended for the first time, False if it already
        was, None if Redis refused that one (e.g. its campaign's key is not a hash).

        Raises (redis.RedisError, OSError, NotDurable) when no mark can be vouched
        for. Errors are returned, not raised: redis-py's message for a failed
        pipeline command quotes the command, number included.
        """
        if not marks:
            return []
        now = utc_now()
        keys: dict[Scope, str] = {}
        with self._redis.pipeline(transaction=False) as pipe:
            for scope, phone in marks:
                key = keys.get(scope)
                if key is None:
                    key = keys[scope] = ended_key(scope)
                pipe.hsetnx(key, phone, now)
            waitaof = self._waitaof
            if waitaof:
                # On the same connection, after the writes: it waits for them.
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "WAITAOF", 1, self._replicas, DURABLE_TIMEOUT_MS
                )
            replies = pipe.execute(raise_on_error=False)
        if waitaof:
            self._check_waitaof(replies.pop())
        return [None if isinstance(reply, Exception) else bool(reply) for reply in replies]

    def _confirm_on_disk(self) -> None:
        """WAITAOF: return once this connection's writes are fsynced to the AOF, on the
        primary and on as many replicas as asked for.

        A success told to a client must survive Redis being killed right after. Redis
        and Valkey before 7.2 lack WAITAOF; there durability rests on the server's own
        `appendfsync always`, which is what we configure (README, "Durability").
        """
        if not self._waitaof:
            return
        try:
            reply = self._redis.execute_command(  # type: ignore[no-untyped-call]
                "WAITAOF", 1, self._replicas, DURABLE_TIMEOUT_MS
            )
        except redis.ResponseError as exc:
            reply = exc
        self._check_waitaof(reply)

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
        keys = [key for key in map(_api_key, records) if key is not None]
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


class AsyncStore:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client

    async def find_key(self, secret: str) -> ApiKey | None:
        return _api_key(await self._redis.hgetall(key_record(digest(secret))))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def add_metrics(self, counts: Mapping[str, float]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            _queue_metrics(pipe, counts)
            await pipe.execute()

    async def metrics(self) -> dict[str, str]:
        """The summed metrics."""
        stored = await self._redis.hgetall(METRICS_KEY)
        return {str(field): str(value) for field, value in stored.items()}

    async def ended_at(self, scope: Scope, phone: str) -> str | None:
        return _text(await self._redis.hget(ended_key(scope), phone))

    async def ended_at_many(self, scope: Scope, phones: Sequence[str]) -> list[str | None]:
        """Each number's endedAt, or None where it is not ended, in one HMGET."""
        values = await self._redis.hmget(ended_key(scope), phones)
        return [None if value is None else ended_at_of(value) for value in values]

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
