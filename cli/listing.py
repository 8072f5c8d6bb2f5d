"""How the operator's `list` commands answer: a table, or with --json what the API
would."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_list(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], help: str, json_help: str
) -> argparse.ArgumentParser:
    """A `list` subcommand that shows `help`'s fields, or with --json `json_help`."""
    listing = commands.add_parser("list", help=help)
    listing.add_argument("--json", action="store_true", help=json_help)
    return listing


def print_json(value: object) -> None:
    """On one line, as the web writes its bodies."""
    print(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def print_table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Tab-separated, a header first: each row's `columns`, as its --json has them."""
    print("\t".join(columns))
    for row in rows:
        print("\t".join(_cell(row.get(column)) for column in columns))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return ",".join(value) if isinstance(value, list) else str(value)
