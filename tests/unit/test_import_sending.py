"""`endcontact import` sending and writing results, in process against a stand-in for the
client: invalid rows never sent, repeats sent once, results in input order with the
input's columns, bounded rows behind a slow batch, what Ctrl-C leaves, the summary's
rate (cli/importer/sending.py, results.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.importer import results, sending
from cli.importer.errors import Fatal
from cli.importer.reading import InputRow
from cli.importer.results import (
    ENDED,
    FAILED,
    INVALID,
    Previous,
    results_header,
    safe_cell,
)
from cli.importer.sending import Importer
from shared.events import MAX_NUMBERS as BATCH
from tests.unit.importing import Row, e164, numbers

# --- the import ----------------------------------------------------------------------


class Service:
    """Stands in for the client inside the process: records each batch; every number
    ends, but those in `failing`; `hold` keeps batches unanswered until released."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.retry_fors: list[float] = []
        self.failing = failing or set()
        self.hold: asyncio.Event | None = None
        self.fatal_after: int | None = None

    async def __call__(self, numbers: list[str], retry_for: float) -> list[str | None]:
        self.batches.append(list(numbers))
        self.retry_fors.append(retry_for)
        if self.fatal_after is not None and len(self.batches) > self.fatal_after:
            raise Fatal("the service refused the key")
        if self.hold is not None:
            await self.hold.wait()
        return ["kept failing" if n in self.failing else None for n in numbers]


def rows_of(
    texts: list[str], before: list[Previous] | None = None
) -> Iterator[tuple[InputRow, Previous | None]]:
    previous = list(before or [])
    for i, text in enumerate(texts):
        yield InputRow(i + 2, text, [text]), previous[i] if i < len(previous) else None


def run(
    texts: list[str],
    service: Service,
    before: list[Previous] | None = None,
    concurrency: int = 4,
) -> list[Row]:
    written: list[Row] = []
    job = Importer(
        send=service,
        region="US",
        write=lambda row: written.append(tuple(row)),
        concurrency=concurrency,
        retry_for=30,
    )
    asyncio.run(job.run(rows_of(texts, before)))
    return written


def test_invalid_rows_are_reported_and_never_sent() -> None:
    texts = [*numbers(0, 10), "(555) 555-1234", "", "  ", "call me", *numbers(10, 45)]
    service = Service()
    written = run(texts, service)
    assert [len(batch) for batch in service.batches] == [50, 5]
    assert [row[0] for row in written] == texts
    assert written[10] == (
        "(555) 555-1234",
        "",
        INVALID,
        "not a valid phone number (default region US)",
    )
    assert written[11] == ("", "", INVALID, "empty")
    assert written[12] == ("  ", "", INVALID, "empty")
    assert written[13] == ("call me", "", INVALID, "not a phone number")
    ended = [row for row in written if row[2] == ENDED]
    assert [row[1] for row in ended] == [e164(n) for n in numbers(0, 55)]
    assert all(row[3] == "" for row in ended)


def test_a_repeated_number_is_sent_once_and_every_row_says_so() -> None:
    texts = ["(509) 555-0001", "+1 509 555 0002", "+15095550001", *numbers(3, 60), "509.555.0002"]
    service = Service()
    written = run(texts, service)
    sent = [number for batch in service.batches for number in batch]
    assert sorted(sent) == sorted(set(sent))
    assert len(sent) == 62
    assert written[2] == ("+15095550001", "+15095550001", ENDED, "duplicate of row 2")
    assert written[-1] == ("509.555.0002", "+15095550002", ENDED, "duplicate of row 3")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1 509 555 0001", "'+1 509 555 0001"),
        ("+1509555000", "+1509555000"),  # E.164: as it is
        ("+", "'+"),
        ("+\u0661\u0662", "'+\u0661\u0662"),  # digits, but not 0-9
        ("+15095550001\n", "'+15095550001\n"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=1", "'=1"),  # made safe already: unchanged
        (" =1", " =1"),
        ("(509) 555-0001", "(509) 555-0001"),
        ("", ""),
    ],
)
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(cell: str, written: str) -> None:
    assert safe_cell(cell) == written


def test_formulas_in_the_input_come_back_as_text() -> None:
    texts = ['=HYPERLINK("http://x","y")', "+1 509 555 0001", "+15095550002", "@cmd"]
    written = run(texts, Service())
    assert written == [
        ('\'=HYPERLINK("http://x","y")', "", INVALID, "not a phone number"),
        ("'+1 509 555 0001", "+15095550001", ENDED, ""),
        ("+15095550002", "+15095550002", ENDED, ""),
        ("'@cmd", "", INVALID, "not a phone number"),
    ]


def test_a_repeat_of_a_failed_number_failed_too() -> None:
    texts = ["(509) 555-0001", "(509) 555-0002", "+1 509 555 0001"]
    written = run(texts, Service(failing={"+15095550001"}))
    assert written[0] == ("(509) 555-0001", "+15095550001", FAILED, "kept failing")
    assert written[1][2] == ENDED
    assert written[2] == (
        "'+1 509 555 0001",
        "+15095550001",
        FAILED,
        "duplicate of row 2: kept failing",
    )


def test_results_are_in_input_order_whatever_order_batches_finish_in() -> None:
    """The first batch is answered last: every row still comes out in input order."""
    texts = [*numbers(0, 50), "nonsense", *numbers(50, 120)]

    class SlowFirst(Service):
        async def __call__(self, numbers: list[str], retry_for: float) -> list[str | None]:
            if not self.batches:
                self.batches.append(list(numbers))
                # Until every other batch has been answered.
                while len(self.batches) < 4:
                    await asyncio.sleep(0)
                return [None] * len(numbers)
            return await super().__call__(numbers, retry_for)

    service = SlowFirst()
    written = run(texts, service)
    assert [row[0] for row in written] == texts
    assert len(service.batches) == 4


def test_many_rows_held_behind_a_slow_batch_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows read while an early batch is unanswered wait in memory, but never more than
    MAX_PENDING: the partial batch is sent and reading waits."""
    monkeypatch.setattr(sending, "MAX_PENDING", 40)
    texts = ["(509) 555-0001", *["nonsense"] * 200, *numbers(2, 100)]
    service = Service()
    written = run(texts, service, concurrency=1)
    assert [row[0] for row in written] == texts
    # The first number went alone: the rows behind it filled the window.
    assert service.batches[0] == ["+15095550001"]


def test_the_outage_window_shortens_later_batches() -> None:
    """Nothing ended yet: each batch gets what is left of retry_for since the start."""
    service = Service(failing={e164(n) for n in numbers(0, 200)})
    run(numbers(0, 200), service, concurrency=1)
    assert all(0 <= seconds <= 30 for seconds in service.retry_fors)
    assert service.retry_fors == sorted(service.retry_fors, reverse=True)


def test_resume_keeps_finished_rows_and_sends_the_rest() -> None:
    texts = [*numbers(0, 3), "junk", *numbers(3, 3), "(509) 555-0000"]
    before = [
        Previous(["(509) 555-0000"], "+15095550000", ENDED, ""),
        Previous(["(509) 555-0001"], "+15095550001", FAILED, "no answer"),
        Previous(["(509) 555-0002"], "+15095550002", ENDED, ""),
        Previous(["junk"], "", INVALID, "not a phone number"),
    ]
    service = Service()
    written = run(texts, service, before)
    assert service.batches == [["+15095550001", *[e164(n) for n in numbers(3, 3)]]]
    assert written[0] == ("(509) 555-0000", "+15095550000", ENDED, "")
    assert written[1] == ("(509) 555-0001", "+15095550001", ENDED, "")
    assert written[3] == ("junk", "", INVALID, "not a phone number")
    # A repeat of a number an earlier run ended: not sent either.
    assert written[-1] == ("(509) 555-0000", "+15095550000", ENDED, "duplicate of row 2")


def stopped(
    texts: list[str], before: list[Previous] | None = None, *, fatal: bool = False
) -> tuple[list[Row], Service]:
    """The import cancelled (as Ctrl-C does) once its first batch is answered, the second
    never answered; or, `fatal`, the second batch raising Fatal."""
    written: list[Row] = []
    service = Service()
    job = Importer(
        send=service,
        region="US",
        write=lambda row: written.append(tuple(row)),
        concurrency=1,
    )

    class Holding(Service):
        async def __call__(self, numbers: list[str], retry_for: float) -> list[str | None]:
            service.batches.append(list(numbers))
            if len(service.batches) == 1:
                return [None] * len(numbers)
            if fatal:
                raise Fatal("refused")
            await asyncio.Event().wait()
            raise AssertionError("never answered")

    job.send = Holding()

    async def main() -> None:
        task = asyncio.ensure_future(job.run(rows_of(texts, before)))
        while len(service.batches) < 2:
            await asyncio.sleep(0)
        if not fatal:
            task.cancel()
        with pytest.raises(Fatal if fatal else asyncio.CancelledError):
            await task

    asyncio.run(main())
    return written, service


def test_stopped_the_rows_finished_in_order_are_written() -> None:
    texts = [*numbers(0, BATCH), "junk", *numbers(BATCH, 70)]
    written, _ = stopped(texts)
    assert [row[0] for row in written] == [*texts[:BATCH], "junk"]
    assert {row[2] for row in written[:BATCH]} == {ENDED}


def test_a_fatal_answer_stops_the_import_with_the_rows_so_far() -> None:
    texts = [*numbers(0, BATCH), *numbers(BATCH, 70)]
    written, service = stopped(texts, fatal=True)
    assert [row[0] for row in written] == texts[:BATCH]
    assert len(service.batches) == 2


def test_stopping_a_resume_keeps_what_the_earlier_run_did() -> None:
    """Rows after the stop are written as the results file resumed from had them, so a
    next --resume does not send again what was ended before."""
    texts = numbers(0, 200)
    before = [
        Previous([text], e164(text), FAILED if i < 120 else ENDED, "x" if i < 120 else "")
        for i, text in enumerate(texts[:150])
    ]
    written, service = stopped(texts, before)
    assert len(service.batches) == 2
    assert [row[0] for row in written] == texts[:150]
    assert [row[2] for row in written[:50]] == [ENDED] * 50
    assert [row[2:] for row in written[50:120]] == [(FAILED, "x")] * 70
    assert [row[2:] for row in written[120:]] == [(ENDED, "")] * 30


# --- the results keep the input's columns -------------------------------------------


@pytest.mark.parametrize(
    ("header", "width", "results"),
    [
        (["id", "phone"], 2, ["id", "phone", "phoneNumber", "status", "detail"]),
        # Ours renamed where the input has the name (any case, spaces around ignored).
        (
            ["id", "phoneNumber", " Status "],
            3,
            ["id", "phoneNumber", " Status ", "phoneNumber_result", "status_result", "detail"],
        ),
        (
            ["detail", "detail_result"],
            2,
            ["detail", "detail_result", "phoneNumber", "status", "detail_result_result"],
        ),
        # A row wider than the header: nameless columns, as a spreadsheet shows them.
        (["phone"], 3, ["phone", "", "", "phoneNumber", "status", "detail"]),
        # Header cells are cells: made safe too.
        (["=cmd", "phone"], 2, ["'=cmd", "phone", "phoneNumber", "status", "detail"]),
    ],
)
def test_the_results_header_is_the_inputs_then_ours(
    header: list[str], width: int, results: list[str]
) -> None:
    assert results_header(header, width) == results


def test_every_input_column_is_written_back_in_order_then_the_outcome() -> None:
    written: list[Row] = []
    job = Importer(
        send=Service(),
        region="US",
        write=lambda row: written.append(tuple(row)),
        width=3,
    )
    rows = [
        (InputRow(2, "(509) 555-0001", ["id-1", "(509) 555-0001", "Jane"]), None),
        # Short: empty cells up to the header's width, so the outcome is in its columns.
        (InputRow(3, "nonsense", ["id-2", "nonsense"]), None),
        # Any column a spreadsheet would run is written as text.
        (InputRow(4, "+1 509 555 0003", ["=1+2", "+1 509 555 0003", "@me"]), None),
    ]
    asyncio.run(job.run(iter(rows)))
    assert written == [
        ("id-1", "(509) 555-0001", "Jane", "+15095550001", ENDED, ""),
        ("id-2", "nonsense", "", "", INVALID, "not a phone number"),
        ("'=1+2", "'+1 509 555 0003", "'@me", "+15095550003", ENDED, ""),
    ]


# --- the summary -------------------------------------------------------------------


def test_a_rate_only_of_numbers_this_run_finished() -> None:
    counts = results.Counts(ended=3, invalid=1, done=4)
    line = results.summary(counts, 4, 0.5, Path("r.csv"), interrupted=False)
    assert (
        line == "ended 3, invalid 1, failed 0 of 4 rows in 0.5 s (8.0 numbers/s); results in r.csv"
    )
    # A --resume with nothing left to do: no "0 numbers/s".
    counts = results.Counts(ended=4, done=0)
    line = results.summary(counts, 4, 0.2, Path("r.csv"), interrupted=False)
    assert line == "ended 4, invalid 0, failed 0 of 4 rows in 0.2 s; results in r.csv"
    line = results.summary(results.Counts(), 200, 3.0, Path("r.csv"), interrupted=True)
    assert line.startswith("interrupted after 0 of 200 rows (ended 0, invalid 0, failed 0); ")
    assert results.rate(12_345.6) == "12,346 numbers/s"
    assert results.rate(0.25) == "0.2 numbers/s"
