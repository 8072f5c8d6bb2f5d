"""Celery's Redis result backend without its read-before-write.

Before storing a result, Celery reads the current one (a GET: a round trip and a
parse per task) so that a duplicate delivery of a finished task cannot overwrite its
SUCCESS. Our tasks are never delivered twice (acks on receipt, no ack emulation, see
worker.app) and a request reads each result once, so the read only costs: about a
tenth of a worker's CPU per task (bench/README.md). Everything else is Celery's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend
from celery.states import FAILURE


class WriteOnly:
    """Stores a result without reading the one before it."""

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        backend: Any = self
        meta = backend._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = task_id
        backend._set_with_state(backend.get_key_for_task(task_id), backend.encode(meta), state)
        return result

    def store_results(self, results: Sequence[tuple[str, str, Any]]) -> None:
        """Store (task id, state, result) of many tasks in one round trip: each key
        set and published as Celery's `_set` does, without its retries (a result
        that cannot be stored now is of no use later: its request has a deadline)."""
        backend: Any = self
        with backend.client.pipeline(transaction=False) as pipe:
            for task_id, state, result in results:
                meta = backend._get_result_meta(
                    result=backend.encode_result(result, state),
                    state=state,
                    traceback=None,
                    request=None,
                )
                meta["task_id"] = task_id
                key, value = backend.get_key_for_task(task_id), backend.encode(meta)
                expires = backend.failure_expires if state == FAILURE else backend.expires
                if expires:
                    pipe.setex(key, expires, value)
                else:
                    pipe.set(key, value)
                pipe.publish(key, value)
            pipe.execute()


class WriteOnlyRedisBackend(WriteOnly, RedisBackend):  # type: ignore[misc]
    pass


class WriteOnlySentinelBackend(WriteOnly, SentinelBackend):  # type: ignore[misc]
    """The same, with the primary found through Sentinel (shared.connection)."""
