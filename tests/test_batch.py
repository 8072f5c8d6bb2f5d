"""Batches: a worker runs the tasks waiting on the queue together (worker/celery_seam/batch.py), and
the web builds a request's messages from one template (api/publisher.py)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from celery.states import FAILURE, SUCCESS
from hypothesis import given
from hypothesis import strategies as st

from api.publisher import TaskPublisher
from shared.apikeys import Scope
from shared.embedded import free_port, local_url, start_server, stop_server
from shared.events import ENDED, Change, Context
from shared.keyspace import ended_key
from shared.mark_writes import NotDurable
from shared.settings import Settings
from shared.store import Store
from shared.tasks import (
    KEPT_PAST_EXPIRY,
    QUEUE,
    RESULT_KEY_PREFIX,
    TASK_NAME,
    listener_of,
    task_id,
)
from tests.conftest import Caller, new_caller
from tests.helpers import clean_env, numbers, post_numbers, wait_until
from tests.processes import ROOT, Stack, stop
from worker.app import RESULT_EXPIRES, create_celery
from worker.celery_seam.batch import BATCH_MAX, SHARED_FROM, BatchFailed

# A worker pops up to BATCH_MAX messages at once (or, from a broker without BLMPOP, one,
# then every waiting one if fewer than SHARED_FROM wait).
ONE_BATCH = 30
assert min(SHARED_FROM, BATCH_MAX) >= ONE_BATCH
pytestmark = pytest.mark.timeout(180)


def post(base: str, caller: Caller, phones: list[str]) -> httpx.Response:
    return post_numbers(base, caller.headers, phones)


def one_batch(stack: Stack, requests: list[tuple[Caller, list[str]]]) -> list[httpx.Response]:
    """Send `requests` while no worker runs, wait until all their messages are on the
    queue, then start one worker: its first batch is every one of them."""
    assert sum(len(phones) for _, phones in requests) <= ONE_BATCH
    assert stack.worker is not None
    stop(stack.worker)
    queue = stack.broker_client
    total = sum(len(phones) for _, phones in requests)
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(post, stack.base, caller, phones) for caller, phones in requests]
        wait_until(lambda: queue.llen(QUEUE) == total, 30, "every message on the queue")
        stack.start_worker()
        return [future.result() for future in futures]


@pytest.fixture
def slow_stack(tmp_path: Path) -> Iterator[Stack]:
    # A deadline long enough for a worker to start while requests wait.
    stack = Stack(tmp_path, timeout=20.0).start()
    yield stack
    stack.stop()


def test_a_batch_mixes_new_and_already_ended_numbers(slow_stack: Stack) -> None:
    stack = slow_stack
    store = Store(stack.client)
    caller = new_caller(store)
    old = post(stack.base, caller, numbers(0, 15)).json()["success"]
    assert len(old) == 15
    before = {phone: store.ended_at(caller.key.scope, phone) for phone in old}

    (response,) = one_batch(stack, [(caller, numbers(0, 15) + numbers(100, 15))])

    assert response.status_code == 201
    assert response.json()["failure"] == []
    success = response.json()["success"]
    assert success[:15] == old
    # Already ended: still a success, and its time is the first one.
    assert {phone: store.ended_at(caller.key.scope, phone) for phone in old} == before
    new = {store.ended_at(caller.key.scope, phone) for phone in success[15:]}
    # One batch, one time for all its new marks (one task at a time, they would differ).
    assert len(new) == 1
    assert None not in new
    assert new.isdisjoint(before.values())


def test_a_refused_mark_fails_only_its_numbers(slow_stack: Stack) -> None:
    stack = slow_stack
    store = Store(stack.client)
    broken, fine = new_caller(store), new_caller(store)
    # The campaign's hash is not a hash: every HSETNX on it gets WRONGTYPE.
    stack.client.set(ended_key(broken.key.scope), "not a hash")

    refused, accepted = one_batch(stack, [(broken, numbers(0, 10)), (fine, numbers(0, 20))])

    assert refused.status_code == accepted.status_code == 201
    assert refused.json()["success"] == []
    assert len(refused.json()["failure"]) == 10
    assert accepted.json()["failure"] == []
    for phone in accepted.json()["success"]:
        assert store.ended_at(fine.key.scope, phone) is not None
    logs = stack.logs()
    assert "failed: refused by the store" in logs
    for phone in numbers(0, 10):
        assert phone not in logs
        assert "+1" + "".join(filter(str.isdigit, phone)) not in logs


def test_worker_killed_with_a_batch_in_hand_reports_no_success(tmp_path: Path) -> None:
    stack = Stack(tmp_path, timeout=5.0).start()
    try:
        store = Store(stack.client)
        caller = new_caller(store)
        admin = stack.client
        marks = ended_key(caller.key.scope)
        # Without fsyncs, WAITAOF waits (up to 2 s): the worker holds its batch, marks
        # written but not yet on disk, while this test looks and kills it.
        admin.config_set("appendfsync", "no")
        try:
            with ThreadPoolExecutor(1) as pool:
                future = pool.submit(post, stack.base, caller, numbers(0, ONE_BATCH))
                wait_until(
                    lambda: admin.hlen(marks) == ONE_BATCH,
                    30,
                    "the batch's marks written",
                    interval=0.005,
                )
                # Every message taken, every mark written, no result claims success.
                broker = stack.broker_client
                assert broker.llen(QUEUE) == 0
                results = broker.keys(f"{RESULT_KEY_PREFIX}*")
                assert not any('"SUCCESS"' in (broker.get(key) or "") for key in results)
                assert stack.worker is not None
                stack.worker.send_signal(signal.SIGKILL)
                assert stack.worker.wait(30) == -signal.SIGKILL
                response = future.result()
        finally:
            admin.config_set("appendfsync", "always")
        assert response.status_code == 201
        assert response.json()["success"] == []
        assert len(response.json()["failure"]) == ONE_BATCH

        stack.start_worker()
        again = post(stack.base, caller, numbers(0, 50)).json()
        assert again["failure"] == []
        assert len(again["success"]) == 50
    finally:
        stack.stop()


def _ending(scope: Scope, phone: str) -> Change:
    return Change(scope, phone, ENDED, Context("key_test", "request-test"))


def test_apply_changes_answers_per_mark(store: Store, redis_url: str) -> None:
    fresh, refused = Scope("batch", uuid.uuid4().hex), Scope("batch", uuid.uuid4().hex)
    store.apply_changes([_ending(fresh, "+15095550001")])
    # The script's HMGET on this campaign's key gets WRONGTYPE.
    redis.Redis.from_url(redis_url).set(ended_key(refused), "not a hash")
    answers = store.apply_changes(
        [
            _ending(fresh, "+15095550001"),
            _ending(fresh, "+15095550002"),
            _ending(refused, "+15095550003"),
        ]
    )
    assert answers == [False, True, None]


def test_apply_changes_is_not_durable_without_an_append_only_file(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path, port, extra_args=("--appendonly", "no"))
    try:
        store = Store(redis.Redis.from_url(local_url(port), decode_responses=True))
        with pytest.raises(NotDurable):
            store.apply_changes([_ending(Scope("batch", "volatile"), "+15095550001")])
    finally:
        stop_server(server)


@pytest.fixture
def worker_app(redis_url: str, broker_url: str) -> Celery:
    """The worker's Celery app, its backend (worker/celery_seam/backend.py) as the worker
    configures it."""
    settings = Settings.from_env({"REDIS_URL": redis_url, "ENDCONTACT_BROKER_URL": broker_url})
    return create_celery(settings)


def test_a_batch_stores_its_failures_beside_its_successes(
    worker_app: Celery, broker_url: str
) -> None:
    app = worker_app
    listener = uuid.uuid4().hex
    done, refused, celerys = task_id(listener, 0), task_id(listener, 1), str(uuid.uuid4())
    # Successes share their text but for the id (made from one template a batch).
    kept, odd = task_id(listener, 2), f'{uuid.uuid4()} "odd" \\ é'
    soon = datetime.now(UTC) + timedelta(seconds=5)
    app.backend.store_results(
        [
            (done, SUCCESS, True, soon),
            (refused, FAILURE, BatchFailed("refused by the store"), soon),
            (celerys, FAILURE, BatchFailed("refused by the store"), None),
            (kept, SUCCESS, False, soon),
            (odd, SUCCESS, True, soon),
        ]
    )
    broker = redis.Redis.from_url(broker_url, decode_responses=True)
    for task, state in ((done, SUCCESS), (refused, FAILURE), (celerys, FAILURE)):
        stored = broker.get(RESULT_KEY_PREFIX + task)
        assert stored is not None, task
        assert json.loads(stored)["status"] == state
        assert 0 < broker.ttl(RESULT_KEY_PREFIX + task) <= RESULT_EXPIRES
        # As any Celery client reads it.
        assert app.AsyncResult(task).state == state
    for task, result in ((done, True), (kept, False), (odd, True)):
        stored = broker.get(RESULT_KEY_PREFIX + task) or ""
        # The text Celery's backend stores, byte for byte (its meta through json.dumps).
        meta = {"status": SUCCESS, "result": result, "traceback": None, "children": []}
        meta |= {"date_done": json.loads(stored)["date_done"], "task_id": task}
        assert stored == json.dumps(meta)
        assert app.AsyncResult(task).result is result
    broker.close()


names = st.text(st.characters(codec="utf-8"), max_size=30)


@given(company=names, campaign=names, phones=st.lists(names, min_size=1, max_size=50))
def test_messages_from_one_template_are_celerys_byte_for_byte(
    company: str, campaign: str, phones: list[str]
) -> None:
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    expires = datetime.now(UTC) + timedelta(seconds=5)
    listener = uuid.uuid4().hex
    ids = [task_id(listener, n) for n in range(len(phones))]
    args = [[company, campaign, phone] for phone in phones]
    reprs = [repr([phone]) for phone in phones]
    one_by_one = [
        publisher.message(i, a, r, expires) for i, a, r in zip(ids, args, reprs, strict=True)
    ]
    assert publisher.messages(ids, args, reprs, expires) == one_by_one


def test_the_results_of_a_request_leave_the_broker_soon_after_its_deadline(
    tmp_path: Path,
) -> None:
    # At 21,000 numbers a second the broker held 1.5 million results, 470 MB, when each
    # was kept for Celery's result_expires (a minute).
    stack = Stack(tmp_path, timeout=2.0).start()
    try:
        caller = new_caller(Store(stack.client))
        response = post(stack.base, caller, numbers(0, 3))
        assert response.status_code == 201
        assert len(response.json()["success"]) == 3
        broker = stack.broker_client
        results = list(broker.scan_iter(match=RESULT_KEY_PREFIX + "*"))
        assert len(results) == 3
        for key in results:
            assert 0 < broker.ttl(key) <= 2 + KEPT_PAST_EXPIRY
    finally:
        stack.stop()


def test_a_result_is_kept_a_little_past_its_request_s_deadline(
    worker_app: Celery, broker_url: str
) -> None:
    """Until its task's expiry and KEPT_PAST_EXPIRY seconds more (its request's web process
    has read it by then), never longer than Celery's result_expires; as long as that
    for a task without expiry."""
    app = worker_app
    listener = uuid.uuid4().hex
    now = datetime.now(UTC)
    expiries = {
        "in 5 s": now + timedelta(seconds=5),
        "past": now - timedelta(seconds=60),
        "in an hour": now + timedelta(hours=1),
        "none": None,
    }
    tasks = {name: task_id(listener, n) for n, name in enumerate(expiries)}
    app.backend.store_results(
        [(tasks[name], SUCCESS, True, expires) for name, expires in expiries.items()]
    )
    broker = redis.Redis.from_url(broker_url, decode_responses=True)
    ttl = {name: broker.ttl(RESULT_KEY_PREFIX + task) for name, task in tasks.items()}
    assert KEPT_PAST_EXPIRY < ttl["in 5 s"] <= 5 + KEPT_PAST_EXPIRY
    assert ttl["past"] == 1
    assert RESULT_EXPIRES - 5 < ttl["in an hour"] <= RESULT_EXPIRES
    assert RESULT_EXPIRES - 5 < ttl["none"] <= RESULT_EXPIRES


def test_task_ids_name_their_listener() -> None:
    listener = uuid.uuid4().hex
    assert listener_of(task_id(listener, 7)) == listener
    assert listener_of(str(uuid.uuid4())) is None  # Celery's own ids
    assert listener_of(f"{listener}-batch") is None


# --- Malformed messages -------------------------------------------------------------

# The number the malformed messages carry: it must not show in the logs.
HIDDEN = "+15095559876"


def malformed_messages(listener: str) -> dict[str, tuple[str | None, str]]:
    """What a broken or hostile publisher may put on the queue, built from a real
    message (api/publisher.py) with one thing wrong each: kind -> (task id, message)."""
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    expires = datetime.now(UTC) + timedelta(minutes=5)
    scope_args = ["malformed", "tenant"]
    good_args = [*scope_args, HIDDEN, "key_x", "request-x", ""]
    made: dict[str, tuple[str | None, str]] = {}

    def make(kind: str, body: object = None, *, raw: bytes | None = None, drop: str = "") -> None:
        task = task_id(listener, len(made))
        envelope = json.loads(publisher.message(task, good_args, "['+15*******76']", expires))
        if raw is None:
            _, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
            raw = json.dumps(body if kind == "not three parts" else [body, kwargs, embed]).encode()
            if kind == "kwargs not a dict":
                raw = json.dumps([good_args, [HIDDEN], embed]).encode()
        envelope["body"] = base64.b64encode(raw).decode()
        if drop:
            del envelope["headers"][drop]
        made[kind] = (None if drop == "id" else task, json.dumps(envelope))

    make("wrong arity", scope_args)
    make("args not a list", HIDDEN)
    make("a number for a string", [*scope_args, 15095559876, "key_x", "request-x", ""])
    make("kwargs not a dict")
    make("not three parts", {"number": HIDDEN})
    make("body not JSON", raw=f'[["{HIDDEN}"'.encode())
    make("no id", good_args, drop="id")
    make("no task name", good_args, drop="task")
    return made


def _stored(broker: redis.Redis, task: str) -> Callable[[], int]:
    return lambda: broker.exists(RESULT_KEY_PREFIX + task)


def inspect(stack: Stack, what: str) -> Any:
    """`celery -A worker.celery_app inspect <what> --json`: each worker's answer."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "inspect", what, "--json"],
        cwd=ROOT,
        env=clean_env(stack.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_malformed_message_fails_only_itself(slow_stack: Stack) -> None:
    stack = slow_stack
    caller = new_caller(Store(stack.client))
    broker = stack.broker_client
    bad = malformed_messages(uuid.uuid4().hex)
    assert stack.worker is not None
    stop(stack.worker)
    # Oldest first: the worker's first message, and the batch it starts, has every
    # malformed one beside numbers of the request.
    broker.lpush(QUEUE, *(message for _, message in bad.values()))
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(post, stack.base, caller, numbers(0, 50))
        wait_until(lambda: broker.llen(QUEUE) == len(bad) + 50, 30, "every message queued")
        stack.start_worker()
        response = future.result()

    assert response.status_code == 201
    assert response.json()["failure"] == []
    assert len(response.json()["success"]) == 50
    # Each on its own now, the first message of its batch: dropped, and the worker
    # takes what comes next.
    alone = malformed_messages(uuid.uuid4().hex)
    for kind, (task, message) in alone.items():
        broker.lpush(QUEUE, message)
        # Handled: its failure stored, or (no id) at least taken.
        done = (lambda: broker.llen(QUEUE) == 0) if task is None else _stored(broker, task)
        wait_until(done, 10, f"{kind} dropped")
    again = post(stack.base, caller, numbers(100, 5))
    assert again.status_code == 201
    assert len(again.json()["success"]) == 5

    # A malformed message with a task id failed, as Celery stores a failure.
    for kind, (task, _) in [*bad.items(), *alone.items()]:
        if task is not None:
            stored = broker.get(RESULT_KEY_PREFIX + task)
            assert stored is not None, kind
            assert json.loads(stored)["status"] == "FAILURE", kind
    # Nothing left running or waiting in the worker's books.
    assert list(inspect(stack, "active").values()) == [[]]
    assert list(inspect(stack, "reserved").values()) == [[]]
    # Every task counted, as Celery counts the tasks it accepts, those read on the batch's
    # fast path (worker/celery_seam/plain.py) among them: all 55 numbers at least.
    (stats,) = inspect(stack, "stats").values()
    assert stats["total"][TASK_NAME] >= 55, stats["total"]
    # Each logged with its traceback, never with its number; none acknowledged twice.
    logs = stack.logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["level"] == "ERROR" and "traceback" in line]
    for kind, (task, _) in [*bad.items(), *alone.items()]:
        assert any("task_id" in line and line["task_id"] == task for line in failed), kind
    assert HIDDEN[2:] not in logs
    assert "acknowledged" not in logs


# Entries of the queue that are not kombu's envelope of a message at all.
NOT_MESSAGES = [
    f"not json {HIDDEN}",
    json.dumps([HIDDEN]),
    json.dumps({"body": HIDDEN, "headers": {"task": "endcontact.end_contact"}}),
    HIDDEN[2:],  # a number
]


def test_an_entry_that_is_not_a_message_costs_only_itself(stack: Stack) -> None:
    caller = new_caller(Store(stack.client))
    broker = stack.broker_client
    worker = stack.worker
    assert worker is not None

    def dropped(count: int, where: str) -> None:
        def logged() -> bool:
            return stack.logs().count("dropped a queue entry that is not a task message") == count

        wait_until(logged, 10, f"dropped {where}", watch=[worker], logs=stack.logs)

    # Alone: each the entry the worker waits on (kombu's transport reads it).
    broker.lpush(QUEUE, *NOT_MESSAGES)
    dropped(len(NOT_MESSAGES), "alone")
    # After a message, in one push: taken with it for its batch (worker.celery_seam.batch).
    good = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    task = task_id(uuid.uuid4().hex, 0)
    args = ["raw", "tenant", "+15095550100", "key_x", "request-x", ""]
    expires = datetime.now(UTC) + timedelta(minutes=5)
    broker.lpush(QUEUE, good.message(task, args, "['+15*******00']", expires), *NOT_MESSAGES)
    dropped(2 * len(NOT_MESSAGES), "in a batch")
    wait_until(_stored(broker, task), 10, "the message's result", watch=[worker])
    assert json.loads(broker.get(RESULT_KEY_PREFIX + task) or "")["status"] == SUCCESS

    response = post(stack.base, caller, numbers(0, 5))
    assert response.status_code == 201
    assert response.json()["failure"] == []
    assert len(response.json()["success"]) == 5
    # The same worker process: it never exited.
    assert worker.poll() is None
    assert stack.worker is worker
    assert broker.llen(QUEUE) == 0
    logs = stack.logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    drops = [line for line in lines if "dropped a queue entry" in line["message"]]
    assert [line["level"] for line in drops] == ["ERROR"] * 2 * len(NOT_MESSAGES)
    assert HIDDEN[2:] not in logs


def test_a_broker_without_blmpop_is_popped_one_entry_at_a_time(tmp_path: Path) -> None:
    """A worker pops a batch's worth at once with BLMPOP (Redis 7.0); where the broker
    refuses it (an older server, or here an ACL), it says so once and pops as kombu
    does, taking what else waits by its script: every number is still ended."""
    with Stack(tmp_path) as stack:
        stack.start_redis()
        stack.start_broker()
        stack.broker_client.acl_setuser(
            "default",
            enabled=True,
            nopass=True,
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-blmpop"],
        )
        stack.start_worker(concurrency=2)
        stack.start_web()
        caller = new_caller(Store(stack.client))
        for first in (0, 100):
            response = post(stack.base, caller, numbers(first, 50))
            assert response.status_code == 201
            assert response.json()["failure"] == []
            assert len(response.json()["success"]) == 50
        said = stack.logs().count("the broker cannot pop several entries at once")
        # Once per worker process that tried (two at most), not once a pop.
        assert 1 <= said <= 2


def test_expired_tasks_are_discarded_together_as_celery_discards_one(stack: Stack) -> None:
    """Tasks whose request gave up on them before a worker took them: the first of the
    worker's pop goes Celery's way (its Request's revoked()), the others are discarded
    together, in one round trip, each stored as Celery stores an expired task, logged
    and announced as Celery does it."""
    broker = stack.broker_client
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    past = datetime.now(UTC) - timedelta(minutes=1)
    listener = uuid.uuid4().hex
    tasks = [task_id(listener, n) for n in range(60)]
    phones = numbers(7_000, 60)
    args = [["expired", "tenant", phone, "key_x", "request-x", ""] for phone in phones]
    messages = publisher.messages(tasks, args, [repr(["+15*******00"])] * 60, past)
    published = broker.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)
    logged = stack.logs().count("Discarding revoked task")
    broker.lpush(QUEUE, *messages)  # at once: one pop takes them all
    wait_until(lambda: all(broker.exists(RESULT_KEY_PREFIX + t) for t in tasks), 30, "results")

    stored = {t: str(broker.get(RESULT_KEY_PREFIX + t) or "") for t in tasks}
    first = tasks[0]  # the oldest, popped first: Celery's way
    celerys = json.loads(stored[first])
    assert celerys["status"] == "REVOKED"
    assert celerys["result"]["exc_type"] == "TaskRevokedError"
    for task, text in stored.items():
        # Celery's text, byte for byte, but for its id and time.
        date = json.loads(text)["date_done"]
        expected = stored[first].replace(first, task).replace(celerys["date_done"], date)
        assert text == expected, task
    # Not announced one by one, as Celery's way announces each result (to its own key's
    # channel): the first so, the rest in one message (shared.tasks.batch_channel).
    assert broker.info("commandstats")["cmdstat_publish"]["calls"] - published <= 2
    # Logged as Celery logs each, and nothing marked.
    wait_until(
        lambda: stack.logs().count("Discarding revoked task") - logged == 60, 10, "the log lines"
    )
    assert Store(stack.client).ended_at(Scope("expired", "tenant"), phones[0]) is None
