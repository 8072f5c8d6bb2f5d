"""Helpers of the importer's unit tests (test_import_*.py): input files, numbers and
the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.importer.reading import CsvInput, InputRow
from cli.main import parser

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


def import_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["import", *argv])
