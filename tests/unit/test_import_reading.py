"""`endcontact import` reading its input: the CSV's dialects and encodings, the numbers'
column, unreadable files, and --resume pairing an earlier results file with its input
(cli/importer/reading.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.importer import command
from cli.importer.errors import UsageError
from cli.importer.reading import CsvInput, InputRow, ResultsInput, delimiter, number_column, paired
from cli.importer.results import (
    ENDED,
    FAILED,
    Previous,
)
from shared.settings import Settings
from tests.unit.importing import csv_file, import_args, read

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
