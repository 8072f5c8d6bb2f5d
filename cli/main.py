"""`endcontact run | web | worker | check web|worker | keys create|list|revoke |
webhooks list|delete | export | import`."""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import sys
from types import FrameType
from typing import NoReturn

import redis

from cli import export, importer, keys, serve, webhooks
from cli.options import Parser
from cli.preflight import Unavailable
from cli.supervisor import stopped_by
from shared.embedded import EmbeddedServerError
from shared.settings import Settings, SettingsError


class Terminated(BaseException):
    """SIGTERM, raised where the command is, as Ctrl-C raises KeyboardInterrupt: what
    it holds is let go on the way out (an embedded server it started is stopped)."""


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


def _version() -> str:
    try:
        return importlib.metadata.version("endcontact")
    except importlib.metadata.PackageNotFoundError:  # a checkout never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    # Typed as the base class: each command module's add_parser takes its subparsers
    # as such.
    top: argparse.ArgumentParser = Parser(prog="endcontact", description=__doc__)
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = top.add_subparsers(dest="command", required=True)
    serve.add_parsers(commands)
    keys.add_parser(commands)
    webhooks.add_parser(commands)
    export.add_parser(commands)
    importer.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    try:
        # Inside the try: a SIGTERM while the arguments are read is a 143 too, not a
        # stack trace and 1.
        signal.signal(signal.SIGTERM, _terminate)
        args = parser().parse_args(argv)
        settings = Settings.from_env()
        code: int = args.handler(settings, args)
    except (SettingsError, EmbeddedServerError) as exc:
        print(f"endcontact: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"endcontact: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"endcontact: Redis did not answer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return stopped_by(signal.SIGINT)
    except Terminated:
        return stopped_by(signal.SIGTERM)
    return code
