"""The web's messages are Celery's: a stock Celery worker (its own strategy, prefork
pool, kombu's Redis transport and Celery's Redis result backend, tests/stock_app.py)
runs them and the web sees its results; and the envelope the web's publisher makes is
the one Celery's own producer puts on the queue, field by field.

Both on broker databases of their own: the session's worker (ours) must not take these
tasks, and no one else's messages must reach the queue read here."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from starlette.testclient import TestClient

from api.publisher import TaskPublisher
from shared.events import Context
from shared.store import Store
from shared.tasks import QUEUE, RESUME_TASK_NAME, TASK_NAME, task_args, task_id
from tests.conftest import Caller, serving
from tests.helpers import post_numbers
from tests.processes import spawn, stop, wait_for, worker_ready

STOCK_DB = 5
PRODUCER_DB = 6


@pytest.fixture(scope="module")
def stock_web(redis_url: str, broker_server: str, logs: Path) -> Iterator[TestClient]:
    """The web app in this process, with a stock Celery worker behind it."""
    env = {"REDIS_URL": redis_url, "ENDCONTACT_BROKER_URL": f"{broker_server}/{STOCK_DB}"}
    log = logs / "stock-worker.log"
    stock = ["-A", "tests.stock_app", "worker", "-P", "prefork", "-c", "1", "-l", "info"]
    process = spawn(stock, env, log, module="celery")
    try:
        wait_for(lambda: worker_ready(log), process, log)
        with serving(env) as web:
            yield web
    finally:
        stop(process)


def test_a_stock_celery_worker_runs_the_webs_messages(
    stock_web: TestClient, caller: Caller, store: Store
) -> None:
    ended = post_numbers(stock_web, caller.headers, ["(509) 555-0100", "+15095550101"])
    assert ended.status_code == 201, ended.text
    assert ended.json() == {"success": ["+15095550100", "+15095550101"], "failure": []}
    assert store.ended_at(caller.key.scope, "+15095550100") is not None
    assert store.ended_at(caller.key.scope, "+15095550101") is not None

    resumed = stock_web.post(
        "/api/v1/leads/resume-contact",
        json={"phoneNumberList": ["+15095550100"]},
        headers=caller.headers,
    )
    assert resumed.status_code == 201, resumed.text
    assert resumed.json() == {"success": ["+15095550100"], "failure": []}
    assert store.ended_at(caller.key.scope, "+15095550100") is None
    assert store.ended_at(caller.key.scope, "+15095550101") is not None


# What differs between any two messages, whoever sends them: the process that sent it
# (headers), where Celery's producer asks for replies, the transport's delivery tag.
PER_SENDER = {"headers": {"origin"}, "properties": {"reply_to", "delivery_tag"}}
# What Celery's producer adds that no worker of the Redis transport reads: send_task
# copies its options into the properties too (the reprs, read from the headers), and
# `expiration` is the per-message TTL an AMQP broker enforces; kombu's Redis transport
# ignores it, and a worker discards an expired task by the `expires` header, which both
# carry. (The stock worker above runs the web's messages without them.)
CELERY_ONLY = {"argsrepr", "kwargsrepr", "expiration"}


def without_per_sender(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    for part, names in PER_SENDER.items():
        out[part] = {k: v for k, v in message[part].items() if k not in names}
    return out


@pytest.mark.parametrize("name", [TASK_NAME, RESUME_TASK_NAME])
def test_the_publishers_envelope_is_what_celerys_producer_sends(
    broker_server: str, caller: Caller, name: str
) -> None:
    url = f"{broker_server}/{PRODUCER_DB}"
    args = task_args(caller.key.scope, "+15095550102", Context("key_1", "request-1"))
    expires = datetime.now(UTC) + timedelta(seconds=30)
    task = task_id(uuid.uuid4().hex, 0)
    shown = "['+15*******02']"
    producer = Celery("producer", broker=url, set_as_current=False)
    producer.conf.update(task_default_queue=QUEUE)
    with redis.Redis.from_url(url) as client:
        client.delete(QUEUE)
        # Celery's producer, through kombu's Redis transport, onto the queue. Our tasks
        # keep their results (ignore_result False, as apply_async sends it); send_task,
        # which knows no task, would leave it None.
        producer.send_task(
            name,
            args=args,
            task_id=task,
            expires=expires,
            argsrepr=shown,
            kwargsrepr="{}",
            ignore_result=False,
        )
        raw = client.rpop(QUEUE)
    assert raw is not None
    celerys = json.loads(raw)
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    webs = json.loads(publisher.message(task, args, shown, expires, name))

    assert set(celerys["properties"]) >= CELERY_ONLY
    celerys["properties"] = {k: v for k, v in celerys["properties"].items() if k not in CELERY_ONLY}
    assert without_per_sender(webs) == without_per_sender(celerys)
    # The same body, byte for byte (both base64 of the same JSON text).
    assert webs["body"] == celerys["body"]
    assert json.loads(base64.b64decode(webs["body"]))[0] == args
