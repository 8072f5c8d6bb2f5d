"""Reading a campaign's marks: many numbers at once, in pages, or all of them as CSV.

Every read here goes to the campaign's hash (`shared.keyspace.ended_key`) and nothing
else. The hash also holds numbers that are not ended (resumed, kept for their history,
shared.events): a stored value is read through `ended_at_of`, the one place that knows
what it holds, and numbers that are not ended are left out of every page and export.

Pages. HSCAN is the only way through a hash that holds no other index: its guarantee
(valkey and Redis SCAN docs) is that a full iteration, following the cursor from 0 back
to 0, returns every element present from its start to its end at least once, and only
elements that were present at some time during it, whatever was added, removed or
rehashed meanwhile. Two things stand between that and a page of at most `limit`:

- COUNT is a hint. A small hash (listpack-encoded) comes back whole from one call,
  whatever COUNT says; a large one comes back a few buckets at a time, each call
  handing over whole buckets, so a little more than COUNT.
- Re-reading a batch from the same cursor is no way to resume within it: one call
  walks buckets until it has COUNT elements, so after removals the same cursor walks
  further and hands over elements of later buckets; skipping those "already returned"
  by any rule (say, sorted up to a last number) would lose elements never returned.

So a listing is in one of two states, carried in the opaque cursor:

- Whole (`whole`, `floor`): the last call returned the entire hash at one instant
  (HSCAN and HLEN in one MULTI, and as many elements as HLEN; a call is atomic and
  never returns an element twice). The snapshot is sorted and the page is the numbers
  after `floor`. Every number present throughout and not above `floor` was in an
  earlier snapshot, after the floor of its time, so it was returned then.
- Scanning (`scan`, `carried`): an HSCAN iteration from 0; every batch is consumed
  whole, the numbers that do not fit on the page are carried in the cursor (a few:
  the overflow of the last bucket) and read back first (HMGET) on the next page,
  returned if still ended. Nothing is skipped, so SCAN's guarantee is the listing's.

When a whole snapshot turns into a partial batch (the hash grew), scanning restarts
from 0; when a scan's batch turns out to be the whole hash, the listing goes whole
from the start. Both may return a number twice; none loses one. A Redis restart in
the middle of a listing voids SCAN's guarantee (the hash seed changes), and so ours.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.events import E164, ended_at_of

# Of what a cursor may hold, far more than this module hands out (the overflow of one
# HSCAN call's last bucket: 10 at most in 5,000 calls of the tests and benchmark):
# checked, so that a forged cursor cannot make one page read much. 150 carried numbers
# of 15 digits fit in 4096 characters, and 4096 characters of anything, percent-encoded,
# fit in a URL uvicorn takes (it refuses one of about 80 KB with a bare 400).
MAX_CARRIED = 150
MAX_CURSOR_LENGTH = 4096
# HSCAN calls one page may make; a page can end short of `limit` (even empty) with a
# cursor to go on from, so that one request's work is bounded whatever the hash holds.
MAX_CALLS_PER_PAGE = 32
CURSOR_VERSION = "1"
CSV_HEADER = "phoneNumber,endedAt\r\n"
# Pairs per HSCAN call of an export: fewer calls against larger replies; a chunk of
# 1000 rows is about 40 KB of CSV.
EXPORT_COUNT = 1000


class BadCursor(ValueError):
    """The cursor was not handed out by a listing; str() says why, fit for a client."""


@dataclass(frozen=True)
class Cursor:
    whole: bool = False
    scan: int = 0
    floor: str = ""
    carried: tuple[str, ...] = ()

    def encode(self) -> str:
        state = [int(self.whole), str(self.scan), self.floor, list(self.carried)]
        raw = json.dumps(state, separators=(",", ":")).encode()
        return CURSOR_VERSION + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if len(text) > MAX_CURSOR_LENGTH:
            raise BadCursor(f"longer than {MAX_CURSOR_LENGTH} characters")
        if not text.startswith(CURSOR_VERSION):
            raise BadCursor("not a cursor from this service")
        body = text[len(CURSOR_VERSION) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            whole, scan, floor, carried = json.loads(raw)
        except (binascii.Error, ValueError, TypeError, RecursionError):
            raise BadCursor("not a cursor from this service") from None
        if (
            whole not in (0, 1)
            or isinstance(whole, bool)
            or not isinstance(scan, str)
            or not scan.isascii()
            or not scan.isdigit()
            or int(scan) >= 2**64
            or not isinstance(floor, str)
            or (floor and not E164.fullmatch(floor))
            or not isinstance(carried, list)
            or len(carried) > MAX_CARRIED
            or not all(isinstance(n, str) and E164.fullmatch(n) for n in carried)
            or (whole and (scan != "0" or carried))
            or (not whole and floor)
        ):
            raise BadCursor("not a cursor from this service")
        return cls(bool(whole), int(scan), floor, tuple(carried))


@dataclass
class Page:
    items: list[tuple[str, str]] = field(default_factory=list)  # (E.164, endedAt)
    next: Cursor | None = None


@dataclass(frozen=True)
class Batch:
    """One HSCAN call with the hash's length at the same instant."""

    scan: int  # the cursor HSCAN returned
    pairs: dict[str, str]
    length: int

    @property
    def whole(self) -> bool:
        return self.scan == 0 and len(self.pairs) == self.length


class Listing:
    """One page's worth of the state machine in the module's docstring, without I/O:
    until `done`, the store asks `next_read()` what to read (carried numbers, by HMGET,
    or an HSCAN cursor, called with COUNT `room` and HLEN in the same MULTI) and feeds
    the answer back (`read_carried`, `read_batch`); then it takes `page`."""

    def __init__(self, cursor: Cursor, limit: int) -> None:
        self.cursor = cursor
        self.limit = limit
        self.page = Page()
        self.calls = 0
        self.done = False

    @property
    def room(self) -> int:
        return self.limit - len(self.page.items)

    def next_read(self) -> tuple[str, ...] | int:
        """Carried numbers first, all of them: a batch's overflow replaces the carried
        ones, so the scan goes on only once none is left unread."""
        if self.cursor.carried:
            return self.cursor.carried[: self.room]
        return 0 if self.cursor.whole else self.cursor.scan

    def read_carried(self, values: Sequence[object]) -> None:
        self.calls += 1
        read = self.cursor.carried[: len(values)]
        for phone, value in zip(read, values, strict=True):
            ended_at = None if value is None else ended_at_of(value)
            if ended_at is not None:
                self.page.items.append((phone, ended_at))
        self.cursor = Cursor(scan=self.cursor.scan, carried=self.cursor.carried[len(read) :])
        self._settle()

    def read_batch(self, batch: Batch) -> None:
        if self.cursor.carried:
            raise RuntimeError("carried numbers left unread")  # next_read() says when
        self.calls += 1
        ended = _ended(batch.pairs)
        if batch.whole:
            floor = self.cursor.floor if self.cursor.whole else ""
            after = sorted(phone for phone in ended if phone > floor)
            taken = after[: self.room]
            self.page.items.extend((phone, ended[phone]) for phone in taken)
            more = len(after) > len(taken)
            self.cursor = Cursor(whole=True, floor=taken[-1] if taken else floor)
            self.page.next = self.cursor if more else None
            self.done = True
            return
        # A partial batch: from the cursor's scan position if scanning, else (a whole
        # snapshot no longer) from 0, which is where next_read() pointed it.
        phones = list(ended)
        taken, rest = phones[: self.room], phones[self.room :]
        self.page.items.extend((phone, ended[phone]) for phone in taken)
        self.cursor = Cursor(scan=batch.scan, carried=tuple(rest))
        self._settle()

    def _settle(self) -> None:
        """Done if the page is full, the listing is over, or the page's calls are spent."""
        over = self.cursor.scan == 0 and not self.cursor.carried
        if over:
            self.page.next = None
            self.done = True
        elif self.room <= 0 or self.calls >= MAX_CALLS_PER_PAGE:
            self.page.next = self.cursor
            self.done = True


def _ended(pairs: dict[str, str]) -> dict[str, str]:
    """Of a batch's numbers, those ended, with their endedAt, in the batch's order."""
    out = {}
    for phone, value in pairs.items():
        ended_at = ended_at_of(value)
        if ended_at is not None:
            out[phone] = ended_at
    return out


def start_cursor() -> Cursor:
    return Cursor()


def csv_chunk(pairs: Iterable[tuple[Any, Any]]) -> str:
    """CSV rows (RFC 4180, CRLF) of the ended numbers among (phone, stored value) pairs."""
    out = io.StringIO()
    rows = ((phone, ended_at_of(value)) for phone, value in pairs)
    csv.writer(out, lineterminator="\r\n").writerows(row for row in rows if row[1] is not None)
    return out.getvalue()
