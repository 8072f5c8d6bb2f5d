"""The pure parts of a mark's life: event ids, stored histories, feed entries, task args."""

from __future__ import annotations

import pytest

from shared.apikeys import Scope
from shared.events import (
    ENDED,
    RESUMED,
    BadEventId,
    Change,
    Context,
    EventId,
    ahead_of_feed,
    ended_at_of,
    entry_events,
    history,
    iso,
    parse_reason,
)
from shared.tasks import RESUME_TASK_NAME, TASK_NAME, change_of, task_args

SCOPE = Scope("acme", "spring")
PHONE = "+15095551234"
LEGACY = "2026-11-01T08:00:00.000Z"  # a mark written before events: its endedAt alone
REASONS = [
    "lead wrote STOP",
    "two  spaces, then\nnewline\r\nand\ttab",
    "quotes \" and ' and \\ backslash",
    "unicode: Grüße, 東京, 🙂, \u2028 line separator",
    "",
    " ",
    "x" * 200,
]


def line(code: str, event: str, key_id: str, request_id: str, reason: str | None) -> str:
    """A history line as the store's script writes it."""
    stored = Context(key_id, request_id, reason).stored_reason()
    return f"{code}{event} {key_id} {request_id} {stored}"


@pytest.mark.parametrize(
    "text", ["0-0-0", "1764450000000-0-7", "1764450000000-12-999999", f"{2**64 - 1}-{2**64 - 1}-0"]
)
def test_an_event_id_comes_back_as_it_went(text: str) -> None:
    assert str(EventId.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1764450000000-0",
        "1764450000000-0-7-1",
        "1764450000000",
        "a-0-0",
        "-1-0-0",
        "+1-0-0",
        " 1-0-0",
        "1-0-0\n",
        "1-0-1234567",
        "1_000-0-0",
        "\u0661-0-0",  # an Arabic-Indic digit one
        f"{2**64}-0-0",
        f"0-{2**64}-0",
        "0" * 21 + "-0-0",
        "1.5-0-0",
    ],
)
def test_anything_else_is_no_event_id(text: str) -> None:
    with pytest.raises(BadEventId):
        EventId.parse(text)


def test_event_ids_order_by_time_then_entry_then_index() -> None:
    texts = ["2-0-0", "10-0-0", "1-5-0", "1-0-3", "1-0-12", "1-0-0", "10-0-2", "1-1-0"]
    ordered = sorted(EventId.parse(text) for text in texts)
    # Numerically, not as text: "10" after "2", "12" after "3".
    assert [str(i) for i in ordered] == [
        "1-0-0",
        "1-0-3",
        "1-0-12",
        "1-1-0",
        "1-5-0",
        "2-0-0",
        "10-0-0",
        "10-0-2",
    ]
    assert EventId.parse("7-3-2").entry == "7-3"
    assert EventId.of_entry("7-3", 2) == EventId(7, 3, 2)


def test_a_cursor_is_ahead_only_past_every_entry_the_trimmed_and_the_clock() -> None:
    now = 1_795_988_065_000
    future = EventId(now + 1, 0, 0)
    assert ahead_of_feed(future, later=False, trimmed=None, now_ms=now)
    assert ahead_of_feed(EventId(2**63, 0, 0), later=False, trimmed=EventId(5, 0, 3), now_ms=now)
    # The present, or the past: ids a store restored from a backup gives out again.
    assert not ahead_of_feed(EventId(now, 9, 0), later=False, trimmed=None, now_ms=now)
    assert not ahead_of_feed(EventId(now - 1, 0, 0), later=False, trimmed=None, now_ms=now)
    # A store whose clock stepped back gives out ids past it: an entry at or after the
    # cursor, or the last trimmed event, says the feed reached it.
    assert not ahead_of_feed(future, later=True, trimmed=None, now_ms=now)
    assert not ahead_of_feed(future, later=False, trimmed=future, now_ms=now)
    assert not ahead_of_feed(future, later=False, trimmed=EventId(now + 1, 0, 7), now_ms=now)


def test_iso_has_milliseconds_in_utc() -> None:
    assert iso(1764450000123) == "2025-11-29T21:00:00.123Z"
    assert iso(5) == "1970-01-01T00:00:00.005Z"


@pytest.mark.parametrize("reason", [*REASONS, None])
def test_a_stored_reason_comes_back_as_it_went(reason: str | None) -> None:
    stored = Context("key_x", "req", reason).stored_reason()
    # One line of ASCII: nothing in it can split a history line or a feed entry.
    assert stored.isascii()
    assert "\n" not in stored
    assert "\r" not in stored
    assert parse_reason(stored) == reason


@pytest.mark.parametrize("stored", ["5", "null", '["a"]', "{}", "not json", '"unterminated'])
def test_a_stored_reason_is_a_json_string_or_nothing(stored: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_reason(stored)


def test_no_value_is_no_history() -> None:
    assert history(PHONE, None) == []
    assert history(PHONE, LEGACY) == []


@pytest.mark.parametrize("reason", REASONS)
def test_a_history_is_oldest_first_with_each_line_as_written(reason: str) -> None:
    stored = "\n".join(
        [
            line("e", "1764450000300-0-0", "key_b", "req-3", None),
            line("r", "1764450000200-4-17", "key_a", "req-2", reason),
            line("e", "1764450000100-0-2", "", "", None),  # from a task before events
        ]
    )
    events = history(PHONE, stored)
    assert [(str(e.id), e.kind, e.key_id, e.request_id, e.reason) for e in events] == [
        ("1764450000100-0-2", ENDED, "", "", None),
        ("1764450000200-4-17", RESUMED, "key_a", "req-2", reason),
        ("1764450000300-0-0", ENDED, "key_b", "req-3", None),
    ]
    assert all(event.phone == PHONE for event in events)
    resumed = events[1].to_json()
    assert resumed == {
        "id": "1764450000200-4-17",
        "type": "resumed",
        "phoneNumber": PHONE,
        "at": "2025-11-29T21:00:00.200Z",
        "keyId": "key_a",
        "requestId": "req-2",
        "reason": reason,
    }
    # No reason given: no "reason" key at all (not null, not "").
    assert set(events[2].to_json()) == {"id", "type", "phoneNumber", "at", "keyId", "requestId"}


def test_a_legacy_mark_keeps_its_place_under_newer_events() -> None:
    """Ended before events existed, then resumed and ended again: the endedAt-only line
    stays last in the value and is no event."""
    stored = "\n".join(
        [
            line("e", "1764450000300-0-0", "key_b", "req-3", "again"),
            line("r", "1764450000200-0-0", "key_a", "req-2", None),
            LEGACY,
        ]
    )
    assert [e.kind for e in history(PHONE, stored)] == [RESUMED, ENDED]
    assert ended_at_of(stored) == "2025-11-29T21:00:00.300Z"
    assert ended_at_of("\n".join(stored.split("\n")[1:])) is None


def test_ended_at_is_read_from_the_first_line_alone() -> None:
    assert ended_at_of(line("e", "1764450000123-9-4", "k", "q", "why")) == (
        "2025-11-29T21:00:00.123Z"
    )
    assert ended_at_of(line("r", "1764450000123-9-4", "k", "q", None)) is None
    assert ended_at_of(LEGACY) == LEGACY
    # Only the first line counts: a resumed number with an older end is not ended.
    older = line("e", "1764450000000-0-0", "k", "q", None)
    assert ended_at_of(line("r", "1764450000123-0-0", "k", "q", None) + "\n" + older) is None


@pytest.mark.parametrize("reason", [*REASONS, None])
def test_a_feed_entry_is_its_numbers_in_order(reason: str | None) -> None:
    fields = {
        "t": "r",
        "k": "key_a",
        "q": "req-1",
        "r": Context("key_a", "req-1", reason).stored_reason(),
        "n": "+15095551234,+442079460958,+15095550000",
    }
    events = entry_events("1764450000500-3", fields)
    assert [str(e.id) for e in events] == [
        "1764450000500-3-0",
        "1764450000500-3-1",
        "1764450000500-3-2",
    ]
    assert [e.phone for e in events] == ["+15095551234", "+442079460958", "+15095550000"]
    assert {(e.kind, e.key_id, e.request_id, e.reason) for e in events} == {
        (RESUMED, "key_a", "req-1", reason)
    }
    assert events[0].at == "2025-11-29T21:00:00.500Z"


@pytest.mark.parametrize("reason", [*REASONS, None])
@pytest.mark.parametrize(("name", "kind"), [(TASK_NAME, ENDED), (RESUME_TASK_NAME, RESUMED)])
def test_a_change_comes_back_from_its_task_args(name: str, kind: str, reason: str | None) -> None:
    context = Context("key_abc", "f00d-1", reason)
    args = task_args(SCOPE, PHONE, context)
    assert all(isinstance(arg, str) for arg in args)
    assert change_of(name, args) == Change(SCOPE, PHONE, kind, context)
    assert change_of(name, tuple(args)) == Change(SCOPE, PHONE, kind, context)


def test_an_end_task_from_before_events_has_no_context() -> None:
    change = change_of(TASK_NAME, ["acme", "spring", PHONE])
    assert change == Change(SCOPE, PHONE, ENDED, Context("", ""))


GOOD = ["acme", "spring", PHONE, "key_abc", "req-1", '"why"']


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("endcontact.other", GOOD),
        ("", GOOD),
        # A message's name may be anything, even what cannot be a dictionary key.
        (["endcontact", "end_contact"], GOOD),
        (None, GOOD),
        (TASK_NAME, "acme,spring"),
        (TASK_NAME, {"company": "acme"}),
        (TASK_NAME, None),
        # A resume never had three arguments.
        (RESUME_TASK_NAME, ["acme", "spring", PHONE]),
        # Fewer than three: nothing to read a number from.
        (TASK_NAME, []),
        (TASK_NAME, GOOD[:2]),
        (TASK_NAME, GOOD[:4]),
        (TASK_NAME, GOOD[:5]),
        (TASK_NAME, [*GOOD, ""]),
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req-1", None]),
        (TASK_NAME, ["acme", "spring", 15095551234, "key_abc", "req-1", ""]),
        (TASK_NAME, ["acme", "spring", "5095551234", "key_abc", "req-1", ""]),
        (TASK_NAME, ["acme", "spring", "+05095551234", "key_abc", "req-1", ""]),
        (TASK_NAME, ["acme", "spring", "+1509555123456789", "key_abc", "req-1", ""]),
        # Key and request ids sit between spaces on a history line.
        (TASK_NAME, ["acme", "spring", PHONE, "key abc", "req-1", ""]),
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req 1", ""]),
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req\n1", ""]),
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "réq", ""]),
        # The reason is a JSON string, or empty for none.
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req-1", "why"]),
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req-1", "5"]),
        (TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req-1", "null"]),
        (RESUME_TASK_NAME, ["acme", "spring", PHONE, "key_abc", "req-1", '["a"]']),
    ],
)
def test_arguments_that_are_not_a_change_are_refused(name: object, args: object) -> None:
    assert change_of(name, args) is None
