"""`endcontact run | web | worker | check web|worker | keys create|list|revoke |
webhooks list|delete | export | import`."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn, TextIO

import redis

from cli import importer
from cli.preflight import Unavailable, check_servers, listen
from cli.supervisor import cli_command, stopped_by, supervise
from shared import logs
from shared.apikeys import PREFIX as SECRET_PREFIX
from shared.apikeys import ApiKey, Scope
from shared.broker import Broker
from shared.embedded import EmbeddedServerError, embedded_broker, embedded_redis
from shared.marks import CSV_HEADER
from shared.settings import Settings, SettingsError, shown, whole_number
from shared.store import Store, feed_name

# One more than the cores: each worker waits on Redis for part of every task, and a
# third process fills those waits on two cores (measured: bench/README.md).
DEFAULT_WORKERS = (os.cpu_count() or 1) + 1
log = logging.getLogger("endcontact.cli")


@contextlib.contextmanager
def servers(settings: Settings, *, store: bool = True, broker: bool = True) -> Iterator[Settings]:
    """The settings with their servers: REDIS_URL when set, otherwise the data
    directory's embedded server, and beside it its broker unless ENDCONTACT_BROKER_URL
    is set. `store`/`broker` False: a command that does not need that one."""
    with contextlib.ExitStack() as started:
        if settings.redis_url is None:
            url = started.enter_context(embedded_redis(settings.data_dir)) if store else None
            broker_url = settings.broker_url
            if broker and broker_url is None:
                broker_url = started.enter_context(embedded_broker(settings.data_dir))
            settings = replace(settings, redis_url=url, broker_url=broker_url)
        yield settings


def server_env(settings: Settings) -> dict[str, str]:
    """The resolved servers, for child processes that read them from the environment."""
    env = {"REDIS_URL": settings.require_redis_url()}
    if settings.broker_url is not None:
        env["ENDCONTACT_BROKER_URL"] = settings.broker_url
    return env


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    logs.configure()
    # The port first, before any server is started or joined: a taken one ends the
    # command here. (uvicorn's own bind, after the app's start-up, failed into a
    # shutdown that never ended.)
    if args.listen_fd is not None:
        listener = socket.socket(fileno=args.listen_fd)
    else:
        listener = listen(args.host, args.port)
    with listener, servers(settings) as resolved:
        # The factory reads its settings from the environment, as in compose.
        os.environ.update(server_env(resolved))
        config = uvicorn.Config(
            "api.app:create_app_from_env",
            factory=True,
            workers=args.workers,
            # Its lines carry the request path, and the lookup path is a phone number;
            # api.middleware logs each request with its route instead.
            access_log=False,
            # uvicorn's own lines go through our JSON logging (shared.logs).
            log_config=None,
            server_header=False,
            # In-flight requests finish within their deadline; give them that long.
            timeout_graceful_shutdown=int(settings.result_timeout) + 5,
        )
        host, port = listener.getsockname()[:2]
        log.info("web listening on %s:%s", host, port, extra={"host": host, "port": port})
        return _serve(config, listener)


def _serve(config: Any, listener: socket.socket) -> int:
    """uvicorn on `listener`: one process, or a supervisor of config.workers."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if config.workers == 1:
        # Stopped by a signal, it raises that signal again once shut down: main() says
        # which (KeyboardInterrupt, Terminated).
        uvicorn.Server(config).run(sockets=[listener])
        return 0
    processes = Multiprocess(config, sockets=[listener])
    # Its handlers, in place now, stop the processes and forget the signal: note it.
    caught: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _noting(signal.getsignal(signum), caught))
    processes.run()
    return stopped_by(caught[0]) if caught else 0


def _noting(handler: Any, caught: list[int]) -> Callable[[int, FrameType | None], None]:
    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        handler(signum, frame)

    return note


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    logs.configure()
    with servers(settings) as resolved:
        if args.concurrency == 1:
            return _solo_worker(resolved)
        # N single-process workers, not one prefork worker with N children: a task is
        # one Redis write, so the prefork pool's pipe to its children costs more than
        # the task itself (see bench/README.md for the numbers).
        commands = [cli_command("worker", "--concurrency=1") for _ in range(args.concurrency)]
        # Celery's warning of root once, here, not once per worker (worker/privileges.py).
        from worker.privileges import check_for_group

        return supervise(commands, {**server_env(resolved), **check_for_group()})


def _solo_worker(settings: Settings) -> int:
    from celery.signals import worker_shutting_down

    from shared.tasks import QUEUE
    from worker.app import create_celery

    # Celery handles SIGINT and SIGTERM itself and exits 0 after either: note which.
    stopping: list[str] = []

    def note(sig: str, **kwargs: object) -> None:
        stopping.append(sig)

    worker_shutting_down.connect(note, weak=False)
    app = create_celery(settings)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                # What runs: one process, one task at a time. Celery would otherwise say
                # (and prefetch for) as many as the machine has cores.
                "--concurrency=1",
                f"--queues={QUEUE}",
                "--loglevel=INFO",
                f"--hostname=endcontact-{os.getpid()}@%h",
                # No clock sync or revoke lists to share between workers: skipping them
                # makes start-up faster and keeps broadcast chatter off the broker.
                "--without-gossip",
                "--without-mingle",
            ]
        )
    except SystemExit:
        if not stopping:
            raise
    return stopped_by(signal.Signals[stopping[0]]) if stopping else 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from cli.run import run_all

    logs.configure()
    # The port, then the servers, before anything says it runs: either missing is one
    # line and exit status 1, having started nothing that stays.
    with listen(args.host, args.port) as listener, servers(settings) as resolved:
        check_servers(resolved)
        return run_all(server_env(resolved), listener, args.host, args.port, args.concurrency)


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    with _store(settings) as store:
        try:
            key, secret = store.create_key(args.company, args.campaign, args.label)
        except ValueError as exc:
            print(f"endcontact: {exc}", file=sys.stderr)
            return 2
    print(f"Created {key.id} for company {key.scope.company!r}, campaign {key.scope.campaign!r}.")
    print("The key is shown this once and stored only as a hash:")
    print(secret)
    return 0


KEY_COLUMNS = ("id", "label", "company", "campaign", "createdAt", "revokedAt")


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    with _store(settings) as store:
        keys = [_key_fields(key) for key in store.list_keys()]
    if args.json:
        print(json.dumps(keys, ensure_ascii=False, separators=(",", ":")))
    else:
        _print_table(KEY_COLUMNS, keys)
    return 0


def _key_fields(key: ApiKey) -> dict[str, Any]:
    """KEY_COLUMNS of `key`; None for no label, or not revoked."""
    return {
        "id": key.id,
        "label": key.label or None,
        "company": key.scope.company,
        "campaign": key.scope.campaign,
        "createdAt": key.created_at,
        "revokedAt": key.revoked_at,
    }


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    if args.key_id.strip().startswith(SECRET_PREFIX):
        # Said without the argument: a secret in a terminal's scrollback is one more copy.
        print(
            "endcontact: that is a key's secret; revoke takes its id, key_…, "
            "see `endcontact keys list`",
            file=sys.stderr,
        )
        return 2
    with _store(settings) as store:
        key = store.revoke_key(args.key_id)
        if key is None:
            print(f"endcontact: no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        disable = not args.keep_webhooks
        hooks = store.webhooks().key_revoked(key.id, feed_name(key.scope), disable=disable)
    print(f"Revoked {key.id} at {key.revoked_at}.")
    if not hooks:
        print(f"No webhook it created was {'disabled' if disable else 'kept'}.")
        return 0
    plural = "" if len(hooks) == 1 else "s"
    if disable:
        print(f"Disabled {len(hooks)} webhook{plural} it created (nothing more is sent to them):")
    else:
        print(f"Kept {len(hooks)} webhook{plural} it created:")
    for hook in hooks:
        print("\t".join([hook.id, hook.scope.campaign, hook.url]))
    return 0


WEBHOOK_COLUMNS = ("id", "url", "events", "createdBy", "createdAt", "disabledAt")


def cmd_webhooks_list(settings: Settings, args: argparse.Namespace) -> int:
    with _store(settings) as store:
        hooks = store.webhooks().of_feed(feed_name(Scope(args.company, args.campaign)))
    if args.json:
        # The API's GET /api/v1/webhooks body, as the web writes it.
        body = {"webhooks": [hook.to_json() for hook in hooks]}
        print(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        return 0
    _print_table(WEBHOOK_COLUMNS, [hook.to_json() for hook in hooks])
    return 0


def _print_table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Tab-separated, a header first: each row's `columns`, as its --json has them."""
    print("\t".join(columns))
    for row in rows:
        print("\t".join(_cell(row.get(column)) for column in columns))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return ",".join(value) if isinstance(value, list) else str(value)


def cmd_webhooks_delete(settings: Settings, args: argparse.Namespace) -> int:
    scope = Scope(args.company, args.campaign)
    with _store(settings) as store:
        webhooks = store.webhooks()
        hook = webhooks.get(args.webhook_id, scope)
        if hook is not None:
            webhooks.delete(hook, feed_name(scope))
    where = f"company {scope.company!r}, campaign {scope.campaign!r}"
    if hook is None:
        print(f"endcontact: no webhook {args.webhook_id!r} in {where}", file=sys.stderr)
        return 1
    print(f"Deleted {hook.id} ({hook.url}) of {where}.")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """A campaign's marks as CSV, the same as the API's export, to --out or stdout."""
    scope = Scope(args.company, args.campaign)
    with _store(settings) as store:
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


def cmd_check_web(settings: Settings, args: argparse.Namespace) -> int:
    """For a container healthcheck: the web on this host answers /healthz."""
    from cli.run import healthy

    return 0 if healthy(args.url) else 1


def cmd_check_worker(settings: Settings, args: argparse.Namespace) -> int:
    """For a container healthcheck: a worker on this host beat recently.

    Worker names end in @<hostname> (cmd_worker), and a container's hostname is its
    own, so this asks the broker about this container's workers only.
    """
    with servers(settings, store=False) as resolved:
        broker = Broker.connect(resolved)
        try:
            alive = broker.live_workers_on(socket.gethostname())
        finally:
            broker.close()
    if alive == 0:
        print("endcontact: no live worker on this host", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    with servers(settings, broker=False) as resolved:
        store = Store.connect(resolved)
        try:
            yield store
        finally:
            store.close()


class Terminated(BaseException):
    """SIGTERM, raised where the command is, as Ctrl-C raises KeyboardInterrupt: what
    it holds is let go on the way out (an embedded server it started is stopped)."""


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


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


def _version() -> str:
    try:
        return importlib.metadata.version("endcontact")
    except importlib.metadata.PackageNotFoundError:  # a checkout never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    # Typed as the base class: importer.add_parser takes its subparsers as such.
    top: argparse.ArgumentParser = Parser(prog="endcontact", description=__doc__)
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = top.add_subparsers(dest="command", required=True)

    def serve_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--host", default="127.0.0.1", help="address to listen on")
        command.add_argument("--port", type=PORT, default=8000, help="port to listen on")

    processes_help = "worker processes (default: cores + 1, here %(default)s)"
    run = commands.add_parser("run", help="web, a worker and (without REDIS_URL) Redis")
    serve_options(run)
    run.add_argument(
        "--concurrency", type=PROCESSES, default=DEFAULT_WORKERS, metavar="N", help=processes_help
    )
    run.set_defaults(handler=cmd_run)

    web = commands.add_parser("web", help="the HTTP front end")
    serve_options(web)
    web.add_argument("--workers", type=PROCESSES, default=1, metavar="N", help="uvicorn processes")
    # `run`'s listening socket, inherited: its web serves there instead of binding.
    web.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    web.set_defaults(handler=cmd_web)

    worker = commands.add_parser("worker", help="Celery workers")
    worker.add_argument(
        "--concurrency", type=PROCESSES, default=DEFAULT_WORKERS, metavar="N", help=processes_help
    )
    worker.set_defaults(handler=cmd_worker)

    check = commands.add_parser("check", help="health checks for containers (exit 0 or 1)")
    check_commands = check.add_subparsers(dest="check_command", required=True)
    check_web = check_commands.add_parser("web", help="the web answers its /healthz")
    check_web.add_argument("--url", default="http://127.0.0.1:8000", help="the web's base URL")
    check_web.set_defaults(handler=cmd_check_web)
    check_commands.add_parser(
        "worker", help="a worker on this host sent a heartbeat in the last 10 s"
    ).set_defaults(handler=cmd_check_worker)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; prints it last")
    create.add_argument("--company", required=True)
    create.add_argument("--campaign", required=True)
    create.add_argument("--label", default="", help="a name for it, shown by keys list")
    create.set_defaults(handler=cmd_keys_create)
    key_list = key_commands.add_parser(
        "list", help="id, label, company, campaign, createdAt, revokedAt; never a secret"
    )
    key_list.add_argument(
        "--json",
        action="store_true",
        help="an array of objects with those fields, null for none (default: a table)",
    )
    key_list.set_defaults(handler=cmd_keys_list)
    revoke = key_commands.add_parser(
        "revoke", help="refuse the key from now on and disable the webhooks it created"
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="its id, key_... (see keys list)")
    revoke.add_argument(
        "--keep-webhooks",
        action="store_true",
        help="keep the webhooks it created enabled (a rotation; default: disable them)",
    )
    revoke.set_defaults(handler=cmd_keys_revoke)

    webhooks = commands.add_parser("webhooks", help="list and delete a campaign's webhooks")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listing = webhook_commands.add_parser(
        "list", help="id, url, events, createdBy, createdAt, disabledAt; never a secret"
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="the body GET /api/v1/webhooks answers (default: a table)",
    )
    delete = webhook_commands.add_parser(
        "delete", help="as the API's DELETE: nothing more is sent to it"
    )
    delete.add_argument("webhook_id")
    for command in (listing, delete):
        command.add_argument("--company", required=True)
        command.add_argument("--campaign", required=True)
    listing.set_defaults(handler=cmd_webhooks_list)
    delete.set_defaults(handler=cmd_webhooks_delete)

    export = commands.add_parser("export", help="a campaign's marks as CSV")
    export.add_argument("--company", required=True)
    export.add_argument("--campaign", required=True)
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(handler=cmd_export)

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
