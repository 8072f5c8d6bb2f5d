"""`endcontact import FILE` against the real service: the command as a user runs it.

One file over 400 lines: one command, run as a process (on a terminal or piped) against
the session's web or a stack whose parts come and go; its pure parts are unit-tested in
tests/unit/test_import_*.py."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from endcontact_client import Client
from shared.embedded import free_port
from shared.metrics import METRICS_KEY, sample
from shared.store import Store
from shared.tasks import QUEUE
from tests.conftest import Caller, new_caller
from tests.helpers import clean_env, terminal_output, wait_until
from tests.processes import ROOT, Stack, http_ready, spawn, stop, wait_for

pytestmark = pytest.mark.timeout(180)

# The results of number_file: its columns, then ours (the input has a phoneNumber).
LEADS_HEADER = ["name", "phoneNumber", "phoneNumber_result", "status", "detail"]


def environment(key: str | None, **extra: str) -> dict[str, str]:
    given = {} if key is None else {"ENDCONTACT_API_KEY": key}
    return clean_env({**given, **extra})


def command(source: Path, url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli", "import", str(source), f"--url={url}", *args]


def endcontact_import(
    source: Path, url: str, *args: str, key: str | None, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(source, url, *args),
        cwd=ROOT,
        env=environment(key),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def running_import(
    source: Path, url: str, *args: str, key: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The import started, its output to `log`; killed at the end if still running."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command(source, url, *args),
            cwd=ROOT,
            env=environment(key),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def results(path: Path, header: list[str] = LEADS_HEADER) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == header
    return rows[1:]


def national(n: int) -> str:
    """The n-th of a range of valid US numbers, as people write them."""
    return f"(509) {200 + n // 10_000:03d}-{n % 10_000:04d}"


def e164(n: int) -> str:
    return f"+1509{200 + n // 10_000:03d}{n % 10_000:04d}"


def ended_leads(numbers: range) -> list[list[str]]:
    """number_file's rows as the results have them, each ended."""
    return [[f"Lead {n}", national(n), e164(n), "ended", ""] for n in numbers]


def number_file(path: Path, first: int, count: int) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["name", "phoneNumber"])
        writer.writerows([f"Lead {n}", national(n)] for n in range(first, first + count))
    return path


def ended(base: str, caller: Caller, numbers: list[str]) -> set[str]:
    with Client(base, caller.secret) as api:
        return {mark.phone_number for mark in api.check(numbers).ended}


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- with the session's service ------------------------------------------------------


def test_every_row_is_reported_in_order_and_only_valid_numbers_are_sent(
    web: str, caller: Caller, tmp_path: Path
) -> None:
    """A spreadsheet's CSV (BOM, CRLF, quotes, blank rows, the column named PHONE): the
    invalid rows sit in the first batch of 50 without sinking it, a number repeated in
    the same batch and in a later one is sent once, and the results have every row,
    every column of it, none that a spreadsheet would run as a formula."""
    rows: list[list[str]] = [["Name", "PHONE", "Note"]]
    expected: list[list[str]] = []
    for n in range(120):
        rows.append([f"Doe, {n}", national(n), "line one\r\nline two"])
        expected.append([f"Doe, {n}", national(n), "line one\r\nline two", e164(n), "ended", ""])
        if n == 3:
            rows.append(["bad", "(555) 555-1234", ""])
            expected.append(
                [
                    *["bad", "(555) 555-1234", ""],
                    *["", "invalid", "not a valid phone number (default region US)"],
                ]
            )
            rows.append(["empty", "", ""])
            expected.append(["empty", "", "", "", "invalid", "empty"])
            rows.append(["letters", "call me"])  # a short row: an empty cell written
            expected.append(["letters", "call me", "", "", "invalid", "not a phone number"])
        if n == 5:
            rows.append(["again", f"+1 509 200 {1:04d}", ""])  # row 3's number
            expected.append(
                ["again", f"'+1 509 200 {1:04d}", "", e164(1), "ended", "duplicate of row 3"]
            )
        if n == 100:
            rows.append(["later", national(7), ""])
            expected.append(["later", national(7), "", e164(7), "ended", "duplicate of row 13"])
            # A spreadsheet would run them: written back as text, in every column.
            rows.append(["formula", '=HYPERLINK("http://x","y")', "@SUM(A1)"])
            expected.append(
                [
                    *["formula", '\'=HYPERLINK("http://x","y")', "'@SUM(A1)"],
                    *["", "invalid", "not a phone number"],
                ]
            )
        if n == 50:
            rows.append(["", "", ""])  # a blank row: no result row
    source = tmp_path / "leads.csv"
    with open(source, "w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerows(rows)
    out_path = tmp_path / "leads.results.csv"

    run = endcontact_import(source, web, "--reason=imported from the CRM", key=caller.secret)

    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stderr == ""
    (line,) = run.stdout.splitlines()
    assert line.startswith("ended 122, invalid 4, failed 0 of 126 rows in ")
    assert line.endswith(f" numbers/s); results in {out_path}")
    assert (
        results(out_path, ["Name", "PHONE", "Note", "phoneNumber", "status", "detail"]) == expected
    )
    assert ended(web, caller, [e164(n) for n in range(120)]) == {e164(n) for n in range(120)}
    with Client(web, caller.secret) as api:
        (event,) = api.history(e164(0)).events
    assert event.reason == "imported from the CRM"


def test_the_first_column_without_a_phone_header(web: str, caller: Caller, tmp_path: Path) -> None:
    source = tmp_path / "numbers.csv"
    source.write_text(f"Mobile,Name\n{national(500)},Jane\n{national(501)},John\n")
    out = tmp_path / "out" / "done.csv"
    out.parent.mkdir()

    run = endcontact_import(source, web, f"--out={out}", key=caller.secret)

    assert run.returncode == 0, run.stderr
    assert results(out, ["Mobile", "Name", "phoneNumber", "status", "detail"]) == [
        [national(500), "Jane", e164(500), "ended", ""],
        [national(501), "John", e164(501), "ended", ""],
    ]
    assert not (tmp_path / "numbers.results.csv").exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing file", "no such file"),
        ("no key", "set ENDCONTACT_API_KEY to the API key"),
        ("reason too long", "--reason must be at most 200 characters; it has 201"),
        ("not UTF-8", "is not UTF-8 text (row 3); save it as CSV UTF-8"),
        ("empty file", "has no header row"),
        ("quote left open", "is not a readable CSV (row 3)"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    web: str, caller: Caller, tmp_path: Path, case: str, message: str
) -> None:
    source = tmp_path / "numbers.csv"
    content = {
        "not UTF-8": b"phone\n(509) 555-0001\nJos\xe9,(509) 555-0002\n",
        "empty file": b"",
        "quote left open": b'phone\n(509) 555-0001\n"(509) 555-0002\n(509) 555-0003\n',
    }.get(case, b"phone\n(509) 555-0001\n")
    if case != "missing file":
        source.write_bytes(content)
    args = ["--reason=" + "x" * 201] if case == "reason too long" else []
    key = None if case == "no key" else caller.secret

    run = endcontact_import(source, web, *args, key=key)

    assert run.returncode == 2
    assert message in one_line(run.stderr)
    assert run.stdout == ""
    assert not (tmp_path / "numbers.results.csv").exists()
    # Nothing was sent: the check of a number of the file says not ended.
    assert ended(web, caller, ["(509) 555-0001"]) == set()


def test_a_key_the_service_refuses_is_one_line_and_exit_2(web: str, tmp_path: Path) -> None:
    source = number_file(tmp_path / "numbers.csv", 600, 3)

    run = endcontact_import(source, web, key="ec_not-a-key")

    assert run.returncode == 2
    line = one_line(run.stderr)
    assert "the service refused the key in ENDCONTACT_API_KEY (401 Unauthorized" in line
    assert "ec_not-a-key" not in line
    assert "results" not in line
    # No results file with only a header, nor a reason for it.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["numbers.csv"]


def test_a_progress_bar_on_a_terminal_and_one_summary_line_when_piped(
    web: str, caller: Caller, tmp_path: Path
) -> None:
    piped = endcontact_import(number_file(tmp_path / "piped.csv", 700, 300), web, key=caller.secret)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    (line,) = piped.stdout.splitlines()
    assert line.startswith("ended 300, invalid 0, failed 0 of 300 rows in ")
    assert "numbers/s); results in " in line
    assert "\x1b" not in piped.stdout

    output = on_a_terminal(
        command(number_file(tmp_path / "tty.csv", 1000, 300), web), environment(caller.secret)
    )
    # rich draws the bar on the terminal: cursor movement, the bar, numbers done, rate
    # and time left; then the same summary line.
    assert "\x1b[" in output
    assert "━" in output
    assert "300/300" in output
    assert "numbers/s" in output
    # Before its first rate: none shown, not a "-" or a "0".
    assert "- numbers/s" not in output
    assert " 0 numbers/s" not in output
    assert "left" in output
    assert "ended 300, invalid 0, failed 0 of 300 rows in " in output


def on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run with stdout and stderr on a pseudo-terminal of 120 columns; all it wrote."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**env, "TERM": "xterm-256color"},
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    try:
        chunks = list(terminal_output(controller))
    finally:
        os.close(controller)
        assert process.wait(60) == 0
    return b"".join(chunks).decode(errors="replace")


def test_ctrl_c_writes_the_results_so_far_and_resume_sends_exactly_the_rest(
    web: str, store: Store, tmp_path: Path
) -> None:
    caller = new_caller(store)
    # Another key of the same campaign for the test's own reads and writes, so that
    # they never meet the import's rate limit.
    own = new_caller(store, caller.key.scope.company, caller.key.scope.campaign)
    count = 10_000
    source = number_file(tmp_path / "numbers.csv", 20_000, count)
    out = tmp_path / "numbers.results.csv"
    part = tmp_path / "numbers.results.csv.part"
    log = tmp_path / "import.log"
    reason = "--reason=spring opt-outs"
    with running_import(
        source, web, "--concurrency=1", reason, key=caller.secret, log=log
    ) as process:

        def rows_written() -> int:
            return part.read_bytes().count(b"\n") - 1 if part.exists() else 0

        wait_until(lambda: rows_written() >= 500, 60, "500 rows written", watch=[process])
        # What `ps` shows of it: the key is not there.
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"import" in argv
        assert not [arg for arg in argv if caller.secret.encode() in arg]
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130, log.read_text()

    summary = log.read_text()
    assert "interrupted after " in summary
    assert "run again with --resume to finish" in summary
    assert "Traceback" not in summary
    first = results(out)
    done = len(first)
    assert 500 <= done < count
    assert first == ended_leads(range(20_000, 20_000 + done))

    # The rows ended so far were stored with the first run's reason: another is refused.
    other = endcontact_import(source, web, "--resume", "--reason=autumn", key=caller.secret)
    assert other.returncode == 2
    assert one_line(other.stderr) == (
        'endcontact: --reason "autumn" is not the first run\'s reason ("spring opt-outs", '
        f"recorded in {tmp_path / 'numbers.results.reason.json'}): --resume goes on with the "
        "first run's; leave --reason out"
    )
    assert results(out) == first

    # Every number of the file not ended now, whatever the first run did: what is ended
    # after --resume is what --resume sent.
    numbers = [e164(n) for n in range(20_000, 20_000 + count)]
    with Client(web, own.secret) as api:
        assert set(api.resume_contact(numbers).success) == set(numbers)
    assert ended(web, own, numbers) == set()

    # Without --reason: the first run's goes on.
    resumed = endcontact_import(source, web, "--resume", key=caller.secret)

    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert resumed.stdout.startswith(f"ended {count:,}, invalid 0, failed 0 of {count:,} rows")
    assert results(out) == ended_leads(range(20_000, 20_000 + count))
    assert ended(web, own, numbers) == set(numbers[done:])
    with Client(web, own.secret) as api:
        assert api.history(numbers[-1]).events[-1].reason == "spring opt-outs"


# --- with a service of its own -----------------------------------------------------------


@pytest.fixture
def servers_only(tmp_path: Path) -> Iterator[Stack]:
    """A private store and broker; the test starts the worker and web when it wants."""
    stack = Stack(tmp_path / "stack")
    stack.directory.mkdir()
    stack.start_redis()
    stack.start_broker()
    yield stack
    stack.stop()


def stack_caller(stack: Stack) -> Caller:
    return new_caller(Store(stack.client))


def test_a_service_down_at_the_start_is_ridden_out(servers_only: Stack, tmp_path: Path) -> None:
    stack = servers_only
    stack.start_worker()
    caller = stack_caller(stack)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    source = number_file(tmp_path / "numbers.csv", 0, 120)
    log = tmp_path / "import.log"
    with running_import(source, base, "--retry-for=60", key=caller.secret, log=log) as process:
        # The import has read its file and is sending (to nothing: connection refused).
        wait_until(
            lambda: (tmp_path / "numbers.results.csv.part").exists(),
            30,
            "the import started",
            watch=[process],
        )
        assert not http_ready(base)

        web_log = stack.directory / "web.log"
        stack.web = spawn(["web", f"--port={port}"], stack.env, web_log)
        wait_for(lambda: http_ready(base), stack.web, web_log)

        assert process.wait(90) == 0, log.read_text()
    assert results(tmp_path / "numbers.results.csv") == ended_leads(range(120))


def test_no_worker_then_a_worker_failures_are_retried(servers_only: Stack, tmp_path: Path) -> None:
    stack = servers_only
    stack.start_web()
    caller = stack_caller(stack)
    source = number_file(tmp_path / "numbers.csv", 0, 120)
    log = tmp_path / "import.log"
    with running_import(
        source, stack.base, "--retry-for=90", key=caller.secret, log=log
    ) as process:
        # The web has answered the import's first numbers as failures (no worker did them
        # in time): the import has them to retry.
        timeouts = sample("endcontact_numbers_total", {"outcome": "failure", "reason": "timeout"})
        wait_until(
            lambda: float(stack.client.hget(METRICS_KEY, timeouts) or 0) > 0,
            30,
            "numbers answered as failures",
            watch=[process],
        )

        stack.start_worker()

        assert process.wait(120) == 0, log.read_text()
    assert results(tmp_path / "numbers.results.csv") == ended_leads(range(120))


def test_failures_past_retry_for_are_failed_rows_then_resume_ends_them(
    servers_only: Stack, tmp_path: Path
) -> None:
    stack = servers_only
    stack.start_web()
    caller = stack_caller(stack)
    source = tmp_path / "numbers.csv"
    source.write_text(f"phone\n{national(0)}\nnonsense\n{national(1)}\n{national(0)}\n")

    run = endcontact_import(source, stack.base, "--retry-for=3", key=caller.secret)

    assert run.returncode == 1, run.stderr + run.stdout
    assert run.stdout.startswith("ended 0, invalid 1, failed 3 of 4 rows")
    header = ["phone", "phoneNumber", "status", "detail"]
    rows = results(tmp_path / "numbers.results.csv", header)
    assert [row[:3] for row in rows] == [
        [national(0), e164(0), "failed"],
        ["nonsense", "", "invalid"],
        [national(1), e164(1), "failed"],
        [national(0), e164(0), "failed"],
    ]
    assert rows[0][3].startswith("still failing after ")
    assert rows[3][3] == f"duplicate of row 2: {rows[0][3]}"

    stack.start_worker()
    again = endcontact_import(source, stack.base, "--resume", key=caller.secret)

    assert again.returncode == 0, again.stderr + again.stdout
    assert results(tmp_path / "numbers.results.csv", header) == [
        [national(0), e164(0), "ended", ""],
        ["nonsense", "", "invalid", "not a phone number"],
        [national(1), e164(1), "ended", ""],
        [national(0), e164(0), "ended", "duplicate of row 2"],
    ]


def test_stopped_without_a_worker(servers_only: Stack, tmp_path: Path) -> None:
    """Stopped while everything is failing: what is written is what finished, and the
    web is not left waiting (the rest is for --resume)."""
    stack = servers_only
    stack.start_web()
    caller = stack_caller(stack)
    source = number_file(tmp_path / "numbers.csv", 0, 200)
    log = tmp_path / "import.log"
    with running_import(source, stack.base, key=caller.secret, log=log) as process:
        broker = redis.Redis.from_url(stack.broker_url)
        wait_until(lambda: broker.llen(QUEUE) > 0, 30, "numbers queued", watch=[process])
        broker.close()
        stop(process, signal.SIGINT)
        assert process.returncode == 130, log.read_text()
    assert results(tmp_path / "numbers.results.csv") == []
    # No rate: it finished nothing (not "0 numbers/s").
    assert "interrupted after 0 of 200 rows (ended 0, invalid 0, failed 0); results so far in " in (
        log.read_text()
    )
