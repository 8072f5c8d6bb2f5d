"""`endcontact import FILE`: end contact for every number of a CSV file.

The rows are read twice, streaming: once to check that the file (and, with --resume,
the results file) is readable and to count its rows, then to send them. Each row is
checked here with the service's own rules (shared.phones.to_e164) first, so an invalid
row is reported without being sent and never makes its batch of 50 a 400. A number
that comes again is sent once, with its first row. The results are the input's rows,
every column, each followed by its outcome, written in input order as rows finish, so
the file holds the rows done so far at any moment: what Ctrl-C leaves, and what
--resume goes on from (with the first run's --reason, recorded beside it).

This module is the command: its options, then the parts tied together (run). The
parts: reading.py (the input, the results resumed, each row checked), sending.py (the
batches through the client, retries, Ctrl-C), results.py (the results file in input
order, the reason beside it, the summary).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cli.importer.errors import Fatal, UsageError
from cli.importer.reading import CsvInput, ResultsInput, paired
from cli.importer.results import (
    default_out,
    rate,
    record_reason,
    results_header,
    resumed_reason,
    summary,
)
from cli.importer.sending import (
    DEFAULT_CONCURRENCY,
    DEFAULT_RETRY_FOR,
    KEY_VARIABLE,
    MAX_CONCURRENCY,
    ClientSend,
    Importer,
    run_until_signal,
    with_sender,
)
from shared.events import REASON_MAX, is_reason
from shared.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def check_reason(reason: str | None) -> str | None:
    """--reason, if the service would take it (shared.events.is_reason)."""
    if reason is None or is_reason(reason):
        return reason
    if len(reason) > REASON_MAX:
        raise UsageError(f"--reason must be at most {REASON_MAX} characters; it has {len(reason)}")
    # Bytes that are not UTF-8 in argv arrive as lone surrogates; the service refuses
    # those (api/body.py).
    raise UsageError("--reason must be UTF-8 text")


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

            sender = ClientSend(chosen.url, chosen.key, chosen.concurrency, chosen.reason)
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
                interrupted = run_until_signal(with_sender(sender, importer, paired(*inputs)))
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
    record_reason(chosen.out, chosen.reason)
    if fatal is not None:
        print(f"endcontact: {fatal}; results so far in {chosen.out}", file=sys.stderr)
        return EXIT_USAGE
    seconds = time.monotonic() - started
    print(summary(counts, rows, seconds, chosen.out, interrupted is not None))
    if interrupted is not None:
        return 128 + interrupted
    return EXIT_FAILED if counts.failed else EXIT_OK


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
