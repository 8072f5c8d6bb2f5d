"""What a worker spends on tasks that expired in the queue: a queue filled with the
messages of requests that gave up on them (as the web publishes 50 a request), drained
by the same worker command, timed, with the workers' CPU a task.

    python -m bench.expired [--tasks 20000] [--workers 3]

Past saturation, tasks expire in the queue when the workers fall behind; what each
costs them to discard decides whether they catch up (docs/overload.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from api.publisher import TaskPublisher
from bench.cluster import ROOT, _wait, run_seconds
from shared.embedded import BROKER_ARGS, free_port, start_server, stop_server
from shared.tasks import QUEUE, task_id


def fill(broker: redis.Redis, tasks: int) -> None:
    """`tasks` messages whose expiry has passed, 50 to a request as the web sends them."""
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    past = datetime.now(UTC) - timedelta(minutes=1)
    for first in range(0, tasks, 50):
        listener = uuid.uuid4().hex
        count = min(50, tasks - first)
        ids = [task_id(listener, n) for n in range(count)]
        phones = [f"+1509555{n:04d}" for n in range(count)]
        args = [["bench", "expired", phone, "key", "request", ""] for phone in phones]
        broker.lpush(QUEUE, *publisher.messages(ids, args, ["['+15*******00']"] * count, past))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="endcontact-expired-"))
    store_port, broker_port = free_port(), free_port()
    servers = [
        start_server(work / "store", store_port),
        start_server(work / "broker", broker_port, extra_args=BROKER_ARGS),
    ]
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{store_port}/0",
        "ENDCONTACT_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0",
    }
    broker = redis.Redis(port=broker_port)
    fill(broker, args.tasks)
    log = open(work / "processes.log", "ab")  # noqa: SIM115
    command = [sys.executable, "-m", "cli", "worker", f"--concurrency={args.workers}"]
    started = time.perf_counter()
    workers = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        # From the first task taken to the last: start-up is not the discarding's.
        _wait(lambda: broker.llen(QUEUE) < args.tasks, workers, "the workers", timeout=120)
        began, cpu = time.perf_counter(), run_seconds(workers)
        _wait(lambda: broker.llen(QUEUE) == 0, workers, "the drain", timeout=600)
        seconds, cpu = time.perf_counter() - began, run_seconds(workers) - cpu
        print(
            f"{args.tasks} expired tasks, {args.workers} workers: {args.tasks / seconds:,.0f} "
            f"discarded a second, {1e6 * cpu / args.tasks:.0f} µs of the workers' CPU each "
            f"(start-up {began - started:.1f} s)"
        )
    finally:
        workers.terminate()
        workers.wait(30)
        log.close()
        broker.close()
        for server in servers:
            stop_server(server)


if __name__ == "__main__":
    main()
