"""`endcontact import FILE`: end contact for every number of a CSV file.

The rows are read twice, streaming: once to check that the file (and, with --resume,
the results file) is readable and to count its rows, then to send them. Each row is
checked here with the service's own rules (shared.phones.to_e164) first, so an invalid
row is reported without being sent and never makes its batch of 50 a 400. A number
that comes again is sent once, with its first row. The results are the input's rows,
every column, each followed by its outcome, written in input order as rows finish, so
the file holds the rows done so far at any moment: what Ctrl-C leaves, and what
--resume goes on from (with the first run's --reason, recorded beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import csv
import itertools
import json
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple, TextIO

from shared.events import MAX_NUMBERS, REASON_MAX
from shared.phones import InvalidPhoneNumber, to_e164
from shared.settings import Settings
from shared.text import is_text

if TYPE_CHECKING:
    from endcontact_client import AsyncClient, ProblemError

KEY_VARIABLE = "ENDCONTACT_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
# Requests in flight at once: as many as the closed loop that saturates the service
# (bench/results/results.md). Measured with bench/importer.py (100,000 numbers, 3
# rounds against a saturated run around each, on the 2-core machine the service runs
# on): 8 gave a median 0.75x the saturated numbers/s, 16 gave 0.80x, 24 0.78x. Again
# with the client's own HTTP/1.1 (importer CPU 20-23 µs a number, not 36-47), on a busy
# machine, two runs: 8 gave 0.75x; 16 0.88x and 0.90x; 24 0.93x and 0.87x (rounds
# 0.73-0.97): 16 and 24 within the noise of each other, so 16 stays.
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256
DEFAULT_RETRY_FOR = 60.0
# The service's own limit on one request's list.
BATCH = MAX_NUMBERS
# Rows finished but waiting behind an earlier row still in flight (results are written
# in input order), and rows read but not yet finished: at most this many are held.
MAX_PENDING = 20_000

# The columns the results add after the input's own.
OUTCOME = ("phoneNumber", "status", "detail")
# Added to one of OUTCOME's names that the input has already (compared as column names
# are, number_column), until it is not: "phoneNumber" in, "phoneNumber_result" ours.
CLASH_SUFFIX = "_result"
ENDED, INVALID, FAILED = "ended", "invalid", "failed"
# Header names, compared case-insensitively, of the column that holds the numbers, in
# order of preference; without one, the first column.
NUMBER_COLUMNS = ("phonenumber", "phone")
# After the header (row 1): a spreadsheet's row numbers, blank rows counted.
FIRST_ROW = 2
# The first characters that make a spreadsheet take a cell for a formula (OWASP, CSV
# Injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[0-9]+")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def safe_cell(text: str) -> str:
    """`text` as the results file writes it: prefixed with a single quote (which a
    spreadsheet shows as text, runs as nothing) where a spreadsheet would take it for a
    formula, as OWASP's rule for CSV injection says, so that an input row such as
    =HYPERLINK(...) comes back as text. An E.164 number (+ then digits) stays as it is:
    every number the results give is one, and a spreadsheet reads it as a number."""
    if text.startswith(_FORMULA_STARTS) and not _E164.fullmatch(text):
        return "'" + text
    return text


class UsageError(Exception):
    """Something to fix before the import can run; str() is the one line to print."""


# --- Reading the input -------------------------------------------------------------


class InputRow(NamedTuple):
    row: int  # the spreadsheet's row number: the header is 1, blank rows count
    text: str  # the number's cell as written
    cells: list[str]  # the whole row as read


def delimiter(header_line: str) -> str:
    """A comma, unless the header has none and has semicolons or tabs (as spreadsheets
    write CSV in locales where the comma is the decimal mark)."""
    if "," in header_line:
        return ","
    for candidate in (";", "\t"):
        if candidate in header_line:
            return candidate
    return ","


def _name(column: str) -> str:
    return column.strip().lower()


def number_column(header: list[str]) -> int:
    """The column named phoneNumber or phone (any case, spaces around ignored), else 0."""
    names = [_name(column) for column in header]
    for wanted in NUMBER_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    return 0


def results_header(header: list[str], width: int) -> list[str]:
    """The results file's header: the input's (with a nameless column for each cell a
    row has past it, up to `width`), then OUTCOME, each renamed with CLASH_SUFFIX while
    the input has a column of its name."""
    columns = [*header, *[""] * (width - len(header))]
    taken = {_name(column) for column in columns}
    for wanted in OUTCOME:
        while _name(wanted) in taken:
            wanted += CLASH_SUFFIX
        taken.add(_name(wanted))
        columns.append(wanted)
    return [safe_cell(column) for column in columns]


def _lines(file: BinaryIO) -> Iterator[str]:
    """The file's lines with their ends, decoded one by one (so a byte that is not UTF-8
    is reported with its row), without a leading byte-order mark (Excel's "CSV UTF-8"
    writes one). Lines end at LF, CRLF or a lone CR, as csv expects them."""
    first = next(file, b"").removeprefix(codecs.BOM_UTF8)
    if b"\r" in first[:-2]:
        # Iterating a file splits at LF only: a file whose lines end in CR alone (old Mac
        # spreadsheets) comes as one line.
        yield from (piece.decode() for piece in first.splitlines(keepends=True))
        yield from (piece.decode() for raw in file for piece in raw.splitlines(keepends=True))
        return
    yield first.decode()
    yield from map(bytes.decode, file)


def _is_blank(record: list[str]) -> bool:
    # A loop, not all(...): nearly every row ends at its first cell, and a generator
    # costs more than that check, twice for every row of the file.
    for cell in record:  # noqa: SIM110
        if cell and not cell.isspace():
            return False
    return True


class CsvInput:
    """The input file: `with CsvInput(path) as source:`, then `source.rows()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.column = 0
        self.column_name = ""
        self.header: list[str] = []
        self._file: BinaryIO | None = None
        self._reader: Iterator[list[str]] = iter(())

    def __enter__(self) -> CsvInput:
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            lines = _lines(self._file)
            first = self._first(lines)
            # strict: a quote left open is an error, not the rest of the file in one cell.
            self._reader = csv.reader(
                itertools.chain([first], lines), delimiter=delimiter(first), strict=True
            )
            header = self._next(1)
        except BaseException:
            self._file.close()
            raise
        if header is None or _is_blank(header):
            self._file.close()
            raise UsageError(f"{self.path} has no header row (the first row names the columns)")
        self.header = header
        self.column = number_column(header)
        self.column_name = header[self.column].strip()
        return self

    def _first(self, lines: Iterator[str]) -> str:
        try:
            return next(lines, "")
        except UnicodeDecodeError:
            raise UsageError(self._not_utf8(1)) from None

    def _not_utf8(self, row: int) -> str:
        return f"{self.path} is not UTF-8 text (row {row}); save it as CSV UTF-8"

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()

    def _next(self, row: int) -> list[str] | None:
        try:
            return next(self._reader, None)
        except UnicodeDecodeError:
            raise UsageError(self._not_utf8(row)) from None
        except csv.Error as exc:
            raise UsageError(f"{self.path} is not a readable CSV (row {row}): {exc}") from None
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def rows(self) -> Iterator[InputRow]:
        """The data rows; blank ones (no cell with anything in it) are skipped."""
        row = FIRST_ROW
        column = self.column
        while (record := self._next(row)) is not None:
            if not _is_blank(record):
                yield InputRow(row, record[column] if column < len(record) else "", record)
            row += 1


@dataclass(frozen=True, slots=True)
class Previous:
    """A row of an earlier results file."""

    cells: list[str]  # the input's, as the results file wrote them (safe_cell)
    phone: str
    status: str
    detail: str

    @property
    def final(self) -> bool:
        """Done for good: not sent again by --resume (a failed row is)."""
        return self.status in (ENDED, INVALID)


Rows = Iterator[tuple[InputRow, Previous | None]]


class ResultsInput:
    """An earlier results file, read in step with the input for --resume. Its header
    is checked against the input's with check_header."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: list[str] = []
        self._file: TextIO | None = None
        self._reader: Iterator[list[str]] = iter(())
        self._line = 1

    def __enter__(self) -> ResultsInput:
        try:
            self._file = open(self.path, encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self._reader = csv.reader(self._file, strict=True)
        self.header = self._next() or []
        if len(self.header) <= len(OUTCOME):
            self._file.close()
            raise UsageError(
                f"{self.path} is not a results file (the input's columns, then {','.join(OUTCOME)})"
            )
        return self

    def check_header(self, expected: list[str]) -> None:
        if self.header != expected:
            raise UsageError(
                f"{self.path} is not a results file of this input: its header is not "
                f"{','.join(expected)}"
            )

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()

    def _next(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{self.path} is not a readable results file: {exc}") from None

    def next(self) -> Previous | None:
        record = self._next()
        if record is None:
            return None
        self._line += 1
        if len(record) != len(self.header) or record[-2] not in (ENDED, INVALID, FAILED):
            raise UsageError(f"{self.path} row {self._line} is not a result row")
        *cells, phone, status, detail = record
        return Previous(cells, phone, status, detail)


def paired(source: CsvInput, previous: ResultsInput | None) -> Rows:
    """Each input row with its row of the earlier results file (None past its end or
    without one). An earlier file that is not this input's results is a UsageError."""
    if previous is None:
        return zip(source.rows(), itertools.repeat(None))
    return _paired(source, previous)


def _paired(source: CsvInput, previous: ResultsInput) -> Rows:
    column = source.column
    for row in source.rows():
        before = previous.next()
        # The number's cell as the results file writes it back (safe_cell).
        if before is not None and before.cells[column : column + 1] != [safe_cell(row.text)]:
            raise UsageError(
                f"{previous.path} is not the results of {source.path}: they differ at row "
                f"{row.row} of the input"
            )
        yield row, before
    if previous.next() is not None:
        raise UsageError(
            f"{previous.path} has more rows than {source.path}: not the results of this file"
        )


# --- The import itself ---------------------------------------------------------------

# Sends one batch of E.164 numbers for at most the given seconds of retries; returns,
# in the same order, None for each number ended and, for each that was not, why.
Send = Callable[[list[str], float], Awaitable[list[str | None]]]


class Fatal(Exception):
    """The service refuses this import as a whole (a wrong key, a wrong URL); str() is
    the one line to print. Raised by a Send."""


@dataclass(slots=True)
class Entry:
    """One input row on its way to the results file."""

    row: int
    cells: list[str]  # the input's row
    before: Previous | None  # its row in the results file resumed from
    phone: str = ""
    status: str = ""  # "" until known
    detail: str = ""
    original: int = 0  # a repeated number: the row it was first seen in
    kept: bool = False  # finished by an earlier run (--resume)


@dataclass
class Counts:
    ended: int = 0
    invalid: int = 0
    failed: int = 0
    # Rows finished by this run, not kept from an earlier results file.
    done: int = 0

    @property
    def rows(self) -> int:
        return self.ended + self.invalid + self.failed

    def add(self, status: str) -> None:
        if status == ENDED:
            self.ended += 1
        elif status == INVALID:
            self.invalid += 1
        else:
            self.failed += 1


@dataclass
class Importer:
    """Rows in, results out in input order, batches of up to 50 new numbers sent by up
    to `concurrency` senders at once.

    A batch is retried (by `send`) for `retry_for` seconds, but never past `retry_for`
    after the service last ended a number: once it has been down that long, the rest
    fails at once instead of each batch waiting out its own `retry_for`.

    The results written are always the input's first rows, whatever stops the run
    (Ctrl-C cancels it): each finished, or as the results file resumed from had it."""

    send: Send
    region: str
    # Takes each results row: the input's cells, then OUTCOME's.
    write: Callable[[list[str]], None]
    # The input's columns: a shorter row is written with empty cells up to it, so that
    # OUTCOME's are in their columns.
    width: int = 1
    concurrency: int = DEFAULT_CONCURRENCY
    retry_for: float = DEFAULT_RETRY_FOR
    progress: Callable[[int], None] = lambda done: None
    counts: Counts = field(default_factory=Counts)
    # Each number sent, with the row it was first seen in; of those, the rows that failed
    # and why. What a repeated number's rows need to say the same.
    _seen: dict[str, int] = field(default_factory=dict)
    _failed: dict[int, str] = field(default_factory=dict)
    _pending: deque[Entry] = field(default_factory=deque)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _last_success: float = field(default_factory=time.monotonic)

    def classify(self, row: InputRow, before: Previous | None) -> Entry:
        """The row's entry: finished (kept, invalid), a repeat, or to send (no status)."""
        entry = Entry(row.row, row.cells, before)
        if before is not None and before.final:
            entry.phone, entry.status, entry.detail = before.phone, before.status, before.detail
            entry.kept = True
            if before.status == ENDED and before.phone:
                self._seen.setdefault(before.phone, row.row)
            return entry
        text = row.text.strip()
        if not text:
            entry.status, entry.detail = INVALID, "empty"
            return entry
        try:
            entry.phone = to_e164(text, self.region)
        except InvalidPhoneNumber as exc:
            entry.status, entry.detail = INVALID, str(exc)
            return entry
        first = self._seen.setdefault(entry.phone, row.row)
        if first != row.row:
            entry.original = first
        return entry

    async def run(self, rows: Rows) -> Counts:
        queue: asyncio.Queue[list[Entry] | None] = asyncio.Queue(maxsize=self.concurrency)
        senders = [asyncio.create_task(self._sender(queue)) for _ in range(self.concurrency)]
        batch: list[Entry] = []
        finished = False
        try:
            for row, before in rows:
                entry = self.classify(row, before)
                self._pending.append(entry)
                if not entry.status and not entry.original:
                    batch.append(entry)
                    if len(batch) == BATCH:
                        await self._put(queue, batch, senders)
                        batch = []
                elif len(self._pending) == 1:
                    self._flush()
                if len(self._pending) >= MAX_PENDING:
                    # Rows behind a batch still being filled wait for it: send it now.
                    if batch:
                        await self._put(queue, batch, senders)
                        batch = []
                    await self._drain_to(MAX_PENDING // 2, senders)
            if batch:
                await self._put(queue, batch, senders)
            for _ in senders:
                await self._put(queue, None, senders)
            await asyncio.gather(*senders)
            finished = True
        finally:
            for sender in senders:
                sender.cancel()
            self._flush()
            if not finished:
                self._carry_over(rows)
        return self.counts

    async def _put(
        self,
        queue: asyncio.Queue[list[Entry] | None],
        batch: list[Entry] | None,
        senders: list[asyncio.Task[None]],
    ) -> None:
        """Queue a batch; a sender's Fatal (or crash) surfaces here, not later."""
        if not queue.full():
            # Room already (most batches): no future to make and to wait on together
            # with every sender, which cost ~90 µs a batch with 16 of them.
            _raise_any(senders)
            queue.put_nowait(batch)
            return
        put = asyncio.ensure_future(queue.put(batch))
        await self._until(put, senders)

    async def _drain_to(self, pending: int, senders: list[asyncio.Task[None]]) -> None:
        while len(self._pending) > pending:
            self._changed.clear()
            await self._until(asyncio.ensure_future(self._changed.wait()), senders)

    @staticmethod
    async def _until(waiting: asyncio.Future[Any], senders: list[asyncio.Task[None]]) -> None:
        """Until `waiting` is done, or a sender raised (then that, here)."""
        try:
            while not waiting.done():
                running = [sender for sender in senders if not sender.done()]
                watched: list[asyncio.Future[Any]] = [waiting, *running]
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                _raise_any(senders)
        finally:
            waiting.cancel()

    async def _sender(self, queue: asyncio.Queue[list[Entry] | None]) -> None:
        while (batch := await queue.get()) is not None:
            now = time.monotonic()
            # Not past retry_for since the service last ended anything (class docstring).
            retry_for = max(0.0, min(self.retry_for, self._last_success + self.retry_for - now))
            outcomes = await self.send([entry.phone for entry in batch], retry_for)
            if any(outcome is None for outcome in outcomes):
                self._last_success = time.monotonic()
            for entry, outcome in zip(batch, outcomes, strict=True):
                if outcome is None:
                    entry.status = ENDED
                else:
                    entry.status, entry.detail = FAILED, outcome
                    self._failed[entry.row] = outcome
            self._flush()

    def _flush(self) -> None:
        """Write the finished rows at the front, in input order."""
        written = 0
        while self._pending:
            entry = self._pending[0]
            if entry.original:
                # A repeat: its first row is before it, so written already.
                why = self._failed.get(entry.original)
                entry.status = ENDED if why is None else FAILED
                entry.detail = f"duplicate of row {entry.original}" + (f": {why}" if why else "")
            elif not entry.status:
                break
            self._pending.popleft()
            self._write(entry.cells, entry.phone, entry.status, entry.detail)
            if not entry.kept:
                self.counts.done += 1
                written += 1
        if written:
            self.progress(written)
            self._changed.set()

    def _write(self, cells: list[str], phone: str, status: str, detail: str) -> None:
        # Every row of the results file comes here. All but the status (ours) come from
        # the input, the service or a resumed results file (whose cells are safe already:
        # safe_cell changes nothing twice).
        row = [safe_cell(cell) for cell in cells]
        if len(row) < self.width:
            row.extend([""] * (self.width - len(row)))
        row += (safe_cell(phone), status, safe_cell(detail))
        self.write(row)
        self.counts.add(status)

    def _carry_over(self, rows: Rows) -> None:
        """Stopped early: after the rows written, those the resumed results file has, as
        it has them (finished ones of this run where they follow on), so that stopping
        a --resume loses nothing an earlier run did."""
        while self._pending:
            entry = self._pending.popleft()
            if entry.status and not entry.original:
                self._write(entry.cells, entry.phone, entry.status, entry.detail)
            elif entry.before is not None:
                self._write_before(entry.before)
            else:
                return
        for _, before in rows:
            if before is None:
                return
            self._write_before(before)

    def _write_before(self, before: Previous) -> None:
        self._write(before.cells, before.phone, before.status, before.detail)


# --- The command ---------------------------------------------------------------------


def default_out(path: Path) -> Path:
    """`numbers.csv` -> `numbers.results.csv`, beside it."""
    return path.with_name(f"{path.stem}.results.csv")


def reason_file(out: Path) -> Path:
    """Where the run's --reason is recorded for --resume, beside its results:
    `numbers.results.csv` -> `numbers.results.reason.json`."""
    return out.with_name(f"{out.stem}.reason.json")


def _shown_reason(reason: str | None) -> str:
    return "none" if reason is None else json.dumps(reason, ensure_ascii=False)


def resumed_reason(out: Path, given: str | None) -> str | None:
    """The reason a --resume of `out` sends with: the first run's, recorded beside it,
    whether --reason repeats it or is left out; a different one is a UsageError, since
    the rows ended so far were stored with the first. Without a record (results of a
    version that kept none), the one given."""
    path = reason_file(out)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["reason"]
        if recorded is not None and not isinstance(recorded, str):
            raise TypeError
    except FileNotFoundError:
        return given
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError):  # not UTF-8, not JSON, not ours
        raise UsageError(f'{path} is not a reason record ({{"reason": ...}})') from None
    if given is not None and given != recorded:
        raise UsageError(
            f"--reason {_shown_reason(given)} is not the first run's reason "
            f"({_shown_reason(recorded)}, recorded in {path}): --resume goes on with the "
            "first run's; leave --reason out"
        )
    return recorded


def _record_reason(out: Path, reason: str | None) -> None:
    path = reason_file(out)
    part = path.with_name(path.name + ".part")
    try:
        part.write_text(json.dumps({"reason": reason}, ensure_ascii=False) + "\n", "utf-8")
        os.replace(part, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if len(reason) > REASON_MAX:
        raise UsageError(f"--reason must be at most {REASON_MAX} characters; it has {len(reason)}")
    if not is_text(reason):
        # Bytes that are not UTF-8 in argv arrive as lone surrogates; the service
        # refuses those (api/body.py).
        raise UsageError("--reason must be UTF-8 text")
    return reason


@dataclass(frozen=True)
class Options:
    source: Path
    out: Path
    url: str
    key: str
    region: str
    concurrency: int
    retry_for: float
    reason: str | None
    resume: bool


def options(settings: Settings, args: argparse.Namespace, env: dict[str, str]) -> Options:
    """The import's options, or a UsageError saying what to fix."""
    key = env.get(KEY_VARIABLE, "").strip()
    if not key:
        raise UsageError(
            f"set {KEY_VARIABLE} to the API key (it is read from the environment only, "
            "so that it never shows in the process list)"
        )
    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"no such file: {source}")
    out = Path(args.out) if args.out else default_out(source)
    if out.resolve() == source.resolve():
        raise UsageError("--out must not be the input file")
    if not out.parent.is_dir():
        raise UsageError(f"no such directory for the results: {out.parent}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}")
    if not 0 <= args.retry_for <= 86_400:
        raise UsageError("--retry-for must be 0 to 86400 seconds")
    reason = check_reason(args.reason)
    if args.resume and out.exists():
        reason = resumed_reason(out, reason)
    return Options(
        source=source,
        out=out,
        url=args.url.rstrip("/"),
        key=key,
        region=settings.default_region,
        concurrency=args.concurrency,
        retry_for=args.retry_for,
        reason=reason,
        resume=args.resume,
    )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "import",
        help=f"end contact for every number of a CSV file (key: ${KEY_VARIABLE})",
        description=(
            f"End contact for every number of a CSV file. The API key is read from "
            f"${KEY_VARIABLE}, never from the command line."
        ),
    )
    command.add_argument(
        "file", metavar="FILE", help="CSV with a header row; numbers in phoneNumber or phone"
    )
    command.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    command.add_argument(
        "--out",
        metavar="RESULTS.csv",
        help="results CSV (default: beside FILE, named <FILE stem>.results.csv)",
    )
    command.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    command.add_argument(
        "--retry-for",
        type=float,
        default=DEFAULT_RETRY_FOR,
        metavar="SECONDS",
        help=f"how long failures are retried (default {DEFAULT_RETRY_FOR:g})",
    )
    command.add_argument(
        "--reason",
        help=f"recorded with each change (at most {REASON_MAX} characters); "
        "--resume keeps the first run's",
    )
    command.add_argument(
        "--resume",
        action="store_true",
        help="go on from the results file, with the first run's --reason: rows already "
        "ended or invalid are not sent again",
    )
    command.set_defaults(handler=cmd_import)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        chosen = options(settings, args, dict(os.environ))
        return run(chosen)
    except UsageError as exc:
        print(f"endcontact: {exc}", file=sys.stderr)
        return EXIT_USAGE


@dataclass(frozen=True)
class Survey:
    rows: int
    to_do: int  # rows not finished by the run resumed
    width: int  # cells of the widest row, the header included
    header: list[str]  # the results file's


@contextlib.contextmanager
def _inputs(chosen: Options) -> Iterator[tuple[CsvInput, ResultsInput | None]]:
    """The input, and with --resume the results it goes on from (if there are any)."""
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(CsvInput(chosen.source))
        previous = None
        if chosen.resume and chosen.out.exists():
            previous = stack.enter_context(ResultsInput(chosen.out))
        yield source, previous


def survey(chosen: Options) -> Survey:
    """The whole input (and the results it resumes) read once before anything is sent,
    so an unreadable file is a usage error, not an import stopped half-way; and what
    the import needs to know of it first."""
    rows = to_do = 0
    with _inputs(chosen) as (source, previous):
        width = len(source.header)
        for row, before in paired(source, previous):
            rows += 1
            to_do += before is None or not before.final
            if len(row.cells) > width:
                width = len(row.cells)
        header = results_header(source.header, width)
        if previous is not None:
            previous.check_header(header)
    return Survey(rows, to_do, width, header)


def run(chosen: Options) -> int:
    if chosen.resume and not chosen.out.exists():
        print(
            f"endcontact: no {chosen.out} to resume from: starting at the first row",
            file=sys.stderr,
        )
    started = time.monotonic()
    surveyed = survey(chosen)
    rows = surveyed.rows
    part = chosen.out.with_name(chosen.out.name + ".part")
    fatal: Fatal | None = None
    try:
        out = open(part, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write {part}: {exc.strerror or exc}") from None
    with out:
        writer = csv.writer(out)
        writer.writerow(surveyed.header)
        with _progress(rows - surveyed.to_do, rows) as advance, _inputs(chosen) as inputs:

            def progress(done: int) -> None:
                # What is finished is on disk, not in a buffer: another program (or
                # a test) may follow the file.
                out.flush()
                advance(done)

            sender = ClientSend(chosen)
            importer = Importer(
                send=sender,
                region=chosen.region,
                write=writer.writerow,
                width=surveyed.width,
                concurrency=chosen.concurrency,
                retry_for=chosen.retry_for,
                progress=progress,
            )
            try:
                interrupted = _run_until_signal(_with_sender(sender, importer, paired(*inputs)))
            except Fatal as exc:
                fatal, interrupted = exc, None
    counts = importer.counts
    if fatal is not None and not counts.rows:
        # Refused at the start (a wrong key, a wrong URL): no results file with only a
        # header, and an earlier one left as it was.
        part.unlink()
        print(f"endcontact: {fatal}", file=sys.stderr)
        return EXIT_USAGE
    # Renamed only now: a --resume read the old file until the last row was read.
    os.replace(part, chosen.out)
    _record_reason(chosen.out, chosen.reason)
    if fatal is not None:
        print(f"endcontact: {fatal}; results so far in {chosen.out}", file=sys.stderr)
        return EXIT_USAGE
    seconds = time.monotonic() - started
    print(_summary(counts, rows, seconds, chosen.out, interrupted is not None))
    if interrupted is not None:
        return 128 + interrupted
    return EXIT_FAILED if counts.failed else EXIT_OK


def rate(per_second: float) -> str:
    """A rate as the summary and the progress bar show it: whole numbers, but for a
    slow one, which would show as 0."""
    shown = f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.1f}"
    return f"{shown} numbers/s"


def _summary(counts: Counts, rows: int, seconds: float, out: Path, interrupted: bool) -> str:
    # A rate only of what this run did: none when it finished nothing (stopped at the
    # start, or a --resume with nothing left).
    speed = rate(counts.done / seconds) if counts.done and seconds > 0 else ""
    tally = f"ended {counts.ended:,}, invalid {counts.invalid:,}, failed {counts.failed:,}"
    if interrupted:
        return (
            f"interrupted after {counts.rows:,} of {rows:,} rows "
            f"({tally}{'; ' + speed if speed else ''}); "
            f"results so far in {out}: run again with --resume to finish"
        )
    took = f"{seconds:.1f} s" + (f" ({speed})" if speed else "")
    return f"{tally} of {rows:,} rows in {took}; results in {out}"


def _run_until_signal(work: Awaitable[Counts]) -> int | None:
    """Run the import; SIGINT or SIGTERM cancels it (its results so far are written by
    Importer.run on the way out). The signal's number when one came, else None."""

    async def main() -> int | None:
        task = asyncio.ensure_future(work)
        caught: list[int] = []
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            # False once the import is done: its result stands.
            if task.cancel():
                caught.append(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            await task
        except asyncio.CancelledError:
            if not caught:
                raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
                # The result is decided: a signal during the summary or the exit (tens
                # of ms) must not kill the process with another status (it did: 143).
                signal.signal(signum, signal.SIG_IGN)
        return caught[0] if caught else None

    return asyncio.run(main())


@contextlib.contextmanager
def _progress(
    done: int, total: int, stream: IO[str] | None = None
) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (stderr); elsewhere nothing until the summary."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield lambda rows: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            # Nothing until rich has a rate (two advances apart), not a "0" or "-".
            speed = task.speed
            return Text(rate(speed) if speed is not None else "")

    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(file=stream),
    ) as bar:
        task = bar.add_task("import", total=total, completed=done)
        yield lambda rows: bar.advance(task, rows)


def _raise_any(senders: list[asyncio.Task[None]]) -> None:
    """A sender's error (a Fatal, a crash), raised here."""
    for sender in senders:
        if sender.done() and not sender.cancelled():
            error = sender.exception()
            if error is not None:
                raise error


class ClientSend:
    """Send through the client (client.AsyncClient): its retries of failures with
    backoff, of 429 and 503 after their Retry-After, and of no answer at all.

    One client of one connection per batch in flight, not one client of `concurrency`
    connections: each call sets its own retry_for on its client, and over https (httpx's
    own transport) httpcore's pool looks at each of its connections for every request it
    sends, so many small pools cost less CPU per request (measured with 8 in flight:
    0.76 against 1.00 ms; with 16: 0.73 against 1.47 ms)."""

    def __init__(self, chosen: Options) -> None:
        self.chosen = chosen
        self._idle: list[AsyncClient] = []

    async def __aenter__(self) -> ClientSend:
        from endcontact_client import AsyncClient

        self._idle = [
            AsyncClient(self.chosen.url, self.chosen.key, concurrency=1)
            for _ in range(self.chosen.concurrency)
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self._idle:
            await client.close()

    async def __call__(self, numbers: list[str], retry_for: float) -> list[str | None]:
        from endcontact_client import ProblemError

        # Importer has at most `concurrency` batches in flight: one client is idle.
        client = self._idle.pop()
        # Each call its own retry_for (Importer shortens it in an outage); the client,
        # this call's alone, reads it when the call starts.
        client.retry_for = retry_for
        try:
            result = await client.end_contact(numbers, reason=self.chosen.reason)
        except ProblemError as exc:
            return self._refused(numbers, retry_for, exc)
        finally:
            self._idle.append(client)
        failing, ended = set(result.failure), set(result.success)
        still = f"still failing after {retry_for:.0f} s of retries (the service's failure list)"
        return [
            None if number in ended else still if number in failing else "not in the answer"
            for number in numbers
        ]

    def _refused(self, numbers: list[str], retry_for: float, exc: ProblemError) -> list[str | None]:
        """A batch that got an error: failed rows, or the import stopped (Fatal)."""
        problem = f"{exc.status} {exc.title}: {exc.detail}"
        if exc.retryable:
            return [f"no success within {retry_for:.0f} s of retries: {problem}"] * len(numbers)
        if exc.status == 400:
            # Not expected: every number was checked here with the service's rules.
            return [f"refused by the service: {problem}"] * len(numbers)
        if exc.status == 401:
            raise Fatal(f"the service refused the key in {KEY_VARIABLE} ({problem})") from None
        raise Fatal(
            f"the service at {self.chosen.url} answered {exc.status} {exc.title} to "
            f"end-contact (is --url right?)"
        ) from None


async def _with_sender(sender: ClientSend, importer: Importer, rows: Rows) -> Counts:
    async with sender:
        return await importer.run(rows)
