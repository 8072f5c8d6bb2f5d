"""The counts a benchmark takes on its command line (`python -m bench.reads [MARKS]
[ROUNDS]`), read once for all of them: --help, or anything that is not a count, prints
what the command takes (its docstring) instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def counts(doc: str | None, defaults: Sequence[int], more: bool = False) -> list[int]:
    """The counts given, then the defaults of those not given; with `more`, counts past
    the defaults too (the importer's concurrencies). Exits 0 after printing `doc` for
    -h or --help, 2 after printing it to stderr for anything else it cannot read."""
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(doc)
        sys.exit(0)
    wrong = [arg for arg in args if not arg.isdigit()]
    if wrong or (len(args) > len(defaults) and not more):
        reason = f"not a count: {wrong[0]!r}" if wrong else f"at most {len(defaults)} counts"
        print(f"{doc}\nerror: {reason}", file=sys.stderr)
        sys.exit(2)
    given = [int(arg) for arg in args]
    return given + list(defaults[len(given) :])
