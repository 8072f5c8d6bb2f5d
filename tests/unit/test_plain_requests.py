"""The batch's fast path, in process: a message the web publishes is read straight from
its envelope into what a batch needs of it, and anything Celery would do more with is
left to Celery (worker/celery_seam/plain.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import signals
from celery.worker import state as worker_state

from api.publisher import TaskPublisher
from shared.apikeys import Scope
from shared.clock import ServerClock
from shared.events import Context
from shared.tasks import KINDS, RESUME_TASK_NAME, TASK_NAME, change_of, task_args
from worker.celery_seam import envelope
from worker.celery_seam.plain import PlainRequest, Reader

SCOPE = Scope("acme", "spring")
CONTEXT = Context("k1", "req-1", "asked by phone")


def envelope_of(
    expires: datetime | None = None, name: str = TASK_NAME, **changes: Any
) -> dict[str, Any]:
    """A message as the web publishes it, decoded; `changes` edit its headers, or with
    `body=` its decoded body."""
    expires = expires or datetime.now(UTC) + timedelta(seconds=5)
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    args = task_args(SCOPE, "+15095550100", CONTEXT)
    (text,) = publisher.messages(["abc-1"], [args], ["['+150955*****']"], expires, name)
    message = envelope(text.encode())
    assert message is not None
    if "body" in changes:
        body = json.dumps(changes.pop("body")).encode()
        message["body"] = base64.b64encode(body).decode()
    message["headers"].update(changes)
    return message


def published(expires: datetime | None = None, name: str = TASK_NAME, **changes: Any) -> bytes:
    """The entry of the queue that holds envelope_of(...)."""
    return json.dumps(envelope_of(expires, name, **changes)).encode()


@pytest.fixture
def reader() -> Reader:
    return Reader(KINDS, ServerClock())


def test_a_published_message_is_read_as_celery_would(reader: Reader) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=5)
    request = reader.read(published(expires))
    assert isinstance(request, PlainRequest)
    assert (request.id, request.name, request.kwargs) == ("abc-1", TASK_NAME, {})
    assert request.args == task_args(SCOPE, "+15095550100", CONTEXT)
    assert request.argsrepr == "['+150955*****']"  # masked, as the web wrote it
    assert request.expires == expires
    assert change_of(request.name, request.args) is not None
    resumed = reader.read(published(name=RESUME_TASK_NAME))
    assert resumed is not None
    assert resumed.name == RESUME_TASK_NAME


def test_the_expiry_moves_onto_this_workers_clock() -> None:
    clock = ServerClock()
    clock.offset = 2.0  # the broker's clock is 2 s ahead of this worker's
    expires = datetime.now(UTC) + timedelta(seconds=5)
    request = Reader(KINDS, clock).read(published(expires))
    assert request is not None
    assert request.expires == expires - timedelta(seconds=2)


def test_a_past_expiry_is_read_and_marked_expired(reader: Reader) -> None:
    # Discarded by the batch as Celery discards one (worker/celery_seam/batch.py).
    past = datetime.now(UTC) - timedelta(seconds=1)
    request = reader.read(published(past))
    assert request is not None
    assert request.expired
    assert request.expires == past
    live = reader.read(published(datetime.now(UTC) + timedelta(seconds=5)))
    assert live is not None
    assert not live.expired


@pytest.mark.parametrize(
    "changes",
    [
        {"eta": datetime.now(UTC).isoformat()},  # Celery's timer
        {"expires": "2026-12-07T08:00:00"},  # no offset: Celery takes its timezone
        {"expires": "soon"},
        {"task": "someone.elses"},
        {"id": 7},
        {"body": [["acme"], {"x": 1}, {"callbacks": None}]},  # kwargs
        {"body": [[], {}, {"callbacks": [{"task": "t"}], "errbacks": None}]},
        {"body": {"args": []}},  # protocol 1
    ],
)
def test_what_celery_does_more_with_is_left_to_it(reader: Reader, changes: Any) -> None:
    assert reader.read(published(**changes)) is None


@pytest.mark.parametrize(
    "entry",
    [b"not json", b"[1, 2]", b'"text"', b"\xff", b"{}", b'{"headers": [], "properties": {}}'],
)
def test_an_entry_that_is_no_message_is_left_to_the_transport(reader: Reader, entry: bytes) -> None:
    # transport.envelope() drops and logs it (tests/unit/test_transport.py).
    assert reader.read(entry) is None


def test_a_body_that_is_not_json_is_left_to_celery(reader: Reader) -> None:
    message = envelope_of()
    message["body"] = base64.b64encode(b"{not json").decode()
    assert reader.read(json.dumps(message).encode()) is None
    message = envelope_of()
    message["properties"]["body_encoding"] = "utf-8"
    assert reader.read(json.dumps(message).encode()) is None
    message = envelope_of(task=["a list"])
    assert reader.read(json.dumps(message).encode()) is None


def test_a_revoked_task_is_left_to_celery(reader: Reader) -> None:
    worker_state.revoked.add("abc-1")
    try:
        assert reader.read(published()) is None
    finally:
        worker_state.revoked.discard("abc-1")


@pytest.fixture
def listened() -> Iterator[None]:
    def receiver(**kwargs: Any) -> None:
        pass

    signals.task_received.connect(receiver)
    yield
    signals.task_received.disconnect(receiver)


def test_the_fast_path_is_off_while_events_or_task_received_need_requests(
    reader: Reader, listened: None
) -> None:
    assert not reader.on(events=False)  # something listens to task_received


def test_the_fast_path_is_on_without_events_or_listeners(reader: Reader) -> None:
    assert reader.on(events=False)
    assert not reader.on(events=True)
