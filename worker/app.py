"""The Celery app, built from Settings: our tasks (worker.tasks) on Celery with our seams
(worker.celery_seam), logging, heartbeats and webhook deliveries."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys

from celery import Celery
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    task_revoked,
    worker_ready,
    worker_shutdown,
)

from shared import logs
from shared.broker import Broker
from shared.clock import ServerClock
from shared.connection import group
from shared.metrics import TASKS, Registry
from shared.settings import Settings
from shared.store import Store
from shared.tasks import QUEUE
from worker import tasks
from worker.celery_seam import (
    CONSUMER,
    Batches,
    EndContactCelery,
    register_transport,
    result_backend,
)
from worker.heartbeat import DrainMeter, Heartbeat
from worker.privileges import ACCEPT_CONTENT

# Results are read by the waiting web process within its deadline (seconds), so they
# need not outlive it by much; a short life keeps Redis memory flat under load.
RESULT_EXPIRES = 60
# How long a stopping worker waits for its deliveries process (it records the attempts
# in flight for a few seconds first).
DELIVERIES_STOP = 15


def create_celery(settings: Settings) -> Celery:
    # The queue and results on the broker, the marks on the store (shared.broker).
    url = settings.broker().require_redis_url()
    sentinels = group(settings.broker())
    # Through Sentinel (shared.connection), broker and backend ask it for the primary.
    ha: dict[str, object] = {}
    if sentinels is not None:
        ha = {"master_name": sentinels.master, "sentinel_kwargs": sentinels.sentinel_kwargs()}
    # kombu's Redis transport, where a queue entry that is not a message is dropped on
    # its own (worker.celery_seam).
    register_transport()
    app = EndContactCelery("endcontact", set_as_current=False)
    app.conf.update(
        broker_url=url,
        # Celery's Redis backend minus a read per task we never need (worker.celery_seam).
        result_backend=result_backend(url, sentinel=sentinels is not None),
        result_backend_transport_options=ha,
        task_default_queue=QUEUE,
        # Celery's consumer, where a malformed message is dropped on its own.
        worker_consumer=CONSUMER,
        # JSON only: a worker must never unpickle what arrives on a shared broker.
        task_serializer="json",
        result_serializer="json",
        accept_content=list(ACCEPT_CONTENT),
        result_accept_content=list(ACCEPT_CONTENT),
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

    # Its own clients: the heartbeat thread must not share a connection with the task.
    heartbeat_store = Store.connect(settings)
    heartbeat_broker = Broker.connect(settings)
    beats: list[Heartbeat] = []
    metrics = Registry()
    meter = DrainMeter(metrics)
    # The broker's clock, read at each heartbeat: tasks expire on it (worker.celery_seam). And
    # the store's, on which the write script checks each change's deadline.
    broker_clock = ServerClock()
    store_clock = ServerClock()

    def start_heartbeat(sender: object, **kwargs: object) -> None:
        name = str(getattr(sender, "hostname", "worker"))
        beat = Heartbeat(
            heartbeat_store, heartbeat_broker, name, metrics, meter, broker_clock, store_clock
        )
        beat.start()
        beats.append(beat)

    def stop_heartbeat(sender: object, **kwargs: object) -> None:
        for beat in beats:
            beat.stop()

    # Webhook deliveries (worker/deliveries/): a process of its own per worker
    # process, started and stopped with it, at a lower priority.
    dispatchers: list[subprocess.Popen[bytes]] = []

    def start_deliveries(sender: object, **kwargs: object) -> None:
        env = dict(os.environ)
        if settings.redis_url is not None:  # resolved by the CLI (the embedded server)
            env["REDIS_URL"] = settings.redis_url
        dispatchers.append(subprocess.Popen([sys.executable, "-m", "worker.deliveries"], env=env))

    def stop_deliveries(sender: object, **kwargs: object) -> None:
        for process in dispatchers:
            process.terminate()
        for process in dispatchers:
            try:
                process.wait(DELIVERIES_STOP)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def our_logging(**kwargs: object) -> None:
        # Connected, this replaces Celery's own logging set-up with ours.
        logs.configure()

    def count_expired(expired: bool = False, **kwargs: object) -> None:
        if expired:
            metrics.inc(TASKS, {"outcome": "expired"})

    def freeze_start_up_objects(**kwargs: object) -> None:
        # What start-up made lives as long as the worker: out of the garbage
        # collector's sight, a full collection no longer walks it (each took about
        # 0.1 s, several times a minute under load, a fifth of the worker's CPU).
        gc.freeze()
        # A batch's objects die together when it ends: collected less often, most are
        # freed before the collector ever walks them. Drain, 2 workers, 3 interleaved
        # runs: 127 -> 90 us of CPU per task (Python's default is 700, 10, 10).
        gc.set_threshold(50_000, 20, 20)

    setup_logging.connect(our_logging, weak=False)
    worker_ready.connect(freeze_start_up_objects, weak=False)
    task_revoked.connect(count_expired, weak=False)
    worker_ready.connect(start_heartbeat, weak=False)
    task_prerun.connect(meter.task_started, weak=False)
    task_postrun.connect(meter.task_finished, weak=False)
    worker_ready.connect(start_deliveries, weak=False)
    worker_shutdown.connect(stop_deliveries, weak=False)
    worker_shutdown.connect(stop_heartbeat, weak=False)

    # Our tasks, run in batches (worker.celery_seam) through their Strategy.
    batches = Batches(store, metrics, broker_clock, store_clock)
    tasks.register(app, store, Strategy=staticmethod(batches.strategy))

    return app
