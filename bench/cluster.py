"""Starting one system under test: its own Redis-compatible server, worker and web."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import psutil
import redis
import redis.asyncio

from api.publisher import TaskPublisher
from bench.load import Numbers
from cli.run import healthy
from shared.apikeys import Scope
from shared.embedded import BROKER_ARGS, free_port, start_server, stop_server
from shared.keyspace import ended_key
from shared.phones import to_e164
from shared.store import Store
from shared.tasks import QUEUE, task_args

ROOT = Path(__file__).resolve().parent.parent


def _wait(check: object, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _tree(process: subprocess.Popen[bytes] | None) -> list[psutil.Process]:
    if process is None or process.poll() is not None:
        return []
    parent = psutil.Process(process.pid)
    return [parent, *parent.children(recursive=True)]


def rss_mib(process: subprocess.Popen[bytes] | None) -> float:
    """Resident memory of a process and all its children, in MiB."""
    total = 0
    for proc in _tree(process):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """CPU time (user + system) a process and its children have used so far."""
    total = 0.0
    for proc in _tree(process):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def run_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """CPU time a process and its children have used so far, by the scheduler's own
    account of every thread (/proc/PID/task/TID/schedstat, in ns), where Linux has it.
    cpu_seconds' user and system times are counted in clock ticks (10 ms) given to
    whatever runs at the tick: a server that works in bursts of microseconds, as
    valkey does, is counted by chance, and six of them at rest read 0 to 13 ms a second
    from one run to the next (measured, bench/store_cluster.py)."""
    total = 0.0
    for proc in _tree(process):
        try:
            for task in Path(f"/proc/{proc.pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
        except FileNotFoundError:  # gone, or a thread gone between the listing and now
            continue
        except (OSError, ValueError):  # no schedstat here
            return cpu_seconds(process)
    return total


class Cluster:
    """`with Cluster(dir, web=..., workers=...) as c:` runs until the block ends.

    web: None (no web), "endcontact" (`endcontact web`), or a uvicorn factory
    such as "bench.baselines:naive_app". worker: None, "endcontact" (`endcontact
    worker --concurrency N`) or "typical" (Celery's defaults, bench/typical.py).
    store_url: a store started elsewhere (a Valkey Cluster, bench/store_cluster.py)
    instead of a server of its own; env: more settings for the web and workers.
    """

    def __init__(
        self,
        data_dir: Path,
        web: str | None,
        worker: str | None,
        workers: int,
        *,
        store_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.web_target = web
        self.worker_kind = worker
        self.workers = workers
        self.port = free_port()
        self.store_url = store_url
        self.env = dict(env or {})
        self.redis_url = ""
        # The broker apart, as the embedded default and compose run it
        # (docs/durability.md); the baseline webs read REDIS_URL alone, so with them (our
        # worker behind the naive web included) one server is both.
        self.broker_url = ""
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self._log = open(data_dir / "processes.log", "ab")  # noqa: SIM115

    def __enter__(self) -> Cluster:
        try:
            if self.store_url is None:
                redis_port = free_port()
                self.redis = start_server(self.data_dir / "valkey", redis_port)
                self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
            else:
                self.redis_url = self.store_url
            self.broker_url = self.redis_url
            # A store started elsewhere may be a cluster, which no broker can be.
            if self.web_target in (None, "endcontact") or self.store_url is not None:
                broker_port = free_port()
                self.broker = start_server(
                    self.data_dir / "broker", broker_port, extra_args=BROKER_ARGS
                )
                self.broker_url = f"redis://127.0.0.1:{broker_port}/0"
            if self.worker_kind is not None:
                self.start_worker()
            if self.web_target is not None:
                self._start_web(self.web_target)
        except BaseException:
            # A failed or interrupted start stops what it had started.
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # SIGTERM, then SIGKILL past 30 s: a naive worker left with a backlog can take
        # longer than that to stop, and the next system must not wait for it.
        for process in (self.web, self.worker, self.broker, self.redis):
            if process is not None:
                stop_server(process, timeout=30)
        self._log.close()

    def create_key(self) -> str:
        """A new API key's secret, for company and campaign "bench"."""
        store = Store(redis.Redis.from_url(self.redis_url, decode_responses=True))
        return store.create_key("bench", "bench")[1]

    def fill_queue(self, scope: Scope, tasks: int) -> None:
        """Put `tasks` end-contact messages, for fresh numbers of `scope`, on the queue."""

        async def fill() -> None:
            client = redis.asyncio.Redis.from_url(self.broker_url, decode_responses=True)
            publisher = TaskPublisher(client)
            expires = datetime.now(UTC) + timedelta(minutes=10)
            messages = [
                publisher.message(str(uuid.uuid4()), task_args(scope, phone), "[]", expires)
                for phone in map(_e164, Numbers().take(tasks))
            ]
            for start in range(0, tasks, 1000):
                await publisher.publish(messages[start : start + 1000])
            await client.aclose()

        asyncio.run(fill())

    def drain_rate(self, scope: Scope, tasks: int, timeout: float) -> float:
        """Marks per second of `scope` from the first one until all `tasks` are marked
        (or `timeout` has passed): what the workers drain from a filled queue."""
        client = redis.Redis.from_url(self.redis_url)
        key = ended_key(scope)
        while (done := client.hlen(key)) == 0:
            time.sleep(0.002)
        started, first = time.perf_counter(), done
        deadline = started + timeout
        while (done := client.hlen(key)) < tasks and time.perf_counter() < deadline:
            time.sleep(0.005)
        rate = (done - first) / (time.perf_counter() - started)
        client.close()
        return rate

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        # The rate limiter runs (its cost is measured) but never stops the load.
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "ENDCONTACT_BROKER_URL": self.broker_url,
            "ENDCONTACT_RATE_LIMIT": "1000000000",
            **self.env,
        }
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker(self) -> None:
        log = self.data_dir / "processes.log"
        before = log.read_text(errors="replace").count(" ready.")
        if self.worker_kind == "typical":
            args = [
                "-m",
                "celery",
                "-A",
                "bench.typical",
                "worker",
                f"--queues={QUEUE}",
                f"--concurrency={self.workers}",
                "--loglevel=INFO",
            ]
            expected = 1
        else:
            args = ["-m", "cli", "worker", f"--concurrency={self.workers}"]
            expected = self.workers
        self.worker = self._spawn(args)
        _wait(
            lambda: log.read_text(errors="replace").count(" ready.") >= before + expected,
            self.worker,
            "worker",
        )

    def _start_web(self, target: str) -> None:
        if target == "endcontact":
            args = ["-m", "cli", "web", f"--port={self.port}"]
        else:
            args = [
                "-m",
                "uvicorn",
                target,
                "--factory",
                f"--port={self.port}",
                "--no-access-log",
                "--log-level=warning",
            ]
        self.web = self._spawn(args)
        _wait(lambda: healthy(f"http://127.0.0.1:{self.port}"), self.web, target)


def _e164(phone: str) -> str:
    # As the web hands numbers on: the worker takes nothing else.
    return to_e164(phone, "US")
