"""The listing's cursor: what it hands out it takes back; anything else is refused."""

from __future__ import annotations

import base64
import json

import pytest

from shared.marks import MAX_CARRIED, BadCursor, Cursor, csv_chunk


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
