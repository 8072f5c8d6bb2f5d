"""The life of a mark: changes, the events they make, and how both are stored.

A change ends or resumes contact with one number for one campaign. Only a change of
state is an event: ending an ended number, or resuming one that is not ended, is a
success that records nothing.

Storage (shared.store writes it all in one script, so a mark and its event are never
apart, on disk either: the AOF holds a script's writes as one MULTI/EXEC, and Redis
drops a transaction cut short at the end of the file):

- The campaign's hash (`ec:ended:{<company>:<campaign>}`): number -> its history, newest
  event first, one line per event (`line`). The first character is the number's state:
  `e` ended, `r` resumed (not ended). The endedAt of an ended number is the time of its
  first line, so a read of the state never parses more than the first line. A value
  written before events existed is the endedAt alone (ISO 8601, starts with a digit):
  ended, with no known history.
- The campaign's stream (`ec:events:{<company>:<campaign>}`): the feed. One entry per
  request's changes in one worker batch: the type, key id, request id, reason once,
  and the numbers in order. The entry's stream id gives the time (its milliseconds) and
  each event's id: `<ms>-<seq>-<index in the entry>`.

Why a history line holds the key id, request id and reason itself rather than pointing
at the feed: the feed is trimmed after the retention, while an ended number keeps its
whole history. The feed's entries hold them once for a whole request.

Event ids order the feed and are its cursors: after=<id> continues after that event.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.apikeys import Scope
from shared.text import is_text

ENDED = "ended"
RESUMED = "resumed"
# The first character of a history line, and the feed entry's `t` field.
CODES = {ENDED: "e", RESUMED: "r"}
KINDS = {code: kind for kind, code in CODES.items()}
REASON_MAX = 200
# The most numbers one change request holds: the API's limit (api/body.py) and the
# importer's batch. The client library, which imports nothing of the service, keeps
# its own equal number (endcontact_client.retry.CHANGE_CHUNK; tests/unit/test_client_retry.py).
MAX_NUMBERS = 50
# A number as the service keeps and sends it: E.164, a + and up to 15 digits.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def is_reason(value: str) -> bool:
    """Whether a change may carry `value` as its reason: text (shared.text.is_text) of at
    most REASON_MAX characters. The API's 400 (api/body.py) and the importer's --reason
    (cli/importer/command.py) ask this; each says why in its own words."""
    return len(value) <= REASON_MAX and is_text(value)


_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})-([0-9]{1,6})")
_MAX_64 = 2**64


class BadEventId(ValueError):
    """Not an event id of this service; str() says why, fit for a client."""


@dataclass(frozen=True, order=True)
class EventId:
    """Where an event sits in its campaign's feed: the stream entry and the index in it."""

    ms: int
    seq: int
    index: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}-{self.index}"

    @property
    def entry(self) -> str:
        """The stream id of its entry."""
        return f"{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        match = _EVENT_ID.fullmatch(text)
        if match is None:
            raise BadEventId("not an event id of this service (like 1764450000000-0-7)")
        ms, seq, index = (int(part) for part in match.groups())
        if ms >= _MAX_64 or seq >= _MAX_64:
            raise BadEventId("not an event id of this service (like 1764450000000-0-7)")
        return cls(ms, seq, index)

    @classmethod
    def of_entry(cls, entry: str, index: int) -> EventId:
        ms, _, seq = entry.partition("-")
        return cls(int(ms), int(seq), index)


# Before every event: the position of a feed that has never been trimmed.
ORIGIN = EventId(0, 0, 0)


@dataclass(frozen=True)
class Context:
    """Who asked for a change: recorded with each of its events."""

    key_id: str
    request_id: str
    reason: str | None = None

    def stored_reason(self) -> str:
        """The reason as stored: a JSON string (one line, no spaces to fear), or ''."""
        return "" if self.reason is None else json.dumps(self.reason)


@dataclass(frozen=True)
class Change:
    """End or resume contact with `phone` for `scope`, as `context` asked."""

    scope: Scope
    phone: str
    kind: str  # ENDED or RESUMED
    context: Context
    # Its request's deadline (ms since the epoch; 0: none): past it, by the store's
    # clock, the change is not made (shared.mark_writes' WRITE_SCRIPT says why).
    deadline_ms: int = 0


@dataclass(frozen=True)
class Event:
    id: EventId
    kind: str
    phone: str
    key_id: str
    request_id: str
    reason: str | None

    @property
    def at(self) -> str:
        return iso(self.id.ms)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": str(self.id),
            "type": self.kind,
            "phoneNumber": self.phone,
            "at": self.at,
            "keyId": self.key_id,
            "requestId": self.request_id,
        }
        if self.reason is not None:
            body["reason"] = self.reason
        return body


# Events of one request in one batch share their millisecond, and a page or an export
# reads them together: formatting each time once is a third of an export's CPU.
@functools.lru_cache(maxsize=4096)
def iso(ms: int) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-11-28T22:34:14.123Z."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_reason(stored: str) -> str | None:
    """A stored reason (Context.stored_reason) back; ValueError if it is not one."""
    if not stored:
        return None
    value = json.loads(stored)
    if not isinstance(value, str):
        raise ValueError("a stored reason is a JSON string")
    return value


def _reason(stored: str) -> str | None:
    try:
        return parse_reason(stored)
    except ValueError:
        return None


def ended_at_of(value: object) -> str | None:
    """A number's endedAt from its stored history, or None when it is not ended."""
    text = str(value)
    code = text[:1]
    if code == "e":
        return iso(int(text[1 : text.index("-")]))
    if code == "r":
        return None
    return text  # written before events: the endedAt itself


def history(phone: str, value: object | None) -> list[Event]:
    """A number's events, oldest first, from its stored history (None: never changed)."""
    if value is None:
        return []
    events = []
    for line in str(value).split("\n"):
        kind = KINDS.get(line[:1])
        if kind is None:
            continue  # the endedAt of a mark made before events existed
        head, key_id, request_id, reason = line[1:].split(" ", 3)
        events.append(Event(EventId.parse(head), kind, phone, key_id, request_id, _reason(reason)))
    events.reverse()
    return events


def entry_events(entry: str, fields: dict[str, str]) -> list[Event]:
    """The events of one feed entry, in order."""
    kind = KINDS[fields["t"]]
    reason = _reason(fields.get("r", ""))
    return [
        Event(EventId.of_entry(entry, index), kind, phone, fields["k"], fields["q"], reason)
        for index, phone in enumerate(fields["n"].split(","))
    ]


class FeedTrimmed(Exception):
    """The cursor is older than the oldest event kept: events after it are gone."""


class FeedAhead(Exception):
    """The cursor is past every event the feed gave and could give now: a client
    tailing from it would skip every event to come."""


def ahead_of_feed(after: EventId, later: bool, trimmed: EventId | None, now_ms: int) -> bool:
    """Whether `after` is past every id the feed gave out and could give out now: no
    entry at or after its entry (`later`: the read found one), past the last event
    trimmed, and later than the store's clock (`now_ms`). Not the clock alone: an entry
    is given the later of the clock and the last id, so a store whose clock stepped
    back gives out ids ahead of it. Not the entries alone either: the clients of a store
    restored from a backup hold cursors past its entries, which events to come follow."""
    if later or (trimmed is not None and after <= trimmed):
        return False
    return after.ms > now_ms


@dataclass
class FeedPage:
    events: list[Event]
    # After the last event returned; with none, the cursor asked for (or where the
    # kept feed starts), so that a client polls with it.
    next: EventId
