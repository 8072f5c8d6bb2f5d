"""Batches: a worker runs the tasks waiting on the queue together (worker/batch.py), and
the web builds a request's messages from one template (api/publisher.py)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from api.publisher import TaskPublisher
from shared.apikeys import Scope
from shared.embedded import free_port, local_url, start_server, stop_server
from shared.events import ENDED, Change, Context
from shared.store import NotDurable, Store, ended_key
from shared.tasks import QUEUE, RESULT_KEY_PREFIX, listener_of, task_id
from tests.conftest import Caller, new_caller
from tests.helpers import numbers, post_numbers, wait_until
from tests.processes import Stack, stop
from worker.batch import SHARED_FROM

# A worker takes one message, then every waiting one if fewer than SHARED_FROM wait.
ONE_BATCH = 30
assert ONE_BATCH <= SHARED_FROM
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


def test_task_ids_name_their_listener() -> None:
    listener = uuid.uuid4().hex
    assert listener_of(task_id(listener, 7)) == listener
    assert listener_of(str(uuid.uuid4())) is None  # Celery's own ids
    assert listener_of(f"{listener}-batch") is None
