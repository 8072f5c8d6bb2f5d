"""A worker that stops on an error Celery cannot recover from exits non-zero, so its
supervisor (`endcontact worker --concurrency N`) and compose see a crash: Celery's
worker_main drops the worker's exit status (worker/celery_seam/program.py)."""

from __future__ import annotations

from pathlib import Path

import redis

from shared.tasks import QUEUE
from tests.helpers import wait_until
from tests.processes import spawn, stop

# A broker database of its own: the queue key broken here is no one else's.
EXIT_DB = 8


def test_a_worker_stopped_by_an_unrecoverable_error_exits_1(
    redis_url: str, broker_server: str, tmp_path: Path
) -> None:
    broker = f"{broker_server}/{EXIT_DB}"
    with redis.Redis.from_url(broker) as client:
        # The queue key of the wrong type: every BRPOP on it is a WRONGTYPE error.
        client.delete(QUEUE)
        client.set(QUEUE, "not a list")
    log = tmp_path / "worker.log"
    process = spawn(
        ["worker", "--concurrency=1"],
        {"REDIS_URL": redis_url, "ENDCONTACT_BROKER_URL": broker},
        log,
    )
    try:
        wait_until(lambda: process.poll() is not None, 60, "the worker to exit", logs=log.read_text)
    finally:
        stop(process)
        with redis.Redis.from_url(broker) as client:
            client.delete(QUEUE)
    assert "Unrecoverable error" in log.read_text()
    assert process.returncode == 1
