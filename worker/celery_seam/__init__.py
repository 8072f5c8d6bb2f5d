"""The worker's one seam to Celery's and kombu's internals: every module that knows
more of them than their public API is here, and the rest of the worker goes through
what this package names below.

- Batches (batch.py): the end-contact and resume-contact tasks' strategy
  (`Strategy=staticmethod(batches.strategy)`), running the messages waiting on the
  queue as one batch. It uses Celery's non-public `celery.worker.strategy` and
  `celery.worker.request` (create_request_cls, hybrid_to_proto2, proto1_to_proto2,
  Request._tzlocal, worker_state); transport.py takes the waiting messages.
- SoloPool (batch.py): the worker bootstep (`app.steps["worker"].add(SoloPool)`) that
  refuses to start the app's worker with any pool but solo, in one line and exit
  status 2: a batch runs inline in the consumer, correct with the solo pool only
  (the one `endcontact worker` starts, cli/serve.py).
- result_backend() (backend.py): Celery's Redis result backend without its read
  before each write, storing a batch's results in one round trip (overrides
  `_store_result`, `_get_result_meta`, `_set_with_state`).
- CONSUMER (consumer.py): Celery's consumer, dropping a malformed message on its own.
- register_transport(), envelope() (transport.py): kombu's Redis transport, popping a
  batch's worth of entries at once (BLMPOP) and dropping a queue entry that is not a
  message (overrides `Channel._brpop_start` and `Channel._brpop_read`); its Waiting
  hands a batch what was popped with its message (kombu's `Connection._deliver`).
- EndContactCelery (program.py): Celery's app whose worker program logs its banner and
  shutdown notices as log lines (overrides Worker.emit_banner, replaces
  `celery.apps.worker.safe_say`); its work() runs the worker and gives its exit status,
  which worker_main drops.
- CELERY_VERSION, KOMBU_VERSION (versions.py): what the process runs; where the
  versions the seam was read in differ, the gate is there and only there.

The web's side of the contract (the message envelope, api/publisher.py; the result
key and states, shared/tasks.py and api/results.py) uses Celery's public API only:
tests/test_celery_contract.py runs a stock Celery worker on the web's messages and
compares the envelope with what Celery's own producer sends.
"""

from __future__ import annotations

from worker.celery_seam.batch import Batches, SoloPool
from worker.celery_seam.program import EndContactCelery
from worker.celery_seam.transport import envelope
from worker.celery_seam.transport import register as register_transport
from worker.celery_seam.versions import CELERY_VERSION, KOMBU_VERSION

__all__ = [
    "CELERY_VERSION",
    "CONSUMER",
    "KOMBU_VERSION",
    "Batches",
    "EndContactCelery",
    "SoloPool",
    "envelope",
    "register_transport",
    "result_backend",
]

# Celery's `worker_consumer` setting: named, as Celery takes it, "module:Class".
CONSUMER = "worker.celery_seam.consumer:Consumer"


def result_backend(url: str, sentinel: bool) -> str:
    """Celery's `result_backend` setting for the broker at `url`: the backend class
    named the way Celery takes one, "module:Class+url"."""
    backend = "WriteOnlySentinelBackend" if sentinel else "WriteOnlyRedisBackend"
    return f"worker.celery_seam.backend:{backend}+{url}"
