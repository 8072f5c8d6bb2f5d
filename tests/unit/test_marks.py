"""The listing's cursor: what it hands out it takes back; anything else is refused."""

from __future__ import annotations

import base64
import json

import pytest

from shared.marks import MAX_CARRIED, BadCursor, Batch, Cursor, Listing, csv_chunk


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(),
        Cursor(whole=True, floor="+15095551234"),
        Cursor(scan=2**64 - 1),
        Cursor(scan=17, carried=("+15095551234", "+442079460958")),
        Cursor(scan=0, carried=("+15095551234",)),
        Cursor(scan=2**64 - 1, carried=("+999999999999999",) * MAX_CARRIED),
    ],
)
def test_a_cursor_comes_back_as_it_went(cursor: Cursor) -> None:
    text = cursor.encode()
    # Safe in a query string as it is.
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert Cursor.decode(text) == cursor


def forged(state: object) -> str:
    return "1" + base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2" + Cursor().encode()[1:],
        "1!!!",
        "1" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        forged({"whole": 1}),
        forged([1, "0", "", []] * 2),
        forged([2, "0", "", []]),
        forged([True, "0", "", []]),
        forged([0, 5, "", []]),
        forged([0, "-5", "", []]),
        forged([0, "٣", "", []]),
        forged([0, str(2**64), "", []]),
        forged([1, "0", "5095551234", []]),
        forged([0, "0", "+15095551234", []]),  # a floor belongs to whole snapshots only
        forged([1, "3", "+15095551234", []]),
        forged([1, "0", "", ["+15095551234"]]),
        forged([0, "3", "", ["not a number"]]),
        forged([0, "3", "", ["+15095551234"] * (MAX_CARRIED + 1)]),
        "1" + "A" * 5000,
        "1" + "[" * 5000,
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(BadCursor):
        Cursor.decode(text)


def test_csv_rows_end_in_crlf_and_quote_what_needs_it() -> None:
    assert csv_chunk([("+15095551234", "2026-11-29T12:00:00.000Z")]) == (
        "+15095551234,2026-11-29T12:00:00.000Z\r\n"
    )
    assert csv_chunk([("a,b", 'c"d')]) == '"a,b","c""d"\r\n'
    assert csv_chunk([]) == ""


def test_carried_numbers_are_all_read_before_the_scan_goes_on() -> None:
    """More carried than a page holds, some of them gone since: the page reads the
    rest of them before it scans on, and whatever is still unread stays carried."""
    carried = tuple(f"+1509555{n:04d}" for n in range(10))
    listing = Listing(Cursor(scan=5, carried=carried), limit=7)
    batches = iter([Batch(9, {f"+1509666{n:04d}": "t" for n in range(12)}, 5000)])
    while not listing.done:
        read = listing.next_read()
        if isinstance(read, tuple):
            # The first three were resumed since the last page.
            listing.read_carried([None if p in carried[:3] else "t" for p in read])
        else:
            assert read == 5
            listing.read_batch(next(batches))
    returned = [phone for phone, _ in listing.page.items]
    assert len(returned) == 7
    assert listing.page.next is not None
    # Nothing of what was carried is lost: returned now, or carried again.
    assert set(carried[3:]) <= set(returned) | set(listing.page.next.carried)


def test_a_batch_is_refused_while_carried_numbers_are_unread() -> None:
    listing = Listing(Cursor(scan=5, carried=("+15095551234",)), limit=7)
    with pytest.raises(RuntimeError):
        listing.read_batch(Batch(9, {"+15096661234": "t"}, 5000))


# Stored values (shared.events): ended with its history, resumed (kept for its
# history), and a mark from before events (its endedAt alone).
ENDED_VALUE = 'e1764450000123-0-0 key_a req-2 \nr1764450000100-0-0 key_a req-1 "why"'
RESUMED_VALUE = 'r1764450000200-0-1 key_a req-3 "the lead wrote"\n' + ENDED_VALUE
LEGACY_VALUE = "2026-11-01T08:00:00.000Z"
VALUES = {
    "+15095550001": ENDED_VALUE,
    "+15095550002": RESUMED_VALUE,
    "+15095550003": LEGACY_VALUE,
    "+15095550004": "r1764450000300-0-0 key_b req-4 ",
}
SHOWN = [
    ("+15095550001", "2025-11-29T21:00:00.123Z"),
    ("+15095550003", LEGACY_VALUE),
]


def test_csv_rows_leave_resumed_numbers_out() -> None:
    assert csv_chunk(VALUES.items()) == "".join(f"{p},{t}\r\n" for p, t in SHOWN)
    assert csv_chunk([("+15095550002", RESUMED_VALUE)]) == ""


def test_a_whole_snapshot_leaves_resumed_numbers_out() -> None:
    listing = Listing(Cursor(), limit=10)
    assert listing.next_read() == 0
    listing.read_batch(Batch(0, VALUES, len(VALUES)))
    assert listing.done
    assert listing.page.items == SHOWN
    assert listing.page.next is None


def test_a_partial_batch_leaves_resumed_numbers_out_and_carries_none() -> None:
    # A page of 2 from a batch of four, two of them resumed: both ended ones fit, so
    # nothing is carried for the resumed ones either.
    listing = Listing(Cursor(scan=5), limit=2)
    listing.read_batch(Batch(9, VALUES, 5000))
    assert listing.page.items == SHOWN
    assert listing.page.next == Cursor(scan=9)


def test_carried_numbers_resumed_since_are_left_out() -> None:
    carried = tuple(VALUES)
    listing = Listing(Cursor(scan=5, carried=carried), limit=10)
    read = listing.next_read()
    assert read == carried
    listing.read_carried([VALUES[phone] for phone in carried])
    assert listing.page.items == SHOWN
