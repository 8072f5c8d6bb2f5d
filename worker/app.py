"""The Celery app, built from Settings: our tasks (worker.tasks) on Celery with our seams
(worker.celery_seam), and what a worker starts beside them (heartbeat, deliveries
process), connected to Celery's signals once."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field

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
from shared.settings import RESULT_TIMEOUT_MOST, Settings
from shared.store import Store
from shared.tasks import KEPT_PAST_EXPIRY, QUEUE
from worker import tasks
from worker.celery_seam import (
    CONSUMER,
    Batches,
    EndContactCelery,
    SoloPool,
    register_transport,
    result_backend,
)
from worker.heartbeat import DrainMeter, Heartbeat
from worker.privileges import ACCEPT_CONTENT

# The longest a result is kept (seconds): a task of ours keeps its result only a little
# past its request's deadline (shared.tasks.KEPT_PAST_EXPIRY), however long that
# deadline is; one without an expiry (sent by another client) this long.
RESULT_EXPIRES = RESULT_TIMEOUT_MOST + KEPT_PAST_EXPIRY
# How long a stopping worker waits for its deliveries process (it records the attempts
# in flight for a few seconds first).
DELIVERIES_STOP = 15


@dataclass
class _Parts:
    """What one app's worker starts beside its tasks and counts, reached by the signal
    handlers below through the sender's app."""

    settings: Settings
    heartbeat_store: Store
    heartbeat_broker: Broker
    metrics: Registry
    meter: DrainMeter = field(init=False)
    # The broker's clock, read at each heartbeat: tasks expire on it (worker.batch). And
    # the store's, on which the write script checks each change's deadline.
    broker_clock: ServerClock = field(default_factory=ServerClock)
    store_clock: ServerClock = field(default_factory=ServerClock)
    beats: list[Heartbeat] = field(default_factory=list)
    # Webhook deliveries (worker/deliveries/): a process of its own per worker
    # process, started and stopped with it, at a lower priority.
    dispatchers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.meter = DrainMeter(self.metrics)


# Celery's signals are global and their handlers live as long as the process: they are
# connected here, once, at import, however many apps create_celery makes (making one
# twice must not start two heartbeats). Each acts for its sender's app, if ours.


def _parts(sender: object) -> _Parts | None:
    """The parts of the app that sent a signal (a worker, its consumer or a task)."""
    parts = getattr(getattr(sender, "app", None), "parts", None)
    return parts if isinstance(parts, _Parts) else None


def _our_logging(**kwargs: object) -> None:
    # Connected, this replaces Celery's own logging set-up with ours.
    logs.configure()


def _started(sender: object, **kwargs: object) -> None:
    parts = _parts(sender)
    if parts is None:
        return
    # What start-up made lives as long as the worker: out of the garbage
    # collector's sight, a full collection no longer walks it (each took about
    # 0.1 s, several times a minute under load, a fifth of the worker's CPU).
    gc.freeze()
    # A batch's objects die together when it ends: collected less often, most are
    # freed before the collector ever walks them. Drain, 2 workers, 3 interleaved
    # runs: 127 -> 90 us of CPU per task (Python's default is 700, 10, 10).
    gc.set_threshold(50_000, 20, 20)
    name = str(getattr(sender, "hostname", "worker"))
    beat = Heartbeat(
        parts.heartbeat_store,
        parts.heartbeat_broker,
        name,
        parts.metrics,
        parts.meter,
        parts.broker_clock,
        parts.store_clock,
    )
    beat.start()
    parts.beats.append(beat)
    env = dict(os.environ)
    if parts.settings.redis_url is not None:  # resolved by the CLI (the embedded server)
        env["REDIS_URL"] = parts.settings.redis_url
    parts.dispatchers.append(subprocess.Popen([sys.executable, "-m", "worker.deliveries"], env=env))


def _stopped(sender: object, **kwargs: object) -> None:
    parts = _parts(sender)
    if parts is None:
        return
    for process in parts.dispatchers:
        process.terminate()
    for process in parts.dispatchers:
        try:
            process.wait(DELIVERIES_STOP)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for beat in parts.beats:
        beat.stop()


def _count_expired(sender: object, expired: bool = False, **kwargs: object) -> None:
    parts = _parts(sender)
    if parts is not None and expired:
        parts.metrics.inc(TASKS, {"outcome": "expired"})


def _task_started(sender: object, **kwargs: object) -> None:
    parts = _parts(sender)
    if parts is not None:
        parts.meter.task_started()


def _task_finished(sender: object, **kwargs: object) -> None:
    parts = _parts(sender)
    if parts is not None:
        parts.meter.task_finished()


setup_logging.connect(_our_logging)
worker_ready.connect(_started)
worker_shutdown.connect(_stopped)
task_revoked.connect(_count_expired)
task_prerun.connect(_task_started)
task_postrun.connect(_task_finished)


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
        # One delivery at a time per worker process (one pop: its message and, for a batch,
        # what waited with it, at most transport.POP_MOST): a worker that dies or freezes
        # loses at most those, reported as failures, and a busy worker leaves the rest of
        # the queue to idle ones.
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
    parts = _Parts(
        settings=settings,
        heartbeat_store=Store.connect(settings),
        heartbeat_broker=Broker.connect(settings),
        metrics=Registry(),
    )
    app.parts = parts

    # Our tasks, run in batches (worker.celery_seam) through their Strategy, inline in
    # the consumer: the app's worker refuses every pool but solo.
    batches = Batches(store, parts.metrics, parts.broker_clock, parts.store_clock)
    tasks.register(app, store, Strategy=staticmethod(batches.strategy))
    app.steps["worker"].add(SoloPool)

    return app
