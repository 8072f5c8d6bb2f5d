"""`endcontact import`'s options: the key from the environment only, what cannot run,
the reason checked as the service checks it, where results go, and --resume keeping
the first run's reason (cli/importer/command.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cli.importer import command
from cli.importer.command import check_reason
from cli.importer.errors import UsageError
from cli.importer.results import (
    default_out,
    reason_file,
)
from cli.main import parser
from shared.settings import Settings
from tests.unit.importing import csv_file, import_args

# --- the options -----------------------------------------------------------------


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
