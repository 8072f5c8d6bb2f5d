"""The command line's options, each default in its help, a value that cannot work
refused in one line with exit status 2; and the port `run` and `web` take first."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterator

import pytest

import cli.main
from cli.main import parser
from cli.preflight import Unavailable, listen


def _commands(command: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield command
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _commands(sub)


def _said(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def test_every_default_is_in_its_commands_help() -> None:
    checked = 0
    for command in _commands(parser()):
        text = " ".join(command.format_help().split())  # as wrapped, on one line
        for action in command._actions:
            default = action.default
            if (
                not action.option_strings
                or action.help == argparse.SUPPRESS
                or default in (None, False, "", argparse.SUPPRESS)
            ):
                continue
            shown = _said(default)
            assert any(f"{says} {shown}" in text for says in ("default:", "default", "here")), (
                command.prog,
                action.option_strings,
            )
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["run", "--port", "99999"], "argument --port: must be a whole number from 1 to 65535"),
        (["run", "--port", "0"], "argument --port: must be a whole number from 1 to 65535"),
        (["web", "--port", "80a"], "argument --port: must be a whole number from 1 to 65535"),
        (["run", "--concurrency", "0"], "argument --concurrency: must be a whole number from 1"),
        (["worker", "--concurrency", "-3"], "argument --concurrency: must be a whole number"),
        (["web", "--workers", "1_000"], "argument --workers: must be a whole number from 1"),
        (["keys", "revoke"], "the following arguments are required: KEY_ID"),
    ],
)
def test_an_option_that_cannot_work_is_one_line_and_status_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parser().parse_args(argv)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    command = " ".join(["endcontact", *argv[: 2 if argv[0] == "keys" else 1]])
    assert out == ""
    assert err.startswith(f"{command}: {said}")
    assert err.endswith(f" (see {command} --help)\n")
    assert err.count("\n") == 1


def test_the_limits_themselves_are_accepted() -> None:
    args = parser().parse_args(["run", "--port", "65535", "--concurrency", "1024"])
    assert (args.port, args.concurrency) == (65535, 1024)
    assert parser().parse_args(["web", "--port", "1", "--workers", "1"]).port == 1


def test_a_port_taken_by_listen_is_taken_for_the_next() -> None:
    """What `run` holds while its servers start, before its web serves there: a second
    `run` must find the port taken then too."""
    with listen("127.0.0.1", 0) as first:
        port = first.getsockname()[1]
        with pytest.raises(Unavailable, match=f"^port {port} on 127.0.0.1 is taken"):
            listen("127.0.0.1", port).close()


def test_sigterm_while_the_arguments_are_read_is_a_143(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM a few milliseconds into a command, as its arguments were read, ended it
    with a stack trace and status 1 (found with issue 20)."""

    def read_when_signalled() -> argparse.ArgumentParser:
        signal.raise_signal(signal.SIGTERM)
        return parser()

    monkeypatch.setattr(cli.main, "parser", read_when_signalled)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main.main(["check", "web"]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
