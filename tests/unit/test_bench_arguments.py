"""A benchmark's counts on its command line (bench/arguments.py): what is not a count
is told, never a traceback."""

from __future__ import annotations

import sys

import pytest

from bench.arguments import counts

DOC = "The thing: `python -m bench.thing [N] [ROUNDS]`."


def read(monkeypatch: pytest.MonkeyPatch, *args: str, more: bool = False) -> list[int]:
    monkeypatch.setattr(sys, "argv", ["bench.thing", *args])
    return counts(DOC, [3000, 4], more=more)


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), [3000, 4]), (("10",), [10, 4]), (("10", "0"), [10, 0])],
)
def test_counts_not_given_are_the_defaults(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], expected: list[int]
) -> None:
    assert read(monkeypatch, *args) == expected


def test_counts_past_the_defaults_only_where_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read(monkeypatch, "10", "2", "8", "24", more=True) == [10, 2, 8, 24]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_what_it_takes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        read(monkeypatch, flag)
    assert exited.value.code == 0
    assert capsys.readouterr().out == DOC + "\n"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("ten",), "not a count: 'ten'"),
        (("10", "-1"), "not a count: '-1'"),
        (("1", "2", "3"), "at most 2 counts"),
    ],
)
def test_what_is_not_a_count_is_told(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    reason: str,
) -> None:
    with pytest.raises(SystemExit) as exited:
        read(monkeypatch, *args)
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == f"{DOC}\nerror: {reason}\n"
