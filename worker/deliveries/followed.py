"""The webhooks a dispatcher follows: what each read of its campaign's feed, what it
has to send, and what finished; shared by the follow loop, the leases and the runners."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from shared.webhooks import Cursor, Webhook, feed_stream_key


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


class Followed:
    """The follows by webhook id, and everything in them: read and changed only with
    `lock` held (the follow loop, the leases and the runners share them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.follows: dict[str, Follow] = {}

    def drop(self, follow: Follow) -> None:
        """Stop following (the lock held): its runners end after their attempt."""
        follow.gone = True
        follow.todo.clear()
        del self.follows[follow.webhook.id]
