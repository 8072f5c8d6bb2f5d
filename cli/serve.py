"""`endcontact run | web | worker | check web|worker`: the service's processes, and
their health checks for containers."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from cli.options import PORT, PROCESSES
from cli.preflight import check_servers, listen
from cli.servers import server_env, servers
from cli.supervisor import cli_command, stopped_by, supervise, web_on
from shared import logs
from shared.broker import Broker
from shared.settings import Settings

# One more than the cores: each worker waits on Redis for part of every task, and a
# third process fills those waits on two cores (measured: bench/README.md).
DEFAULT_WORKERS = (os.cpu_count() or 1) + 1
log = logging.getLogger("endcontact.cli")


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    logs.configure()
    # The port first, before any server is started or joined: a taken one ends the
    # command here. (uvicorn's own bind, after the app's start-up, failed into a
    # shutdown that never ended.)
    if args.listen_fd is not None:
        listener = socket.socket(fileno=args.listen_fd)
    else:
        listener = listen(args.host, args.port)
    with listener, servers(settings) as resolved:
        if args.workers > 1:
            # N processes of one web each on the same socket, as `run` starts its web
            # and `worker` its workers: each accepts for itself (cli.accepting), which
            # uvicorn's own supervisor's children would not.
            return supervise([web_on(listener)] * args.workers, server_env(resolved))
        host, port = listener.getsockname()[:2]
        log.info("web listening on %s:%s", host, port, extra={"host": host, "port": port})
        # The factory reads its settings from the environment, as in compose.
        os.environ.update(server_env(resolved))
        return _serve(settings, listener)


def _serve(settings: Settings, listener: socket.socket) -> int:
    """One uvicorn process on `listener`, until a signal stops it."""
    import uvicorn

    from cli.accepting import Server

    config = uvicorn.Config(
        "api.app:create_app_from_env",
        factory=True,
        # Its lines carry the request path, and the lookup path is a phone number;
        # api.middleware logs each request with its route instead.
        access_log=False,
        # uvicorn's own lines go through our JSON logging (shared.logs).
        log_config=None,
        server_header=False,
        # In-flight requests finish within their deadline; give them that long.
        timeout_graceful_shutdown=int(settings.result_timeout) + 5,
    )
    server = Server(config)
    # Stopped by a signal, it raises that signal again once shut down: main() says
    # which (KeyboardInterrupt, Terminated). That raise goes through asyncio's own
    # SIGINT handler, and once in a CI run it was lost (exit status 0 after Ctrl-C):
    # the signal the server noted says it all the same.
    server.run(sockets=[listener])
    return 0 if server.stopped_by is None else stopped_by(server.stopped_by)


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
        code = app.work(
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
        code = 0
    return stopped_by(signal.Signals[stopping[0]]) if stopping else code


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from cli.run import run_all

    logs.configure()
    # The port, then the servers, before anything says it runs: either missing is one
    # line and exit status 1, having started nothing that stays.
    with listen(args.host, args.port) as listener, servers(settings) as resolved:
        check_servers(resolved)
        return run_all(server_env(resolved), listener, args.host, args.port, args.concurrency)


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


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`run`, `web`, `worker` and `check` with its subcommands."""

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
    web.add_argument("--workers", type=PROCESSES, default=1, metavar="N", help="web processes")
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
