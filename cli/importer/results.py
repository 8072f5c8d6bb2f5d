"""The results file of `endcontact import`: its columns (the input's, then OUTCOME's),
its statuses, its rows written in input order as they finish, the --reason recorded
beside it for --resume, and the summary line that names it.

The split: reading.py reads the files (the input, and an earlier results file for
--resume), sending.py gets the outcomes from the service; this module is what both
agree on about a row (Entry, Previous, the statuses) and everything written. The
other two import it, it imports neither.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cli.importer.errors import UsageError

# The columns the results add after the input's own.
OUTCOME = ("phoneNumber", "status", "detail")
# Added to one of OUTCOME's names that the input has already (compared as column names
# are, column_key), until it is not: "phoneNumber" in, "phoneNumber_result" ours.
CLASH_SUFFIX = "_result"
ENDED, INVALID, FAILED = "ended", "invalid", "failed"
# The first characters that make a spreadsheet take a cell for a formula (OWASP, CSV
# Injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[0-9]+")


def safe_cell(text: str) -> str:
    """`text` as the results file writes it: prefixed with a single quote (which a
    spreadsheet shows as text, runs as nothing) where a spreadsheet would take it for a
    formula, as OWASP's rule for CSV injection says, so that an input row such as
    =HYPERLINK(...) comes back as text. An E.164 number (+ then digits) stays as it is:
    every number the results give is one, and a spreadsheet reads it as a number."""
    if text.startswith(_FORMULA_STARTS) and not _E164.fullmatch(text):
        return "'" + text
    return text


def column_key(column: str) -> str:
    """A column's name as names are compared: any case, spaces around ignored."""
    return column.strip().lower()


def results_header(header: list[str], width: int) -> list[str]:
    """The results file's header: the input's (with a nameless column for each cell a
    row has past it, up to `width`), then OUTCOME, each renamed with CLASH_SUFFIX while
    the input has a column of its name."""
    columns = [*header, *[""] * (width - len(header))]
    taken = {column_key(column) for column in columns}
    for wanted in OUTCOME:
        while column_key(wanted) in taken:
            wanted += CLASH_SUFFIX
        taken.add(column_key(wanted))
        columns.append(wanted)
    return [safe_cell(column) for column in columns]


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
class ResultsWriter:
    """The results rows, in input order: every entry read waits in `pending` until
    those before it are written. So what is written is always the input's first rows,
    whatever stops the run: each finished, or as the results file resumed from had it."""

    # Takes each results row: the input's cells, then OUTCOME's.
    write: Callable[[list[str]], None]
    # The input's columns: a shorter row is written with empty cells up to it, so that
    # OUTCOME's are in their columns.
    width: int
    progress: Callable[[int], None]
    counts: Counts
    pending: deque[Entry] = field(default_factory=deque)
    # Set when rows are written: what a reader holding too many waits for.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # The rows that failed and why: what a repeat of their number says too.
    _failed: dict[int, str] = field(default_factory=dict)

    def finish(self, batch: list[Entry], outcomes: list[str | None]) -> None:
        """A batch's outcomes (None: ended; else why not), then the rows now in order."""
        for entry, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                entry.status = ENDED
            else:
                entry.status, entry.detail = FAILED, outcome
                self._failed[entry.row] = outcome
        self.flush()

    def flush(self) -> None:
        """Write the finished rows at the front, in input order."""
        written = 0
        while self.pending:
            entry = self.pending[0]
            if entry.original:
                # A repeat: its first row is before it, so written already.
                why = self._failed.get(entry.original)
                entry.status = ENDED if why is None else FAILED
                entry.detail = f"duplicate of row {entry.original}" + (f": {why}" if why else "")
            elif not entry.status:
                break
            self.pending.popleft()
            self._write(entry.cells, entry.phone, entry.status, entry.detail)
            if not entry.kept:
                self.counts.done += 1
                written += 1
        if written:
            self.progress(written)
            self.changed.set()

    def carry_over(self, rest: Iterable[Previous | None]) -> None:
        """Stopped early: after the rows written, those the resumed results file has, as
        it has them (finished ones of this run where they follow on), so that stopping
        a --resume loses nothing an earlier run did. `rest`: the earlier rows of the
        input's rows not read yet."""
        while self.pending:
            entry = self.pending.popleft()
            if entry.status and not entry.original:
                self._write(entry.cells, entry.phone, entry.status, entry.detail)
            elif entry.before is not None:
                self._write_before(entry.before)
            else:
                return
        for before in rest:
            if before is None:
                return
            self._write_before(before)

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

    def _write_before(self, before: Previous) -> None:
        self._write(before.cells, before.phone, before.status, before.detail)


# --- Beside the results: where they go, the reason recorded for --resume -------------


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


def record_reason(out: Path, reason: str | None) -> None:
    path = reason_file(out)
    part = path.with_name(path.name + ".part")
    try:
        part.write_text(json.dumps({"reason": reason}, ensure_ascii=False) + "\n", "utf-8")
        os.replace(part, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- The summary ---------------------------------------------------------------------


def rate(per_second: float) -> str:
    """A rate as the summary and the progress bar show it: whole numbers, but for a
    slow one, which would show as 0."""
    shown = f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.1f}"
    return f"{shown} numbers/s"


def summary(counts: Counts, rows: int, seconds: float, out: Path, interrupted: bool) -> str:
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
