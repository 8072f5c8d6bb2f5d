"""A webhook attempt against a receiver that answers, but slowly: a byte now and then,
each within the socket's timeout, so that only a total deadline ends it; and against a
name whose resolver never answers (issue 19)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from shared import deliveries
from shared.apikeys import Scope
from shared.clock import ServerClock
from shared.webhooks import EVENT_TYPES, new_webhook
from worker.deliveries.attempt import Finished, Job, attempt
from worker.senders import ATTEMPT_TIMEOUT, Connections, Request, error_of

# Longer than the attempt's deadline, a header line a second: well within the socket
# timeout each time.
TRICKLE_SECONDS = 3 * ATTEMPT_TIMEOUT


@pytest.fixture
def trickling() -> Iterator[int]:
    """The port of a receiver that reads a request, then sends its answer's head a line
    a second for TRICKLE_SECONDS, then a whole 200."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(65536)
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                for _ in range(int(TRICKLE_SECONDS)):
                    if stop.wait(1.0):
                        return
                    connection.sendall(b"x-slowly: 1\r\n")
                connection.sendall(b"content-length: 0\r\n\r\n")
            except OSError:
                return  # the sender gave up and closed

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_an_attempt_ends_at_its_deadline_however_the_receiver_trickles(trickling: int) -> None:
    request = Request(
        scheme="http",
        name="127.0.0.1",
        port=trickling,
        address=ip_address("127.0.0.1"),
        target="/hook",
        body=b"{}",
        headers={"content-type": "application/json"},
    )
    connections = Connections()
    try:
        with pytest.raises(TimeoutError) as cut:
            connections.post(request)
    finally:
        connections.close()
    assert error_of(cut.value) == f"timeout ({ATTEMPT_TIMEOUT:g} s)"


def test_a_resolver_that_hangs_costs_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    answered = threading.Event()

    def never_answers(*args: object, **kwargs: object) -> object:
        answered.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "no answer")

    # The system resolver, as one whose server never answers leaves it.
    monkeypatch.setattr(socket, "getaddrinfo", never_answers)
    hook = new_webhook(
        Scope("company", "campaign"), "https://hangs.example/hook", EVENT_TYPES, "key_test"
    )
    job = Job(hook, "1764452463512-0-0", 0, "{}")
    made: list[Finished] = []
    connections = Connections()
    sender = threading.Thread(
        target=lambda: made.append(attempt(job, connections, False, ServerClock()))
    )
    sender.start()
    sender.join(ATTEMPT_TIMEOUT + 5)
    in_time = not sender.is_alive()
    answered.set()
    sender.join()
    assert in_time, "the attempt did not end while the resolver hung"
    (finished,) = made
    assert finished.attempt.status is None
    assert finished.attempt.error is not None
    assert finished.attempt.error.startswith("timeout"), finished.attempt.error
    assert deliveries.outcome(finished.attempt, 1, (5,)) == deliveries.RETRY
