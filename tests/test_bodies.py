"""Oversized, truncated and slow bodies: refused early, never held forever."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx

from tests.conftest import Caller
from tests.helpers import TLS, URL, assert_problem, post_numbers


def _connect(web: str) -> socket.socket:
    address = urlparse(web)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def _head(caller: Caller, extra: str) -> bytes:
    return (
        f"POST {URL} HTTP/1.1\r\nhost: test\r\nx-api-key: {caller.secret}\r\n"
        f"content-type: application/json\r\n{extra}\r\n"
    ).encode()


def test_chunked_body_over_64_kib_is_refused_without_reading_it_all(
    web_client: httpx.Client, caller: Caller
) -> None:
    offered, sent = 64 * 1024, 0
    chunk = b"x" * 1024

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"phoneNumberList": ["5095551234"], "pad": "'
        for _ in range(offered):  # 64 MiB in all: more than any socket buffers hold
            sent += 1
            yield chunk
        yield b'"}'

    response = web_client.post(
        URL, content=chunks(), headers={**caller.headers, "content-type": "application/json"}
    )
    assert_problem(response, 413)
    # The service stopped reading: the client could not send it all.
    assert sent < offered, sent


def test_declared_length_over_64_kib_is_refused_before_the_body(web: str, caller: Caller) -> None:
    with _connect(web) as sock:
        sock.sendall(_head(caller, "content-length: 10000000\r\n"))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")


def test_truncated_body_does_not_harm_the_service(web: str, caller: Caller) -> None:
    with _connect(web) as sock:
        sock.sendall(_head(caller, "content-length: 100\r\n") + b'{"phoneNumberList": [')
    # The client went away mid-body; the service carries on.
    assert httpx.get(f"{web}/healthz", verify=TLS).status_code == 200
    assert post_numbers(web, caller.headers, ["(509) 555-1234"]).status_code == 201


def test_slow_body_gets_408(web: str, caller: Caller) -> None:
    started = time.monotonic()
    with _connect(web) as sock:
        sock.sendall(_head(caller, "content-length: 100\r\n") + b'{"phoneNumberList": [')
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - started < 20
