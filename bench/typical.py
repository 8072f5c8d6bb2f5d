"""Celery as most people set it up: defaults everywhere. The naive baseline's app.

    REDIS_URL=... celery -A bench.typical worker --concurrency=2 -Q endcontact

Same task name, queue and store as endcontact, so only the setup differs: prefork
pool, acks with ack emulation, the stock result backend, per-task INFO logs.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

from shared.apikeys import Scope
from shared.keyspace import ended_key
from shared.store import utc_now
from shared.tasks import QUEUE, TASK_NAME

URL = os.environ["REDIS_URL"]
app = Celery("typical", broker=URL, backend=URL, set_as_current=False)
app.conf.task_default_queue = QUEUE
app.conf.broker_connection_retry_on_startup = True
_redis = redis.Redis.from_url(URL, decode_responses=True)


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def end_contact(company: str, campaign: str, phone: str, *context: str) -> bool:
    # The textbook task: one mark, then wait for it to be on disk.
    first = bool(_redis.hsetnx(ended_key(Scope(company, campaign)), phone, utc_now()))
    _redis.execute_command("WAITAOF", 1, 0, 2000)  # type: ignore[no-untyped-call]
    return first
