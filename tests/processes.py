"""Starting and stopping the service's real processes for the tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

import httpx
import redis

from shared.embedded import BROKER_ARGS, free_port, local_url, start_server, stop_server
from tests.helpers import TLS, clean_env, wait_until

ROOT = Path(__file__).resolve().parent.parent


def spawn(
    args: list[str], env: dict[str, str], log: Path, module: str = "cli"
) -> subprocess.Popen[bytes]:
    """`python -m MODULE ARGS` (`endcontact`'s by default) with `env` added, output to
    `log`, in its own session."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(
    ready: Callable[[], object], process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    """Until `ready()`; fails at once, with the log, if `process` exits first."""
    wait_until(ready, timeout, f"{process.args!r} ready", watch=[process], logs=log.read_text)


def http_ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1, verify=TLS).status_code == 200
    except httpx.HTTPError:
        return False


def worker_ready(log: Path) -> bool:
    return " ready." in log.read_text(errors="replace")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def start_web(env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`endcontact web` on a free port; returns its base URL once it answers."""
    port = free_port()
    process = spawn(["web", f"--port={port}"], env, log)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ready(base), process, log)
    return base, process


class Stack:
    """A private store, broker, workers and web for tests that kill and restart them,
    or that need settings of their own (`settings`, added to each process's environment).
    Used as a context manager, it is stopped at the end of the block.

    With `broker=False`, one server is both (REDIS_URL alone, as before the split)."""

    def __init__(
        self,
        directory: Path,
        timeout: float = 2.0,
        redis_args: tuple[str, ...] = (),
        *,
        broker: bool = True,
        broker_args: tuple[str, ...] = BROKER_ARGS,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.settings = dict(settings or {})
        # Server options on top of the embedded defaults (later ones win).
        self.redis_args = redis_args
        self.broker_args = broker_args
        self.port = free_port()
        self.url = local_url(self.port)
        self.broker_port = free_port() if broker else self.port
        # The queue, results and heartbeats: the store's own URL without a broker.
        self.broker_url = local_url(self.broker_port)
        self.timeout = timeout
        self.redis: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self.base = ""
        self._client: redis.Redis | None = None
        self._broker_client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        """One client of the stack's Redis for the test (it reconnects after a restart)."""
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, decode_responses=True)
        return self._client

    @property
    def broker_client(self) -> redis.Redis:
        """One client of the stack's broker (the store's server when not split)."""
        if self._broker_client is None:
            self._broker_client = redis.Redis.from_url(self.broker_url, decode_responses=True)
        return self._broker_client

    @property
    def split(self) -> bool:
        return self.broker_port != self.port

    @property
    def env(self) -> dict[str, str]:
        env = {"REDIS_URL": self.url, "ENDCONTACT_RESULT_TIMEOUT": str(self.timeout)}
        if self.split:
            env["ENDCONTACT_BROKER_URL"] = self.broker_url
        return {**env, **self.settings}

    def start_redis(self) -> None:
        self.redis = start_server(self.directory / "valkey", self.port, extra_args=self.redis_args)

    def start_broker(self) -> None:
        self.broker = start_server(
            self.directory / "broker", self.broker_port, extra_args=self.broker_args
        )

    def start_worker(self, concurrency: int = 1) -> None:
        log = self.directory / "worker.log"
        log.touch()
        before = log.read_text(errors="replace").count(" ready.")
        self.worker = spawn(["worker", f"--concurrency={concurrency}"], self.env, log)
        wait_for(
            lambda: log.read_text(errors="replace").count(" ready.") >= before + concurrency,
            self.worker,
            log,
        )

    def start_web(self) -> None:
        self.base, self.web = start_web(self.env, self.directory / "web.log")

    def start(self, *, concurrency: int = 1) -> Self:
        """The servers, a worker of `concurrency` processes (none with 0), the web."""
        self.start_redis()
        if self.split:
            self.start_broker()
        if concurrency:
            self.start_worker(concurrency)
        self.start_web()
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        for process in (self.web, self.worker):
            if process is not None:
                stop(process)
        for server in (self.broker, self.redis):
            if server is not None:
                stop_server(server)

    def logs(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.directory.glob("*.log"))
        )
