"""Child processes started, restarted when they crash, and stopped together."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

# Warm shutdown takes up to the request deadline plus a margin; past this, kill.
STOP_TIMEOUT = 20.0
# A child that keeps dying is broken, not unlucky: give up rather than spin.
MAX_RESTARTS_PER_MINUTE = 5
log = logging.getLogger("endcontact.supervisor")


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def stopped_by(signum: int) -> int:
    """The exit status of a command a signal stopped, as a shell reports one it killed:
    130 after Ctrl-C (SIGINT), 143 after SIGTERM."""
    return 128 + signum


@dataclass(frozen=True)
class Command:
    argv: list[str]
    # Descriptors the child inherits: `run`'s listening socket, for its web.
    pass_fds: tuple[int, ...] = ()

    def __str__(self) -> str:
        return " ".join(self.argv[2:])


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, get SIGTERM when the supervisor dies,
    even by SIGKILL, instead of living on as an orphan nobody stops."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6").prctl(pr_set_pdeathsig, signal.SIGTERM)


def cli_command(*args: str, pass_fds: tuple[int, ...] = ()) -> Command:
    return Command([sys.executable, "-m", "cli", *args], pass_fds)


def web_on(listener: socket.socket) -> Command:
    """A web process serving on `listener`, which it inherits (`web --listen-fd`)."""
    fd = listener.fileno()
    return cli_command("web", f"--listen-fd={fd}", pass_fds=(fd,))


class Supervisor:
    def __init__(self, commands: list[Command], env: dict[str, str]) -> None:
        self._commands = commands
        self._env = {**os.environ, **env}
        self._children: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
        self._restarts: list[float] = []

    def _start(self, index: int) -> None:
        # Own sessions: a terminal's Ctrl-C reaches only the supervisor, which stops
        # each child once (a second SIGINT would make Celery abandon its tasks).
        command = self._commands[index]
        self._children[index] = subprocess.Popen(
            command.argv,
            env=self._env,
            pass_fds=command.pass_fds,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def start(self) -> None:
        for index in range(len(self._commands)):
            self._start(index)

    def exited(self) -> str | None:
        """A child that has exited, and how; None while all run."""
        for command, child in zip(self._commands, self._children, strict=True):
            if child is not None and child.poll() is not None:
                return f"{command} exited with {child.returncode}"
        return None

    def restart_crashed(self) -> bool:
        """Restart children that exited; False when they crash too often to go on."""
        for index, child in enumerate(self._children):
            if child is not None and child.poll() is not None:
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < 60] + [now]
                if len(self._restarts) > MAX_RESTARTS_PER_MINUTE:
                    log.error("children keep crashing; stopping")
                    return False
                log.warning(
                    "%s exited with %s; restarting", self._commands[index], child.returncode
                )
                self._start(index)
        return True

    def stop(self) -> None:
        # In reverse order of start: the web first, so nothing new arrives while the
        # workers finish what they hold.
        for child in reversed(self._children):
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in reversed(self._children):
            if child is None:
                continue
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def supervise(
    commands: list[Command],
    env: dict[str, str],
    on_started: Callable[[Supervisor], bool] | None = None,
) -> int:
    """Run until SIGINT or SIGTERM, then stop the children; stopped_by(the signal).
    `on_started` returns False if the service did not come up: 1, having stopped all."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(commands, env)
    code = 0
    try:
        supervisor.start()
        if on_started is not None and not on_started(supervisor):
            code = 1
        while code == 0:
            time.sleep(0.2)
            if not supervisor.restart_crashed():
                code = 1
    except _Stop as stop:
        code = stopped_by(stop.signum)
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
