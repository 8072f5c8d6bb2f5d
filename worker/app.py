"""The Celery app, built from Settings. Tasks are thin wrappers over shared.store."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import setup_logging, task_revoked, worker_ready, worker_shutdown

from shared import logs
from shared.apikeys import Scope
from shared.connection import group
from shared.metrics import TASKS, Registry
from shared.settings import Settings
from shared.store import Store
from shared.tasks import QUEUE, TASK_NAME
from worker.heartbeat import Heartbeat

# Results are read by the waiting web process within its deadline (seconds), so they
# need not outlive it by much; a short life keeps Redis memory flat under load.
RESULT_EXPIRES = 60


def create_celery(settings: Settings) -> Celery:
    url = settings.require_redis_url()
    sentinels = group(settings)
    # Through Sentinel (shared.connection), broker and backend ask it for the primary.
    ha: dict[str, object] = {}
    backend = "WriteOnlyRedisBackend"
    if sentinels is not None:
        ha = {"master_name": sentinels.master, "sentinel_kwargs": sentinels.sentinel_kwargs()}
        backend = "WriteOnlySentinelBackend"
    app = Celery("endcontact", set_as_current=False)
    app.conf.update(
        broker_url=url,
        # Celery's Redis backend minus a read per task we never need (worker/backend.py),
        # named the way Celery takes a backend class: "module:Class+url".
        result_backend=f"worker.backend:{backend}+{url}",
        result_backend_transport_options=ha,
        task_default_queue=QUEUE,
        # JSON only: a worker must never unpickle what arrives on a shared broker.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=RESULT_EXPIRES,
        # Acknowledge on receipt (Celery's default, said out loud). Redelivery of a
        # task lost with its worker would come an hour later (the Redis visibility
        # timeout), long after the request reported it as a failure the client may
        # retry; the expiry in each message would discard it anyway.
        task_acks_late=False,
        # One message in hand per worker process: a worker that dies loses at most the
        # task it runs, and a busy worker leaves the rest of the queue to idle ones.
        worker_prefetch_multiplier=1,
        # Keep retrying the broker at start-up: in compose the worker may start first.
        broker_connection_retry_on_startup=True,
        # Bounded socket waits: a Redis that stops answering fails a task (a failure
        # the client may retry) instead of hanging a worker process. The solo pool has
        # no time limits, so these bound a task's run time.
        redis_socket_timeout=5,
        redis_socket_connect_timeout=2,
        broker_transport_options={
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            # No unacked-message bookkeeping: with acks on receipt it only buys a
            # redelivery an hour later (see above), and costs two Redis round trips
            # per task. Off, a worker drains about twice as many tasks per second.
            "ack_emulation": False,
            **ha,
        },
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    store = Store.connect(settings)

    # "received" and "succeeded" lines for every task would be thousands of lines a
    # second and cost a tenth of the throughput; failures are still logged (ERROR).
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)

    # Its own client: the heartbeat thread must not share a connection with the task.
    heartbeat_store = Store.connect(settings)
    beats: list[Heartbeat] = []
    metrics = Registry()

    def start_heartbeat(sender: object, **kwargs: object) -> None:
        beat = Heartbeat(heartbeat_store, str(getattr(sender, "hostname", "worker")), metrics)
        beat.start()
        beats.append(beat)

    def stop_heartbeat(sender: object, **kwargs: object) -> None:
        for beat in beats:
            beat.stop()

    def json_logging(**kwargs: object) -> None:
        # Connected, this replaces Celery's own logging set-up with ours.
        logs.configure()

    def count_expired(expired: bool = False, **kwargs: object) -> None:
        if expired:
            metrics.inc(TASKS, {"outcome": "expired"})

    setup_logging.connect(json_logging, weak=False)
    task_revoked.connect(count_expired, weak=False)
    worker_ready.connect(start_heartbeat, weak=False)
    worker_shutdown.connect(stop_heartbeat, weak=False)

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def end_contact(company: str, campaign: str, phone: str) -> bool:
        with metrics.timed_task():
            return store.end_contact(Scope(company, campaign), phone)

    return app
