"""The parser every (sub)command uses, and the types of its options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from shared.settings import shown, whole_number


class DefaultsHelp(argparse.HelpFormatter):
    """Each option's default at the end of its help, unless the help says it already
    or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default == ""
            or default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every (sub)command's: defaults in its help, a usage error in one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _whole(least: int, most: int) -> Callable[[str], int]:
    """An option's type: a whole number from `least` to `most`, else a usage error."""

    def parse(raw: str) -> int:
        value = whole_number(raw, least, most)
        if value is None:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {least} to {most}, got {shown(raw)}"
            )
        return value

    return parse


# One type per kind of option. Up to 1024 processes: more is a typo, not a machine.
PORT = _whole(1, 65_535)
PROCESSES = _whole(1, 1024)
