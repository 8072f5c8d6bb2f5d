"""Celery's consumer, where one malformed task message costs only itself.

Whatever a message on the queue holds (a body that is not JSON, arguments of the wrong
kind, headers without an id or a task name), handling it can raise. Raised into
Celery's consumer, the error drops the broker connection and puts the message back on
the queue, to raise again at once, forever; raised into a batch (batch.py), it
would cost the batch's other tasks; left unacknowledged, the message would hold the
worker's one prefetch slot and it would take no other. Here each message is handled on
its own: one that raises is dropped (drop()), and the next is handled as usual. (An
entry of the queue that is not a message at all never reaches the consumer: the
transport drops it, transport.py.)

Celery's own answers to a message it cannot run (unknown task, invalid or undecodable
message) log the message's body, numbers and all; here they drop it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.states import FAILURE
from celery.worker.consumer import Consumer as CeleryConsumer

from worker.celery_seam.batch import Malformed

# The logger name of before the seam package: what operators filter the logs on.
log = logging.getLogger("worker.consumer")


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer (setting `worker_consumer`) with drop() for what it cannot run."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], None]:
        handle: Callable[[Any], None] = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> None:
            try:
                handle(message)
            except Exception:
                drop(message, self.app.backend)

        return on_task_received

    # Called by Celery while it handles the error: drop() logs it with its traceback.
    def on_unknown_message(self, body: Any, message: Any) -> None:
        drop(message, self.app.backend)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        drop(message, self.app.backend)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        drop(message, self.app.backend)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        drop(message, self.app.backend)


def drop(message: Any, backend: Any) -> None:
    """Drop a task message that raised while it was handled: log the error with its
    traceback (never the body: it may hold a number), acknowledge the message if it is
    not yet, and store its task's result as a FAILURE if it names a task id, so that a
    request waiting for it learns at once."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    task_id = headers.get("id") if isinstance(headers.get("id"), str) else None
    name = headers.get("task") if isinstance(headers.get("task"), str) else None
    log.error(
        "dropped a malformed task message: task %s, id %s",
        name,
        task_id,
        exc_info=True,
        extra={"task_id": task_id},
    )
    try:
        if not message.acknowledged:
            message.ack()
    except Exception:
        log.exception("could not acknowledge a malformed task message %s", task_id)
    if task_id is None:
        return
    try:
        backend.store_results([(task_id, FAILURE, Malformed("malformed task message"), None)])
    except Exception:
        log.exception("could not store the failure of malformed task message %s", task_id)
