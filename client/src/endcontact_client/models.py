"""What the client's methods return: frozen dataclasses read from the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


def _when(text: str) -> datetime:
    # The service writes ISO 8601 in UTC with a Z (2026-11-29T21:34:25.416Z); Python 3.11
    # reads the Z as UTC, so the datetime is aware.
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class ChangeResult:
    """A change's outcome: every number sent is in exactly one list, in E.164.

    `failure` holds what was still failing when the client's deadline (`retry_for`) came;
    sending those again later is safe (the write is idempotent)."""

    success: list[str]
    failure: list[str]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ChangeResult:
        return cls(list(body["success"]), list(body["failure"]))


@dataclass(frozen=True)
class Mark:
    """An ended number and when its contact was ended."""

    phone_number: str
    ended_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Mark:
        return cls(body["phoneNumber"], _when(body["endedAt"]))


@dataclass(frozen=True)
class CheckResult:
    """Which of the numbers checked are ended (with when) and which are not, in E.164."""

    ended: list[Mark]
    not_ended: list[str]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CheckResult:
        return cls([Mark.from_json(m) for m in body["ended"]], list(body["notEnded"]))


@dataclass(frozen=True)
class Event:
    """One change of a mark. `id` is also a feed cursor: `events(after=event.id)` goes on
    after it."""

    id: str
    type: str  # "ended" or "resumed"
    phone_number: str
    at: datetime
    key_id: str
    request_id: str
    reason: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Event:
        return cls(
            id=body["id"],
            type=body["type"],
            phone_number=body["phoneNumber"],
            at=_when(body["at"]),
            key_id=body["keyId"],
            request_id=body["requestId"],
            reason=body.get("reason"),
        )


@dataclass(frozen=True)
class History:
    """A number's events, oldest first (none for a number never changed)."""

    phone_number: str
    events: list[Event]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> History:
        return cls(body["phoneNumber"], [Event.from_json(e) for e in body["events"]])


@dataclass(frozen=True)
class EventPage:
    """One page of the change feed; `next` is the cursor to go on from."""

    events: list[Event]
    next: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> EventPage:
        return cls([Event.from_json(e) for e in body["events"]], body["next"])
