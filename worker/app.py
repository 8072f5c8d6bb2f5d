"""The Celery app, built from Settings. Tasks are thin wrappers over shared.store."""

from __future__ import annotations

import redis
from celery import Celery

from shared.apikeys import Scope
from shared.settings import Settings
from shared.store import Store
from shared.tasks import QUEUE, TASK_NAME

# Results are read by the waiting web process within its deadline (seconds), so they
# need not outlive it by much; a short life keeps Redis memory flat under load.
RESULT_EXPIRES = 60
# A task should take milliseconds; one that runs this long is stuck on Redis and is
# killed so its worker process is freed. The web has long reported it as a failure.
TASK_TIME_LIMIT = 30


def create_celery(settings: Settings) -> Celery:
    url = settings.require_redis_url()
    app = Celery("endcontact", set_as_current=False)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_default_queue=QUEUE,
        # JSON only: a worker must never unpickle what arrives on a shared broker.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=RESULT_EXPIRES,
        task_time_limit=TASK_TIME_LIMIT,
        # Acknowledge on receipt (Celery's default, said out loud). Redelivery of a
        # task lost with its worker would come an hour later (the Redis visibility
        # timeout), long after the request reported it as a failure the client may
        # retry; the expiry in each message would discard it anyway.
        task_acks_late=False,
        # Keep retrying the broker at start-up: in compose the worker may start first.
        broker_connection_retry_on_startup=True,
        # Bounded socket waits: a Redis that stops answering fails a task (a failure
        # the client may retry) instead of hanging a worker process.
        redis_socket_timeout=5,
        redis_socket_connect_timeout=2,
        broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 2},
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    store = Store(
        redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
    )

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def end_contact(company: str, campaign: str, phone: str) -> str:
        return store.end_contact(Scope(company, campaign), phone)

    return app
