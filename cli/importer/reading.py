"""Reading for `endcontact import`: the input CSV (its delimiter, encoding, header and
the number's column), an earlier results file read in step with it for --resume, and
each row's number checked with the service's own rules before anything is sent.

The split: this module turns files into Entry objects (results.py) and raises a
UsageError for anything unreadable; what is sent, and when, is sending.py's; what is
written, results.py's. Reading is plain, synchronous code, and the files are read
twice: once to survey the whole input before anything is sent (command.py), once as
the rows are sent.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, TextIO

from cli.importer.errors import UsageError
from cli.importer.results import (
    ENDED,
    FAILED,
    INVALID,
    OUTCOME,
    Entry,
    Previous,
    column_key,
    safe_cell,
)
from shared.phones import InvalidPhoneNumber, to_e164

# Header names, compared case-insensitively, of the column that holds the numbers, in
# order of preference; without one, the first column.
NUMBER_COLUMNS = ("phonenumber", "phone")
# After the header (row 1): a spreadsheet's row numbers, blank rows counted.
FIRST_ROW = 2


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


def number_column(header: list[str]) -> int:
    """The column named phoneNumber or phone (as column_key compares them), else 0."""
    names = [column_key(column) for column in header]
    for wanted in NUMBER_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    return 0


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


class Classifier:
    """Each row as an Entry: checked here with the service's own rules (to_e164) first,
    so an invalid row is reported without being sent and never makes its batch of 50 a
    400; a number that comes again is sent once, with its first row."""

    def __init__(self, region: str) -> None:
        self.region = region
        # Each number sent (or ended by the run resumed), with the row it was first seen
        # in: what a repeated number's rows point to.
        self._seen: dict[str, int] = {}

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
