"""`endcontact import`'s pure parts: reading the CSV, choosing the column, checking rows,
batches, repeats, results in input order, --resume's pairing, what Ctrl-C leaves.

Over 400 lines while cli/importer.py is one module: to be split as it is (reading,
sending, writing results)."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.importer import command, results, sending
from cli.importer.command import check_reason
from cli.importer.errors import Fatal, UsageError
from cli.importer.reading import CsvInput, InputRow, ResultsInput, delimiter, number_column, paired
from cli.importer.results import (
    ENDED,
    FAILED,
    INVALID,
    Previous,
    default_out,
    reason_file,
    results_header,
    safe_cell,
)
from cli.importer.sending import Importer
from cli.main import parser
from shared.events import MAX_NUMBERS as BATCH
from shared.settings import Settings

Row = tuple[str, ...]


def csv_file(tmp_path: Path, content: str | bytes, name: str = "numbers.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def read(path: Path) -> tuple[str, list[InputRow]]:
    with CsvInput(path) as source:
        return source.column_name, list(source.rows())


def numbers(first: int, count: int) -> list[str]:
    return [f"(509) 555-{n:04d}" for n in range(first, first + count)]


def e164(text: str) -> str:
    digits = "".join(c for c in text if c.isdigit())
    return f"+1{digits}"


# --- the input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column"),
    [
        (["name", "phoneNumber"], 1),
        (["name", "phone"], 1),
        (["Name", " PHONE ", "x"], 1),
        (["PhoneNumber", "phone"], 0),
        (["phone", "phonenumber"], 1),  # phoneNumber before phone, wherever it is
        (["number", "name"], 0),
        (["name", "mobile phone"], 0),
    ],
)
def test_the_numbers_column_is_phone_number_or_phone_else_the_first(
    header: list[str], column: int
) -> None:
    assert number_column(header) == column


def test_a_header_with_semicolons_and_no_comma_is_read_with_semicolons() -> None:
    assert delimiter("name;phone\r\n") == ";"
    assert delimiter("name\tphone\n") == "\t"
    assert delimiter("name,phone;x\n") == ","
    assert delimiter("phone\n") == ","


def test_bom_crlf_quotes_and_blank_rows(tmp_path: Path) -> None:
    content = (
        "\ufeffName,Phone\r\n"
        '"Doe, Jane","(509) 555-0001"\r\n'
        "\r\n"
        '"two\r\nlines",+1 509 555 0002\r\n'
        ",,\r\n"
        "short\r\n"
        'x,""\r\n'
        "y,(509) 555-0003"  # no line end at the end
    )
    column, rows = read(csv_file(tmp_path, content))
    assert column == "Phone"
    assert rows == [
        InputRow(2, "(509) 555-0001", ["Doe, Jane", "(509) 555-0001"]),
        # Row 3 is blank: skipped, but counted as a spreadsheet counts it.
        InputRow(4, "+1 509 555 0002", ["two\r\nlines", "+1 509 555 0002"]),
        # Row 5 has only empty cells: blank too.
        InputRow(6, "", ["short"]),  # a row without the column: an empty number
        InputRow(7, "", ["x", ""]),
        InputRow(8, "(509) 555-0003", ["y", "(509) 555-0003"]),
    ]


def test_lines_ended_by_a_lone_cr(tmp_path: Path) -> None:
    _, rows = read(csv_file(tmp_path, 'phone\r(509) 555-0001\r"(509)\r555-0002"\r'))
    assert [row.text for row in rows] == ["(509) 555-0001", "(509)\r555-0002"]


def test_semicolon_file_from_a_spreadsheet(tmp_path: Path) -> None:
    column, rows = read(csv_file(tmp_path, "Name;phoneNumber\nJane;(509) 555-0001\n"))
    assert (column, rows) == (
        "phoneNumber",
        [InputRow(2, "(509) 555-0001", ["Jane", "(509) 555-0001"])],
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "has no header row"),
        (b"\r\n\r\n", "has no header row"),
        (b"phone\n(509) 555-0001\n\xff\xfe\n", "is not UTF-8 text (row 3)"),
        (b'phone\n"(509) 555-0001\n', "is not a readable CSV (row 2)"),
        (b"\xff\xfephone\n", "is not UTF-8 text (row 1)"),
    ],
)
def test_an_unreadable_file_is_a_usage_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = csv_file(tmp_path, content)
    with pytest.raises(UsageError, match=re.escape(message)):
        read(path)


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        read(tmp_path / "nope.csv")


# --- the options -----------------------------------------------------------------


def import_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["import", *argv])


def test_the_key_is_no_option() -> None:
    """A key on the command line would show in `ps`: the environment is the only way."""
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    command = commands.choices["import"]
    flags = [flag for action in command._actions for flag in action.option_strings]
    assert flags
    assert not [flag for flag in flags if "key" in flag.lower()]
    with pytest.raises(SystemExit):
        import_args("numbers.csv", "--key", "secret")


def test_options_need_the_key_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    args = import_args(str(csv_file(tmp_path, "phone\n")))
    with pytest.raises(UsageError, match="set ENDCONTACT_API_KEY"):
        command.options(settings, args, {})
    with pytest.raises(UsageError, match="set ENDCONTACT_API_KEY"):
        command.options(settings, args, {"ENDCONTACT_API_KEY": " "})
    chosen = command.options(settings, args, {"ENDCONTACT_API_KEY": "ec_x"})
    assert chosen.key == "ec_x"
    assert chosen.out == tmp_path / "numbers.results.csv"
    assert chosen.url == "http://127.0.0.1:8000"
    assert chosen.retry_for == 60
    assert chosen.region == "US"


def test_options_refuse_what_cannot_run(tmp_path: Path) -> None:
    settings = Settings.from_env({"ENDCONTACT_DEFAULT_REGION": "GB"})
    env = {"ENDCONTACT_API_KEY": "ec_x"}
    source = str(csv_file(tmp_path, "phone\n"))
    with pytest.raises(UsageError, match="no such file"):
        command.options(settings, import_args(str(tmp_path / "nope.csv")), env)
    with pytest.raises(UsageError, match="no such file"):
        command.options(settings, import_args(str(tmp_path)), env)
    with pytest.raises(UsageError, match="must not be the input"):
        command.options(settings, import_args(source, "--out", source), env)
    with pytest.raises(UsageError, match="no such directory for the results"):
        command.options(settings, import_args(source, "--out", str(tmp_path / "no" / "r.csv")), env)
    with pytest.raises(UsageError, match="--concurrency"):
        command.options(settings, import_args(source, "--concurrency", "0"), env)
    with pytest.raises(UsageError, match="--retry-for"):
        command.options(settings, import_args(source, "--retry-for", "-1"), env)
    with pytest.raises(UsageError, match="at most 200 characters; it has 201"):
        command.options(settings, import_args(source, "--reason", "x" * 201), env)
    assert command.options(settings, import_args(source), env).region == "GB"


def test_reason_is_checked_as_the_service_does() -> None:
    assert check_reason(None) is None
    assert check_reason("x" * 200) == "x" * 200
    with pytest.raises(UsageError):
        check_reason("x" * 201)
    # What undecodable bytes in argv become.
    with pytest.raises(UsageError, match="UTF-8"):
        check_reason("caf\udce9")


def test_results_go_beside_the_input() -> None:
    assert default_out(Path("/data/leads.csv")) == Path("/data/leads.results.csv")
    assert default_out(Path("leads")) == Path("leads.results.csv")


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


# --- --resume's pairing ---------------------------------------------------------


def pair(tmp_path: Path, source: str, results: str) -> list[Previous | None]:
    """What --resume pairs with each row of the input `source`, from `results`."""
    rows_at = csv_file(tmp_path, source)
    results_at = csv_file(tmp_path, results, "numbers.results.csv")
    with CsvInput(rows_at) as rows, ResultsInput(results_at) as previous:
        return [before for _, before in paired(rows, previous)]


def test_a_results_file_pairs_with_its_input(tmp_path: Path) -> None:
    pairs = pair(
        tmp_path,
        "phone\n(509) 555-0001\n(509) 555-0002\n(509) 555-0003\n",
        "phone,phoneNumber,status,detail\r\n(509) 555-0001,+15095550001,ended,\r\n"
        "(509) 555-0002,+15095550002,failed,no answer\r\n",
    )
    assert pairs == [
        Previous(["(509) 555-0001"], "+15095550001", ENDED, ""),
        Previous(["(509) 555-0002"], "+15095550002", FAILED, "no answer"),
        None,
    ]


def test_a_results_file_pairs_with_its_input_made_safe(tmp_path: Path) -> None:
    # The input's cells as the results file writes them back.
    pairs = pair(
        tmp_path,
        'name,phone\n@x,=1+2\nb,"=HYPERLINK(""http://x"",""y"")"\n',
        "name,phone,phoneNumber,status,detail\r\n'@x,'=1+2,,invalid,not a phone number\r\n"
        'b,"\'=HYPERLINK(""http://x"",""y"")",,invalid,not a phone number\r\n',
    )
    assert [before and before.cells for before in pairs] == [
        ["'@x", "'=1+2"],
        ["b", '\'=HYPERLINK("http://x","y")'],
    ]


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ("phone\r\n", "is not a results file"),
        ("phone,phoneNumber,status,detail\r\n(509) 555-0009,,ended,\r\n", "differ at row 2"),
        ("phone,phoneNumber,status,detail\r\n(509) 555-0001,,done,\r\n", "row 2 is not a result"),
        ("phone,phoneNumber,status,detail\r\n(509) 555-0001,,ended\r\n", "row 2 is not a result"),
        (
            "phone,phoneNumber,status,detail\r\n(509) 555-0001,+15095550001,ended,\r\n"
            "(509) 555-0002,+15095550002,ended,\r\n",
            "has more rows",
        ),
    ],
)
def test_results_of_another_file_are_refused(tmp_path: Path, results: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        pair(tmp_path, "phone\n(509) 555-0001\n", results)


def test_results_of_an_input_with_other_columns_are_refused(tmp_path: Path) -> None:
    """The number's cells match, but not the columns: the results of another file."""
    source = csv_file(tmp_path, "id,phone\n7,(509) 555-0001\n")
    csv_file(tmp_path, "phone,phoneNumber,status,detail\r\n", "numbers.results.csv")
    chosen = command.options(
        Settings.from_env({}), import_args(str(source), "--resume"), {"ENDCONTACT_API_KEY": "k"}
    )
    with pytest.raises(UsageError, match="is not a results file of this input: its header is not"):
        command.survey(chosen)


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


# --- --resume keeps the first run's reason -------------------------------------------


def resume_args(tmp_path: Path, *argv: str) -> command.Options:
    source = csv_file(tmp_path, "phone\n(509) 555-0001\n")
    csv_file(tmp_path, "phone,phoneNumber,status,detail\r\n", "numbers.results.csv")
    return command.options(
        Settings.from_env({}),
        import_args(str(source), "--resume", *argv),
        {"ENDCONTACT_API_KEY": "ec_x"},
    )


@pytest.mark.parametrize(
    ("recorded", "argv", "reason"),
    [
        ('{"reason": "spring opt-outs"}', [], "spring opt-outs"),
        ('{"reason": "spring opt-outs"}', ["--reason=spring opt-outs"], "spring opt-outs"),
        ('{"reason": null}', [], None),
        # Results of a version that recorded no reason: the one given.
        (None, ["--reason=given"], "given"),
        (None, [], None),
    ],
)
def test_resume_goes_on_with_the_first_runs_reason(
    tmp_path: Path, recorded: str | None, argv: list[str], reason: str | None
) -> None:
    if recorded is not None:
        csv_file(tmp_path, recorded, "numbers.results.reason.json")
    assert resume_args(tmp_path, *argv).reason == reason


@pytest.mark.parametrize(
    ("recorded", "given", "message"),
    [
        (
            '{"reason": "spring opt-outs"}',
            "autumn",
            '--reason "autumn" is not the first run\'s reason ("spring opt-outs", recorded in ',
        ),
        ('{"reason": null}', "autumn", '--reason "autumn" is not the first run\'s reason (none, '),
        ("spring", "spring", "is not a reason record"),
        ('{"reason": 3}', "3", "is not a reason record"),
    ],
)
def test_resume_with_another_reason_is_refused(
    tmp_path: Path, recorded: str, given: str, message: str
) -> None:
    csv_file(tmp_path, recorded, "numbers.results.reason.json")
    with pytest.raises(UsageError, match=re.escape(message)):
        resume_args(tmp_path, f"--reason={given}")


def test_without_resume_the_reason_given_is_used(tmp_path: Path) -> None:
    csv_file(tmp_path, '{"reason": "old"}', "numbers.results.reason.json")
    source = csv_file(tmp_path, "phone\n(509) 555-0001\n")
    chosen = command.options(
        Settings.from_env({}), import_args(str(source), "--reason=new"), {"ENDCONTACT_API_KEY": "k"}
    )
    assert chosen.reason == "new"


def test_the_reason_is_recorded_beside_the_results() -> None:
    assert reason_file(Path("/d/leads.results.csv")) == Path("/d/leads.results.reason.json")


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
