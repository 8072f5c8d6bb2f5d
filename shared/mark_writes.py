"""The marks' writes: each campaign's changes of a batch applied by its write script
(a mark with its history and its feed event, shared.events), all of them on disk
through one WAITAOF; and the feeds trimmed of what is past the retention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import lua
from shared.apikeys import Scope
from shared.clock import SERVER_TIME
from shared.events import CODES, Change
from shared.keyspace import FEEDS, SWEPT, TRIMMED, ended_key, events_key, feed_name, scope_of_feed
from shared.webhooks import ADDED, campaign_webhooks_key

# Entries past the retention one write trims (a write adds one per request at most, so
# the feed shrinks to its retention however fast it is written), and one sweep.
TRIM_PER_WRITE = 16
TRIM_PER_SWEEP = 1000

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


class NotDurable(RuntimeError):
    """The mark was written but Redis did not confirm it is on disk."""


# How long a write may wait for its fsync. With appendfsync always it is already on
# disk when WAITAOF asks; with everysec the wait is up to a second.
DURABLE_TIMEOUT_MS = 2000


class MarkWrites:
    """The Store's writes (shared.store), on its client."""

    def __init__(self, client: redis.Redis, replicas: int, retention_days: float) -> None:
        self._redis = client
        # How many replicas must have a mark on disk, besides the primary.
        self._replicas = replicas
        self._waitaof = True
        self._retention_ms = max(1, round(retention_days * 86_400_000))
        self._write_script = client.register_script(WRITE_SCRIPT)

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
