"""The follow loop: first attempts. It tends the leases, reads the feeds of the webhooks
it follows, starts runners where events wait, and writes what finished."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from shared import deliveries
from shared.connection import failure
from shared.deliveries import DUE, PENDING
from shared.events import entry_events
from shared.keyspace import ADDED, feed_record_key
from shared.webhooks import CURSORS, LOG_LENGTH, Cursor, from_record, log_key, webhook_key
from worker.deliveries import BACKOFF, STOP_GRACE, log
from worker.deliveries.attempt import Attempts
from worker.deliveries.followed import Entry, Follow, Followed, Todo
from worker.deliveries.leases import TEND_EVERY, Leases
from worker.deliveries.runners import Runners
from worker.deliveries.scripts import COMMIT_SCRIPT, hooks_pipeline, prefixes
from worker.yielding import Yielding

# Feed entries (of up to 100 events) read at once, and events read but not yet
# attempted past which a webhook's feed is not read further.
READ_ENTRIES = 100
AHEAD = 2_000
# While idle, new events are looked for this often: how late a first attempt may
# start after its change. One HMGET of the feeds' counts, whatever their number.
POLL = 0.02
# The attempt log, the retries and the cursor are written at most this often.
COMMIT_EVERY = 0.05


class Follower:
    """The follow loop (`run`), on a client of its own, `client`."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        attempts: Attempts,
        stop: threading.Event,
        yielding: Yielding | None,
    ) -> None:
        self._client = client
        self._name = name
        self._stop = stop
        # Set when a runner ends.
        self._woken = threading.Event()
        self._followed = Followed()
        self._leases = Leases(client, name, self._followed, attempts.store_clock)
        self._runners = Runners(self._followed, attempts, stop, self._woken, yielding)
        self._commit_script = client.register_script(COMMIT_SCRIPT)

    def wake(self) -> None:
        self._woken.set()

    def run(self) -> None:
        tended = committed = -TEND_EVERY
        while not self._stop.is_set():
            self._woken.clear()
            try:
                if time.monotonic() - tended >= TEND_EVERY:
                    tended = time.monotonic()
                    self._leases.tend()
                self._read()
                self._runners.start()
                if time.monotonic() - committed >= COMMIT_EVERY:
                    committed = time.monotonic()
                    self._commit()
            except (redis.RedisError, OSError) as exc:
                log.warning("webhook deliveries: store failed: %s", failure(exc))
                self._stop.wait(BACKOFF)
                continue
            self._woken.wait(POLL)
        self._leave()

    def _read(self) -> None:
        """Read the feed after what was read, for each webhook with room for more
        whose feed grew: one look at the feeds' ADDED counts (one round trip a node) tells
        which did, however many webhooks this dispatcher follows."""
        followed = self._followed
        with followed.lock:
            looking = [
                follow
                for follow in followed.follows.values()
                if not follow.releasing and follow.disabled_at is None and len(follow.todo) < AHEAD
            ]
        if not looking:
            return
        with self._client.pipeline(transaction=False) as pipe:
            for follow in looking:
                pipe.hget(feed_record_key(follow.cursor.feed), ADDED)
            counts = pipe.execute()
        reading = [
            (follow, int(count or 0))
            for follow, count in zip(looking, counts, strict=True)
            if follow.more or int(count or 0) != follow.seen
        ]
        if not reading:
            return
        # The webhooks are read again with their feeds, so that none deleted, disabled
        # or rotated since the last look is sent to, or signed, as it was.
        with self._client.pipeline(transaction=False) as pipe:
            for follow, _ in reading:
                pipe.xrange(follow.stream, f"({follow.read}", "+", count=READ_ENTRIES)
                pipe.hgetall(webhook_key(follow.webhook.id))
            replies = pipe.execute()
        with followed.lock:
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
                    followed.drop(follow)
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

    def _commit(self) -> None:
        """Write what finished: per webhook, its log entries, its retries, and its
        cursor past the entries whose events all finished; then let go of those
        released once their runners are done."""
        followed = self._followed
        writes: list[tuple[Follow, list[str], list[str | int], tuple[str, int] | None]] = []
        with followed.lock:
            for follow in followed.follows.values():
                moved = follow.passable()
                if follow.logs or follow.retries or moved or follow.disabled_at:
                    writes.append((follow, follow.logs, follow.retries, moved))
                    follow.logs, follow.retries = [], []
            leaving = [
                follow
                for follow in followed.follows.values()
                if follow.releasing and not follow.runners
            ]
        if not writes and not leaving:
            return
        try:
            with hooks_pipeline(self._client) as pipe:
                for follow, logged, retries, moved in writes:
                    self._commit_one(pipe, follow, logged, retries, moved)
                replies = pipe.execute()
        except BaseException:
            with followed.lock:  # written at the next commit
                for follow, logged, retries, _ in writes:
                    follow.logs[:0] = logged
                    follow.retries[:0] = retries
            raise
        with followed.lock:
            for (follow, _, _, moved), kept in zip(writes, replies, strict=True):
                if follow.gone:
                    continue
                if not kept or follow.disabled_at is not None:
                    followed.drop(follow)
                elif moved is not None:
                    follow.cursor = Cursor(moved[0], moved[1], follow.cursor.feed)
                    while follow.entries and follow.entries[0].id != moved[0]:
                        follow.entries.popleft()
                    follow.entries.popleft()
            released = []
            for follow in leaving:
                if not follow.gone and not follow.logs and not follow.passable():
                    followed.drop(follow)
                    released.append(follow.webhook.id)
        for hook in released:
            self._leases.release(hook)

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
        args: list[str | int] = [*prefixes(), hook, self._name, cursor]
        args += [follow.disabled_at or "", LOG_LENGTH, len(logged), *logged, *retries]
        self._commit_script(keys=keys, args=args, client=pipe)

    def _leave(self) -> None:
        """On the way out: no new attempts; write what finishes within STOP_GRACE,
        then let go of every lease (Leases.leave)."""
        self._runners.shutdown()
        deadline = time.monotonic() + STOP_GRACE
        with contextlib.suppress(redis.RedisError, OSError):
            while time.monotonic() < deadline:
                with self._followed.lock:
                    busy = any(follow.runners for follow in self._followed.follows.values())
                self._commit()
                if not busy:
                    break
                self._woken.wait(0.05)
                self._woken.clear()
            self._leases.leave()
