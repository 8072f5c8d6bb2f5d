"""Celery's Redis result backend without its read-before-write.

Before storing a result, Celery reads the current one (a GET: a round trip and a
parse per task) so that a duplicate delivery of a finished task cannot overwrite its
SUCCESS. Our tasks are never delivered twice (acks on receipt, no ack emulation, see
worker.app) and a request reads each result once, so the read only costs: about a
tenth of a worker's CPU per task (bench/README.md). Everything else is Celery's.

store_results writes the results of a batch of tasks (batch.py) in one script,
announced in one message per web process instead of one per task, each kept only a
little past its request's deadline: the web process that waits for it has read it by
then. Kept a minute each, as they were, results took the broker to 400-524 MB at
19,000 numbers a second; now 116 MB at 20,000 (docs/operating.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend
from celery.states import FAILURE, SUCCESS

from shared import lua
from shared.tasks import KEPT_PAST_EXPIRY, batch_channel, listener_of
from worker.celery_seam.versions import HAS_FAILURE_EXPIRES

STORE_RESULTS_SCRIPT = lua.load("worker.celery_seam", "store_results")


class WriteOnly:
    """Stores a result without reading the one before it."""

    _script: Any = None  # store_results.lua, registered with the backend's client

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        # Celery's own path, one task at a time: a message of ours takes it only when
        # it expired before its batch or carries an ETA. Its result is kept for
        # result_expires, as Celery keeps one, not KEPT_PAST_EXPIRY past its expiry.
        backend: Any = self
        meta = backend._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = task_id
        backend._set_with_state(backend.get_key_for_task(task_id), backend.encode(meta), state)
        return result

    def store_results(self, results: Sequence[tuple[str, str, Any, datetime | None]]) -> None:
        """Store (task id, state, result, the task's expiry or None) of many tasks in
        one round trip, without Celery's retries (a result that cannot be stored now is
        of no use later: its request has a deadline).

        Each result is stored as Celery's Redis backend stores one (its key and value:
        the meta of a task without parent, group or extended result), kept
        KEPT_PAST_EXPIRY seconds past its task's expiry (shared.tasks), and never longer
        than Celery's result_expires, which is how long one without expiry is kept. The
        announcement is one message per listener (shared.tasks.batch_channel) instead
        of one per task; a task id that is not ours gets Celery's own.
        """
        backend: Any = self
        date_done = backend.app.now().isoformat()
        # The meta holds plain values only: for them kombu's JSON serializer writes the
        # text json.dumps does, at twice the CPU.
        encode = json.dumps if backend.serializer == "json" else backend.encode
        # result_failure_expires came with Celery 5.7 (versions.py).
        failure_expires = backend.failure_expires if HAS_FAILURE_EXPIRES else backend.expires
        keys: list[str] = []
        args: list[str | int] = []
        announcements: list[str] = []
        batches: dict[str, dict[str, str]] = {}
        # A change task's result is True or False: such a result's text is the same for
        # every task of the batch but for its id, which the meta puts last. Made once a
        # batch and completed per task (4 -> 2 µs a task).
        heads: dict[bool, str] = {}
        templated = encode is json.dumps
        now = time.time()
        for task_id, state, result, task_expires in results:
            if templated and state == SUCCESS and isinstance(result, bool):
                if (head := heads.get(result)) is None:
                    text = encode(_meta(backend, result, state, date_done, ""))
                    head = heads[result] = text[: -len('""}')]
                value = head + json.dumps(task_id) + "}"
            else:
                value = encode(_meta(backend, result, state, date_done, task_id))
            key = backend.get_key_for_task(task_id)
            most = int((failure_expires if state == FAILURE else backend.expires) or 0)
            keys.append(key)
            args += (value, _kept_for(task_expires, now, most))
            listener = listener_of(task_id)
            if listener is None:
                announcements += (key, value)
            else:
                batches.setdefault(listener, {})[task_id] = state
        for listener, states in batches.items():
            announcements += (batch_channel(listener), json.dumps(states))
        # One script (store_results.lua) where a pipeline read a reply per task: a
        # sixth of a worker's CPU per number was that pipeline (issue 23's profile).
        client = backend.client
        if self._script is None or self._script.registered_client is not client:
            self._script = client.register_script(STORE_RESULTS_SCRIPT)
        self._script(keys=keys, args=args + announcements, client=client)


def _kept_for(task_expires: datetime | None, now: float, most: int) -> int:
    """Seconds a result is kept (0: for ever, as `most` says): KEPT_PAST_EXPIRY past its
    task's expiry (on this worker's clock, as `now`), at least one, at most `most`."""
    if task_expires is None:
        return most
    seconds = max(1, math.ceil(task_expires.timestamp() - now) + KEPT_PAST_EXPIRY)
    return min(seconds, most) if most else seconds


def _meta(backend: Any, result: Any, state: str, date_done: str, task_id: str) -> dict[str, Any]:
    """The meta Celery's Redis backend stores for a task without parent, group or
    extended result."""
    return {
        "status": state,
        "result": backend.encode_result(result, state),
        "traceback": None,
        "children": [],
        "date_done": date_done,
        "task_id": task_id,
    }


class WriteOnlyRedisBackend(WriteOnly, RedisBackend):  # type: ignore[misc]
    pass


class WriteOnlySentinelBackend(WriteOnly, SentinelBackend):  # type: ignore[misc]
    """The same, with the primary found through Sentinel (shared.connection)."""
