"""The marks' writes: each campaign's changes of a batch applied by its write script
(a mark with its history and its feed event, shared.events), on disk through one
WAITAOF per node that took them; and the feeds trimmed of what is past the retention."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import lua
from shared.apikeys import Scope
from shared.clock import SERVER_TIME
from shared.connection import failure
from shared.events import CODES, Change
from shared.keyspace import (
    EVENTS_PATTERN,
    SWEPT,
    ended_key,
    events_key,
    feed_name,
    feed_of_events_key,
    feed_record_key,
    scope_of_feed,
)
from shared.nodes import RELOCATED, UNREACHED, by_node, primaries, reread_map

log = logging.getLogger(__name__)

# Entries past the retention one write trims (a write adds one per request at most, so
# the feed shrinks to its retention however fast it is written), and one sweep.
TRIM_PER_WRITE = 16
TRIM_PER_SWEEP = 1000

# Applies one campaign's changes, those past their request's deadline not.
WRITE_SCRIPT = SERVER_TIME + lua.load("shared", "store_write")


def _script_keys(scope: Scope) -> list[str]:
    """WRITE_SCRIPT's keys for one campaign, which share its hash tag."""
    return [ended_key(scope), events_key(scope), feed_record_key(feed_name(scope))]


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


def told(exc: BaseException) -> str:
    """A failed write as a log line says it: NotDurable's text says what fell short,
    never what was sent; any other as shared.connection.failure says it."""
    return f"NotDurable: {exc}" if isinstance(exc, NotDurable) else failure(exc)


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
        self._aof_timeout_ms = DURABLE_TIMEOUT_MS // 2 if replicas else DURABLE_TIMEOUT_MS
        self._retention_ms = max(1, round(retention_days * 86_400_000))
        # Called by the sweep (RedisCluster routes it by its first key, and loads it
        # again on a node that lost it); a batch's writes send EVALSHA themselves.
        self._write_script = client.register_script(WRITE_SCRIPT)
        self._sha = self._write_script.sha

    def apply_changes(self, changes: Sequence[Change]) -> list[bool | None]:
        """Apply every change, each mark with its event, on disk: a script per campaign
        (shared.events) and one WAITAOF, in one round trip per node that holds some of
        the campaigns (one server: one). Per change: True if it changed the number's
        state, False if the number was already so, None if it was not applied: Redis
        refused its campaign's script (e.g. the campaign's key is not a hash), its node
        failed or did not vouch for it on disk (NotDurable), or its deadline
        (Change.deadline_ms) had passed by the store's clock.

        Raises (redis.RedisError, OSError, NotDurable) when no change can be vouched
        for. Errors are returned, not raised: redis-py's message for a failed
        pipeline command quotes the command, numbers included.
        """
        if not changes:
            return []
        plans = _plans(changes)
        outcome: dict[int, bool | None] = {}
        failures: list[BaseException] = []
        scopes = list(plans)
        # A slot that moved, or a node that failed over, since the map was read: read
        # it again, and send the campaigns a node said are not its own once more (the
        # script that said so made no change, and one past its deadline makes none).
        for attempt in range(2):
            retry: list[Scope] = []
            reread = False
            # A campaign's node is its marks' (its keys share their tag).
            for node_client, group in by_node(self._redis, scopes, ended_key).values():
                try:
                    replies = self._on_node(node_client, [(scope, plans[scope]) for scope in group])
                except (redis.RedisError, OSError, NotDurable) as exc:
                    failures.append(exc)
                    replies = [exc] * len(group)
                for scope, reply in zip(group, replies, strict=True):
                    _read_flags(plans[scope], reply, outcome)
                    # A node that did not answer is read again in the map but not asked
                    # again: a stopped one would hold the batch for another socket timeout.
                    reread |= isinstance(reply, UNREACHED)
                    if isinstance(reply, RELOCATED):
                        retry.append(scope)
            if reread:
                reread_map(self._redis)
            scopes = retry
            if attempt or not scopes:
                break
        if failures and all(flag is None for flag in outcome.values()):
            raise failures[-1]
        for failed in failures:
            # One node of a Cluster: its campaigns' numbers fail, the others' stand.
            log.warning("a store node did not take its part of a batch: %s", told(failed))
        return [outcome[position] for position in range(len(changes))]

    def _on_node(self, client: redis.Redis, plans: list[tuple[Scope, _Plan]]) -> list[Any]:
        """One node's part: its campaigns' scripts, then WAITAOF on the same connection
        (it waits for this connection's writes). Returns a reply per campaign; raises
        NotDurable if the node did not vouch for them on disk."""
        for loaded in (False, True):
            with client.pipeline(transaction=False) as pipe:
                for scope, plan in plans:
                    args = [self._retention_ms, TRIM_PER_WRITE, *plan.args]
                    pipe.evalsha(self._sha, 3, *_script_keys(scope), *args)
                waitaof = self._waitaof
                if waitaof and self._replicas:
                    # A replica answers the primary's first GETACK before its own fsync,
                    # and says it has fsynced only at its next once-a-second ACK: WAITAOF
                    # alone took 1,004 ms a batch (valkey 8.1, appendfsync always). Once
                    # WAIT has seen them received, WAITAOF's own GETACK finds them on
                    # disk: 8 ms. Each bounded, together as long as WAITAOF alone was.
                    pipe.execute_command(  # type: ignore[no-untyped-call]
                        "WAIT", self._replicas, DURABLE_TIMEOUT_MS // 2
                    )
                if waitaof:
                    pipe.execute_command(  # type: ignore[no-untyped-call]
                        "WAITAOF", 1, self._replicas, self._aof_timeout_ms
                    )
                replies = pipe.execute(raise_on_error=False)
            if waitaof:
                self._check_waitaof(replies.pop())
                if self._replicas:
                    replies.pop()  # WAIT's: WAITAOF's says what counts
            if loaded or not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                return replies
            # A node that never ran it, or a replica promoted since (scripts are not
            # replicated): every EVALSHA of the pipeline failed, none wrote. Load it there.
            client.script_load(WRITE_SCRIPT)
        raise AssertionError("unreachable")

    def trim_feeds(self, every_ms: int = 0) -> int:
        """Trim every campaign's feed of what is past the retention (writes trim as they
        go; this reaches campaigns nobody writes to). Returns the feeds visited.

        With `every_ms`, only if no process has swept in that long: every worker asks
        on its own clock, and one sweep a period is enough for all of them."""
        if every_ms and not self._redis.set(SWEPT, "1", nx=True, px=every_ms):
            return 0
        visited = 0
        for node in primaries(self._redis):
            for key in node.scan_iter(match=EVENTS_PATTERN, count=1000, _type="stream"):
                scope = scope_of_feed(feed_of_events_key(str(key)))
                args: list[str | int] = [self._retention_ms, TRIM_PER_SWEEP]
                self._write_script(keys=_script_keys(scope), args=args)
                visited += 1
        return visited

    def _check_waitaof(self, reply: Any) -> None:
        """Raise NotDurable unless WAITAOF's reply (or error) says the writes are on disk;
        ReadOnlyError if the node is a replica now (a failover the map has yet to show:
        the campaigns are sent again where they are)."""
        if isinstance(reply, redis.ResponseError) and "replica" in str(reply).lower():
            raise redis.ReadOnlyError(str(reply)) from None
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


def _read_flags(plan: _Plan, reply: Any, outcome: dict[int, bool | None]) -> None:
    """A campaign's script reply as the outcome of each of its changes."""
    flags = None if isinstance(reply, BaseException) else list(reply)
    for at, position in enumerate(plan.positions):
        flag = None if flags is None else int(flags[at])
        # -1: past its deadline, not applied.
        outcome[position] = None if flag is None or flag < 0 else bool(flag)
