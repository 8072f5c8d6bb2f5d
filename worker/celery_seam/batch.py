"""End-contact tasks run in batches on Celery's own consumer.

Each number is still one Celery task message on the queue. What changes is how a
worker runs them: the consumer hands it a message, and with it what else waited on
the queue, taken in the same pop (up to BATCH_MAX in all: transport.Waiting; from a
broker without BLMPOP, what waits is taken by one script just after: all of it, or
half of a long queue so that another worker runs the rest meanwhile). A message
plainly ours is read straight from its envelope into what the batch needs of it
(plain.py: a fifth to a third of the CPU per number went to building kombu's Message
and Celery's Request for it); any other is fed through the consumer like any
delivered message (kombu's Message, Celery's Request: task ids, expiry and
`task_revoked`, argsrepr, acks all as usual). A plain one whose expiry has passed
is discarded with the batch's others as Celery discards one (Batches._discard: its
REVOKED result stored with theirs in one round trip). Then, for the whole batch:

1. one round trip to the store: each campaign's changes, marks with their events, in one
   script, and one `WAITAOF` (Store.apply_changes);
2. only once the marks are confirmed on disk, one round trip to the result backend
   with every task's result (backend.WriteOnly.store_results).

A worker killed in between leaves no result behind, so the web reports those numbers
as failures, never as successes. An empty queue adds nothing: a batch is what was
waiting, never what a timer collects, so a lone request is not slowed down.

The store and the result backend are separate clients (they may be separate servers);
messages come from the broker through the consumer's own channel.

This replaces Celery's per-task strategy for the end-contact and resume-contact tasks
(the task class's `Strategy`, see celery.worker.strategy.default); a batch may hold
both. The batch runs inline in the consumer, as the solo pool runs every task: the
worker refuses any other pool (SoloPool). The task_received and task_revoked signals
and the task events (received, started, succeeded, failed: Flower's view) are per task
as Celery sends them; task_prerun and task_postrun once per batch (Batches.run);
task_success and task_failure are not sent.

A malformed message costs only itself: one whose arguments are not a change of ours
(shared.tasks) fails alone, and one that cannot become a request at all is dropped on
its own by the consumer (consumer.py); either is logged with its traceback. An
entry of the queue that is not a message at all is dropped as it is taken
(transport.py).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from celery import bootsteps, signals, states
from celery.app.task import Context
from celery.concurrency.solo import TaskPool as SoloTaskPool
from celery.exceptions import TaskRevokedError
from celery.utils.imports import symbol_by_name
from celery.worker import state as worker_state
from celery.worker.request import create_request_cls
from celery.worker.strategy import default, hybrid_to_proto2, proto1_to_proto2
from kombu.utils.uuid import uuid

from shared.clock import ServerClock
from shared.events import Change
from shared.mark_writes import told
from shared.metrics import Registry
from shared.settings import SettingsError, exit_on_bad_settings
from shared.store import Store
from shared.tasks import KINDS, QUEUE, change_of
from worker.celery_seam.plain import PlainRequest, Reader
from worker.celery_seam.transport import POP_MOST, Waiting, deliver, envelope

# The logger name of before the seam package: what operators filter the logs on.
log = logging.getLogger("worker.batch")
# Where Celery says it discards a revoked or expired request (celery.worker.request).
revoked_log = logging.getLogger("celery.worker.request")

# Most messages one batch takes: what one pop takes (transport.POP_MOST).
BATCH_MAX = POP_MOST
# From a broker without BLMPOP, a queue this long or longer is shared: a worker takes
# half of it (up to BATCH_MAX), so that the next idle worker runs the other half at the
# same time; a shorter one is taken whole, so that no number waits for a second round.
SHARED_FROM = 32


class BatchFailed(Exception):
    """The reason a number of a batch failed, stored as its task's result."""


class Malformed(BatchFailed):
    """A message that is not a task of ours as shared.tasks defines them."""


Handler = Callable[..., Any]


class Batches:
    """The strategy of the change tasks: `Strategy = staticmethod(batches.strategy)`."""

    def __init__(
        self, store: Store, metrics: Registry, broker_clock: ServerClock, store_clock: ServerClock
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._broker_clock = broker_clock
        self._store_clock = store_clock
        # The message in hand is one of the batch: the others are at most BATCH_MAX - 1.
        self._waiting = Waiting(BATCH_MAX - 1, SHARED_FROM)
        self._reader = Reader(KINDS, broker_clock)
        # Shared by the tasks' handlers: a message taken for a batch is part of it,
        # whichever task it is for.
        self._pending: list[Any] = []
        self._taking = False

    def strategy(self, task: Any, app: Any, consumer: Any) -> Handler:
        """Called by the consumer once per task at start-up: returns the handler it
        calls for every message of this task."""
        hostname = consumer.hostname
        eventer = consumer.event_dispatcher
        connection_errors = consumer.connection_errors
        base = create_request_cls(
            symbol_by_name(task.Request), task, consumer.pool, hostname, eventer, app=app
        )

        class request_class(base):  # type: ignore[valid-type,misc]
            # Celery reads the timezone from the configuration for every request (a
            # fifth of the time it takes to build one) and keeps it only when one is
            # set: here once per worker. Unset means UTC to Celery; our expiry times
            # carry their offset anyway.
            _tzlocal = app.conf.timezone or "UTC"

        revoked = worker_state.revoked
        # Messages with an ETA (we send none) go the usual way, through the timer.
        per_task = default(task, app, consumer)
        pending = self._pending

        # Configuration, the same for every message: asked once.
        utc_default = app.uses_utc_timezone()
        broker_clock = self._broker_clock

        def handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any) -> None:
            received = body
            if body is None:  # protocol 2: the body is still encoded
                payload = _payload(message)
                if isinstance(payload, dict) and "args" in payload:
                    body, headers, decoded, utc = hybrid_to_proto2(message, payload)
                else:
                    body, headers, decoded, utc = payload, message.headers, True, utc_default
            else:
                body, headers, decoded, utc = proto1_to_proto2(message, body)
            if headers.get("eta"):
                per_task(message, received, ack, reject, callbacks)
                return
            request = request_class(
                message,
                on_ack=ack,
                on_reject=reject,
                app=app,
                hostname=hostname,
                eventer=eventer,
                task=task,
                connection_errors=connection_errors,
                body=body,
                headers=headers,
                decoded=decoded,
                utc=utc,
            )
            if request.expires:
                # The web set it on the broker's clock (api.fanout); Celery compares it
                # with this worker's: moved onto it by the offset the heartbeat read
                # (no round trip here), so a worker whose clock is ahead expires none
                # too soon.
                request.expires -= timedelta(seconds=broker_clock.offset)
            if not isinstance(request.id, str):
                # Its result has no key; in the batch, it would cost the others theirs.
                raise Malformed("a task id that is not a string")
            # Expired (its request gave up on it): stored as REVOKED, acked, announced,
            # Celery's way. What was taken with it still makes a batch (below): one
            # each through here would be Celery's way too.
            if (request.expires or request.id in revoked) and request.revoked():
                if self._taking:
                    return
            else:
                signals.task_received.send(sender=consumer, request=request)
                if _task_events(eventer, task):  # e.g. turned on by Flower
                    eventer.send(
                        "task-received",
                        uuid=request.id,
                        name=request.name,
                        args=request.argsrepr,
                        kwargs=request.kwargsrepr,
                        root_id=request.root_id,
                        parent_id=request.parent_id,
                        retries=request.request_dict.get("retries", 0),
                        eta=None,
                        expires=request.expires and request.expires.isoformat(),
                    )
                pending.append(request)
                if self._taking:
                    return  # delivered by _take below: part of the batch in hand
            events = _task_events(eventer, task)
            self._taking = True
            try:
                self._take(message.channel, events)
            finally:
                self._taking = False
            batch = pending[:]
            pending.clear()
            try:
                self.run(task, batch, events)
            except Exception:
                # Not into the consumer: it would drop the broker connection. The
                # batch's requests report what has no result as failures.
                log.exception("end-contact batch raised")

        return handler

    def _take(self, channel: Any, events: bool) -> None:
        """Add what waits on the queue to the batch in hand: a message plainly ours as
        a PlainRequest (plain.py), any other through the consumer, as kombu delivers
        it, to come back through the handler above."""
        fast = self._reader.on(events)
        for raw in self._waiting.take(channel, QUEUE):
            request = self._reader.read(raw) if fast else None
            if request is not None:
                self._pending.append(request)
            elif (message := envelope(raw)) is not None:
                # Not an envelope: taken off the queue, it is gone, logged by envelope()
                # as one the transport pops.
                deliver(channel, message, QUEUE)

    def run(self, task: Any, requests: Sequence[Any], events: bool) -> None:
        """Apply the batch's changes, on disk, then store each task's result.

        Celery's task_prerun and task_postrun are sent once for the batch, as
        celery-batches does (a batch id, the requests as its one argument): what
        listens to them sees one execution that carries many tasks.
        """
        live: list[Any] = []
        expired: list[PlainRequest] = []
        for request in requests:
            if isinstance(request, PlainRequest) and request.expired:
                expired.append(request)
            else:
                live.append(request)
        if expired:
            self._discard(task, expired)
        requests = live
        if not requests:
            return
        batch_id = uuid()
        args = (list(requests),)
        signals.task_prerun.send(sender=task, task_id=batch_id, task=task, args=args, kwargs={})
        state = states.FAILURE
        try:
            state = self._run(task, requests, events)
        finally:
            signals.task_postrun.send(
                sender=task,
                task_id=batch_id,
                task=task,
                args=args,
                kwargs={},
                retval=None,
                state=state,
            )

    def _discard(self, task: Any, requests: Sequence[PlainRequest]) -> None:
        """Expired requests, discarded as Celery discards one (Request.revoked): logged
        in its words, its id kept as revoked, REVOKED stored, task_revoked sent. Here in
        one round trip for all: one each, Celery's way, cost the workers 637-725 µs of
        CPU a task against 137-151 so (bench.expired), and tasks expiring in a queue
        behind slowed them down most when they were furthest behind (docs/overload.md)."""
        for request in requests:
            revoked_log.info("Discarding revoked task: %s[%s]", request.name, request.id)
            worker_state.revoked.add(request.id)
        if not task.ignore_result or task.store_errors_even_if_ignored:
            reason = TaskRevokedError("expired")
            try:
                task.backend.store_results(
                    [(r.id, states.REVOKED, reason, r.expires) for r in requests]
                )
            except Exception as exc:
                log.error("storing %d results failed: %s", len(requests), exc.__class__.__name__)
        for request in requests:
            context = Context(id=request.id, task=request.name, args=request.args, kwargs={})
            signals.task_revoked.send(
                sender=task, request=context, terminated=False, signum=None, expired=True
            )

    def _run(self, task: Any, requests: Sequence[Any], events: bool) -> str:
        started = time.perf_counter()
        # Until the batch says otherwise: what raises past the steps below fails them all.
        outcomes: list[bool | BatchFailed] = [BatchFailed("the batch stopped")] * len(requests)
        elapsed = 0.0
        try:
            _count_plain([request for request in requests if isinstance(request, PlainRequest)])
            # Each request on its own: a malformed one fails alone.
            changes = [_accepted(request, events, self._store_clock) for request in requests]
            outcomes = self._apply(requests, changes)
            elapsed = time.perf_counter() - started
            results = [
                (
                    request.id,
                    states.FAILURE if isinstance(o, BatchFailed) else states.SUCCESS,
                    o,
                    request.expires,
                )
                for request, o in zip(requests, outcomes, strict=True)
            ]
            try:
                task.backend.store_results(results)
            except Exception as exc:
                # The marks are stored; the requests waiting for these results will
                # report them as failures, which the client may send again (HSETNX is
                # idempotent).
                log.error("storing %d results failed: %s", len(requests), exc.__class__.__name__)
        finally:
            # Whatever happened, no request of the batch stays active in Celery's books.
            for request, outcome in zip(requests, outcomes, strict=True):
                if not isinstance(request, PlainRequest):
                    ok = not isinstance(outcome, Exception)
                    worker_state.task_ready(request, successful=ok)
        for request, outcome in zip(requests, outcomes, strict=True):
            if events:
                _send_outcome(request, outcome, elapsed)
        errors = sum(isinstance(outcome, BatchFailed) for outcome in outcomes)
        self._metrics.count_tasks(len(requests) - errors, errors, elapsed)
        return str(states.FAILURE if errors == len(requests) else states.SUCCESS)

    def _apply(
        self, requests: Sequence[Any], changes: Sequence[Change | BatchFailed]
    ) -> list[bool | BatchFailed]:
        """Each request's outcome: whether its change changed anything, or why it failed."""
        try:
            stored = iter(self._store.apply_changes([c for c in changes if isinstance(c, Change)]))
        except Exception as exc:
            # Redis down, a timeout, not on disk in time: no change of the batch is vouched for.
            log.error("change batch of %d failed: %s", len(requests), told(exc))
            failed = BatchFailed(exc.__class__.__name__)
            return [c if isinstance(c, BatchFailed) else failed for c in changes]
        return [_outcome(r, c, stored) for r, c in zip(requests, changes, strict=True)]


class SoloPool(bootsteps.Step):  # type: ignore[misc]
    """The worker of an app whose tasks run in Batches starts with the solo pool only
    (a worker bootstep: `app.steps["worker"].add(SoloPool)`).

    A batch runs inline in the consumer, as the solo pool runs a task. Under another
    pool it would run there all the same: the pool's processes or threads idle, its
    limits (time limits, tasks per child) never applied, and the worker announcing a
    concurrency it does not have. Celery's `worker` command takes prefork unless told
    otherwise: refused here, before the worker starts anything, in one line and exit
    status 2, as a bad setting is (shared.settings).
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        # By now Celery has resolved --pool (or worker_pool) to the pool's class.
        if not issubclass(parent.pool_cls, SoloTaskPool):
            pool = parent.pool_cls.__module__.rpartition(".")[2]
            with exit_on_bad_settings():
                raise SettingsError(
                    f"the worker's pool must be solo (--pool=solo), not {pool}: it runs its"
                    " tasks in batches inside its consumer (`endcontact worker` starts it so)"
                )


def _task_events(eventer: Any, task: Any) -> bool:
    """Whether task events go out now: Celery's own test, asked once for a batch."""
    if eventer is None or not eventer.enabled or not task.send_events:
        return False
    return not eventer.groups or "task" in eventer.groups


def _payload(message: Any) -> Any:
    """The decoded body: what message.payload gives, without kombu's registry and
    object hook when it is plain JSON we accept (a seventh of the CPU per message)."""
    accept = message.accept
    if (
        message.content_type == "application/json"
        and message.content_encoding == "utf-8"
        and (accept is None or "application/json" in accept)
    ):
        try:
            return json.loads(message.body)
        except ValueError:
            pass  # kombu raises the error Celery knows how to handle
    return message.payload


def _accepted(request: Any, events: bool, store_clock: ServerClock) -> Change | BatchFailed:
    """Acknowledge a request (on receipt, task_acks_late=False, as Celery does before
    running a task), count it active, and read the change it asks for; or why it fails,
    logged with its traceback."""
    try:
        if not isinstance(request, PlainRequest):  # counted with its batch (_count_plain)
            request.acknowledge()
            worker_state.task_accepted(request)
        if events:
            request.send_event("task-started")
        return _change(request, store_clock)
    except Exception as exc:
        # As Celery logs a task that raised, without its arguments: a malformed
        # message's may hold a number in clear.
        name, task_id, error = request.name, request.id, exc.__class__.__name__
        log.exception("%s task %s failed: %s", name, task_id, error, extra={"task_id": task_id})
        return exc if isinstance(exc, BatchFailed) else BatchFailed(error)


def _count_plain(requests: Sequence[PlainRequest]) -> None:
    """What Celery counts of each task it accepts (worker_state.task_accepted), for a
    batch's PlainRequests at once: the totals `celery inspect stats` shows, at a tenth of
    the CPU. Not the set of active requests, which a solo worker shows `celery inspect`
    only between batches, when none of them is active any more."""
    if requests:
        worker_state.total_count.update(Counter(request.name for request in requests))
        worker_state.all_total_count[0] += len(requests)


def _change(request: Any, store_clock: ServerClock) -> Change:
    """The change a request asks for (Malformed if its arguments are not ours), with its
    expiry (its request's deadline) for the store to check when it writes: the check on
    receipt (Batches.strategy) cannot see a worker stopped, or a store stalled, after
    it. The expiry is on this worker's clock by then (moved there from the broker's);
    the store compares it with its own, so it moves once more, by the store's offset."""
    deadline_ms = 0
    if request.expires is not None:
        deadline_ms = math.floor((request.expires.timestamp() + store_clock.offset) * 1000)
    change = None if request.kwargs else change_of(request.name, request.args, deadline_ms)
    if change is None:
        raise Malformed("arguments are not those of a change (shared.tasks)")
    return change


def _outcome(
    request: Any, change: Change | BatchFailed, stored: Iterator[bool | None]
) -> bool | BatchFailed:
    if isinstance(change, BatchFailed):
        return change  # logged when it was read
    if (changed := next(stored)) is None:
        # The store refused this campaign's changes (e.g. WRONGTYPE), its node of a
        # Cluster failed or did not vouch for them, or this request's deadline had
        # passed; the others stand.
        failed = BatchFailed("refused by the store (its campaign's keys or node, or deadline)")
        # As Celery logs a task that raised: its id and its arguments' repr (masked).
        log.error("%s task %s %s failed: %s", request.name, request.id, request.argsrepr, failed)
        return failed
    return changed


def _send_outcome(request: Any, outcome: bool | BatchFailed, elapsed: float) -> None:
    try:
        if isinstance(outcome, BatchFailed):
            request.send_event("task-failed", exception=repr(outcome), traceback=None)
        else:
            request.send_event("task-succeeded", result=repr(outcome), runtime=elapsed)
    except Exception:
        # Only the event is lost: the result is stored, the books are kept.
        log.exception("could not send the outcome of task %s", request.id)
