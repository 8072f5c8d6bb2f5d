"""Celery's worker program, saying what it prints as log lines like every log.

Celery writes its banner and its shutdown notices straight to the terminal as text:
the banner is Worker.emit_banner, overridden; the notices go through
`celery.apps.worker.safe_say`, a module function, replaced here (the one monkeypatch
of the seam).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import celery.apps.worker
from celery import Celery
from kombu.utils.objects import cached_property

from shared import logs
from worker.privileges import checked_by_starter

log = logging.getLogger("celery.apps.worker")


class JsonWorker(celery.apps.worker.Worker):  # type: ignore[misc]
    """Celery's worker program, saying what it prints as log lines like every log (JSON,
    or text on a terminal: shared.logs).

    Celery writes its banner, and its shutdown notices, straight to the terminal as
    text, and its root-privilege SecurityWarning comes before its logging is set up.
    """

    def on_before_init(self, **kwargs: Any) -> None:
        self.app.program = self  # for EndContactCelery.work, its exit status
        # Before Celery's privilege check, so that its warning is a log line too; once
        # for the workers `endcontact worker` starts together (worker/privileges.py).
        logs.configure()
        celery.apps.worker.safe_say = _say
        with checked_by_starter():
            super().on_before_init(**kwargs)

    def emit_banner(self) -> None:
        pool = self.pool_cls if isinstance(self.pool_cls, str) else self.pool_cls.__module__
        pool = pool.split(".")[-1]
        events = "on" if self.task_events else "off"
        log.info(
            "%s starting: concurrency %s (%s), task events %s",
            self.hostname,
            self.concurrency,
            pool,
            events,
            extra={
                "concurrency": self.concurrency,
                "pool": pool,
                "task_events": self.task_events,
                "queues": sorted(self.app.amqp.queues),
                # Both without their password (Celery's as_uri).
                "broker": self.app.connection().as_uri(),
                "results": self.app.backend.as_uri(),
            },
        )


def _say(msg: str, f: object = None) -> None:
    """Celery's safe_say (shutdown notices, from signal handlers) as one log line,
    written at once like Celery's own, never through a logging lock."""
    record = logging.makeLogRecord(
        {"name": log.name, "levelname": "INFO", "levelno": logging.INFO, "msg": msg.strip()}
    )
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), (logs.as_line(record) + "\n").encode())


class EndContactCelery(Celery):  # type: ignore[misc]
    # Set by worker.app's create_celery: what its signal handlers act on (its _Parts).
    parts: Any = None
    # The worker program last started in this process (JsonWorker sets it).
    program: Any = None

    def work(self, argv: list[str]) -> int:
        """Run the worker (worker_main) and give its exit status. Celery's worker_main
        drops it (its start() returns nothing), so a worker that stopped on an
        "Unrecoverable error" (a queue key of the wrong type, measured) exited 0, as if
        asked to stop: its supervisor and compose saw no crash."""
        self.worker_main(argv)
        code = None if self.program is None else self.program.exitcode
        return int(code or 0)

    # The worker program that `celery worker` and worker_main run: ours.
    @cached_property
    def Worker(self) -> type[JsonWorker]:
        return self.subclass_with_self(JsonWorker)  # type: ignore[no-any-return]
