"""Celery's Redis result backend without its read-before-write.

Before storing a result, Celery reads the current one (a GET: a round trip and a
parse per task) so that a duplicate delivery of a finished task cannot overwrite its
SUCCESS. Our tasks are never delivered twice (acks on receipt, no ack emulation, see
worker.app) and a request reads each result once, so the read only costs: about a
tenth of a worker's CPU per task (bench/README.md). Everything else is Celery's.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend


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


class WriteOnlyRedisBackend(WriteOnly, RedisBackend):  # type: ignore[misc]
    pass


class WriteOnlySentinelBackend(WriteOnly, SentinelBackend):  # type: ignore[misc]
    """The same, with the primary found through Sentinel (shared.connection)."""
