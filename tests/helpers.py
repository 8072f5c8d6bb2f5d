"""What the tests share: the endpoint's path, one way to post numbers, one way to wait."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

URL = "/api/v1/leads/end-contact"

# httpx gives every client it makes (each httpx.get and .post makes one) an SSL context
# of its own, loading the CA bundle: 85 ms a client, 400 ms on this 2-core machine when
# busy (measured), paid on every poll of a wait for a web to answer. The tests speak
# plain HTTP to 127.0.0.1: every client of theirs shares this one (`verify=TLS`).
TLS = httpx.create_ssl_context()

T = TypeVar("T")


def lookup_path(number: str) -> str:
    """The lookup's path for `number` as typed, URL-encoded as a client would."""
    return f"{URL}/{httpx.URL(number).raw_path.decode()}"


def numbers(first: int, count: int = 50) -> list[str]:
    """`count` distinct valid US numbers, (509) 555-`first` onwards, in national format."""
    return [f"(509) 555-{n:04d}" for n in range(first, first + count)]


def post_numbers(
    http: httpx.Client | str, headers: Mapping[str, str], phones: Sequence[object]
) -> httpx.Response:
    """POST `phones` as the phoneNumberList, through a client or to a base URL (then on
    a connection of its own, so a web of several processes spreads the requests)."""
    body = {"phoneNumberList": list(phones)}
    if isinstance(http, str):
        return httpx.post(f"{http}{URL}", json=body, headers=dict(headers), timeout=30, verify=TLS)
    return http.post(URL, json=body, headers=dict(headers))


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the service's settings (REDIS_*, ENDCONTACT_*:
    a developer's shell may hold some), with `env` over it."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ENDCONTACT_"))}
    return {**kept, **env}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response's RFC 9457 problem document, asserted to be one of `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    return problem


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    watch: Sequence[subprocess.Popen[bytes]] = (),
    logs: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> T:
    """Poll `condition` until it returns something true, and return that.

    Fails with an AssertionError naming `what` at the deadline, or as soon as a process
    in `watch` has exited (waiting on would be waiting for nothing); `logs()` is added
    to the message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        problem = next(
            (f"{p.args!r} exited with {p.returncode}" for p in watch if p.poll() is not None),
            None,
        )
        if problem is None and time.monotonic() > deadline:
            problem = f"not within {timeout} s"
        if problem is not None:
            raise AssertionError(f"{what}: {problem}" + (f"\n{logs()}" if logs else ""))
        time.sleep(interval)


def terminal_output(controller: int) -> Iterator[bytes]:
    """What a pseudo-terminal's programs write, chunk by chunk, until the last of them
    has gone (then reading raises EIO, or gives nothing)."""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            return
        if not chunk:
            return
        yield chunk
