"""What Celery task events cost: `python -m bench.events [TASKS] [WORKERS] [ROUNDS]`.

Each run starts a fresh server and `endcontact worker`, turns task events on or off
by broadcast (`celery -A worker.celery_app control enable_events|disable_events`, as
Flower does), pre-fills the queue and measures the drain. On and off alternate, in
both orders, so that other load on the machine falls on both; CPU per task (worker
processes and Redis) moves less with that load than tasks per second do.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.arguments import counts
from bench.cluster import ROOT, Cluster, cpu_seconds
from shared.apikeys import Scope


def drain(events: bool, tasks: int, workers: int, directory: Path) -> tuple[float, float, float]:
    """Tasks per second, worker ms CPU per task, Redis ms CPU per task."""
    with Cluster(directory, None, "endcontact", workers) as cluster:
        verb = "enable_events" if events else "disable_events"
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "control", verb],
            cwd=ROOT,
            env={
                **os.environ,
                "REDIS_URL": cluster.redis_url,
                "ENDCONTACT_BROKER_URL": cluster.broker_url,
            },
            capture_output=True,
            timeout=60,
            check=True,
        )
        scope = Scope("bench", "events")
        worker_cpu, redis_cpu = cpu_seconds(cluster.worker), cpu_seconds(cluster.redis)
        cluster.fill_queue(scope, tasks)
        rate = cluster.drain_rate(scope, tasks, timeout=300)
        return (
            rate,
            1000 * (cpu_seconds(cluster.worker) - worker_cpu) / tasks,
            1000 * (cpu_seconds(cluster.redis) - redis_cpu) / tasks,
        )


def main() -> None:
    tasks, workers, rounds = counts(__doc__, [3000, 3, 4])
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(rounds):
            for events in (False, True) if round_ % 2 == 0 else (True, False):
                directory = Path(work) / f"{round_}-{int(events)}"
                directory.mkdir()
                rate, worker, server = drain(events, tasks, workers, directory)
                runs[events].append((rate, worker, server))
                print(
                    f"events {'on ' if events else 'off'}: {rate:6.0f} tasks/s, "
                    f"worker {worker:.3f} ms CPU/task, redis {server:.3f} ms CPU/task",
                    flush=True,
                )
    for events, values in runs.items():
        for index, what in enumerate(("tasks/s", "worker ms CPU/task", "redis ms CPU/task")):
            column = [v[index] for v in values]
            print(
                f"events {'on ' if events else 'off'} {what}: median "
                f"{statistics.median(column):.3f}, {min(column):.3f}-{max(column):.3f}"
            )


if __name__ == "__main__":
    main()
