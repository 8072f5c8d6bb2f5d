"""`endcontact export`: a campaign's marks as CSV, as the API exports them."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TextIO

from cli.servers import open_store
from shared.apikeys import Scope
from shared.marks import CSV_HEADER
from shared.settings import Settings
from shared.store import Store


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """A campaign's marks as CSV, the same as the API's export, to --out or stdout."""
    scope = Scope(args.company, args.campaign)
    with open_store(settings) as store:
        if args.out is None:
            try:
                _write_csv(store, scope, sys.stdout)
            except BrokenPipeError:
                # `| head`: the reader has all it wants; say nothing more, even at exit.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
        else:
            # Written aside and renamed when whole: a file named --out is never a part.
            part = f"{args.out}.part"
            try:
                # newline="": the rows end in CRLF already (RFC 4180), as the API's do.
                with open(part, "w", encoding="utf-8", newline="") as out:
                    _write_csv(store, scope, out)
                os.replace(part, args.out)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(part)
    return 0


def _write_csv(store: Store, scope: Scope, out: TextIO) -> None:
    out.write(CSV_HEADER)
    for chunk in store.export(scope):
        out.write(chunk)
    out.flush()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`export`."""
    export = commands.add_parser("export", help="a campaign's marks as CSV")
    export.add_argument("--company", required=True)
    export.add_argument("--campaign", required=True)
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(handler=cmd_export)
