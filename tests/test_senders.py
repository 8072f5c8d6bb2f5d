"""A webhook attempt against a receiver that answers, but slowly: a byte now and then,
each within the socket's timeout, so that only a total deadline ends it (issue 19)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

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
