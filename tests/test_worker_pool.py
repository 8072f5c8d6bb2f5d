"""Our app's worker runs its tasks in batches inside its consumer, correct with the solo
pool only (worker/celery_seam/batch.py): started by Celery's own `worker` command with
any other pool, or with none named (Celery's default is prefork), it refuses in one
line and exit status 2, before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.processes import spawn, stop, worker_ready
from worker.privileges import CHECKED

# A broker database of its own: a worker that did start must take no one else's tasks.
POOL_DB = 7


@pytest.mark.parametrize(
    ("given", "named"),
    [(["--pool=prefork"], "prefork"), (["-P", "threads"], "thread"), ([], "prefork")],
)
def test_a_worker_with_another_pool_than_solo_refuses_to_start(
    redis_url: str, broker_server: str, tmp_path: Path, given: list[str], named: str
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "ENDCONTACT_BROKER_URL": f"{broker_server}/{POOL_DB}",
        # Without Celery's warning of root (CI runs as root), which comes first.
        CHECKED: "1",
    }
    log = tmp_path / "worker.log"
    command = ["-A", "worker.celery_app", "worker", *given, "--concurrency=2"]
    process = spawn(command, env, log, module="celery")

    def exited_or_started() -> bool:
        # A worker that started fails below, its log shown, without waiting any longer.
        return process.poll() is not None or worker_ready(log)

    try:
        wait_until(exited_or_started, 60, "the worker to exit", logs=log.read_text)
        lines = log.read_text().splitlines()
        assert process.poll() == 2, lines
    finally:
        stop(process)
    assert lines == [
        f"endcontact: the worker's pool must be solo (--pool=solo), not {named}: it runs"
        " its tasks in batches inside its consumer (`endcontact worker` starts it so)"
    ]
