"""What the sync and async clients share: paths, headers, reading answers."""

from __future__ import annotations

import functools
import ssl
from typing import Any
from urllib.parse import quote

import httpx

from endcontact_client.errors import ProblemError, not_a_problem, parse_problem
from endcontact_client.retry import parse_retry_after

BASE = "/api/v1/leads"
END = f"{BASE}/end-contact"
RESUME = f"{BASE}/resume-contact"
CHECK = f"{END}/check"
EVENTS = f"{END}/events"
NOT_ENDED = "/problems/not-ended"
USER_AGENT = "endcontact-client/0.1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_FOR = 30.0
DEFAULT_POLL_INTERVAL = 1.0
PAGE_SIZE = 1000


def headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "user-agent": USER_AGENT, "accept": "application/json"}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once
    per process: httpx makes one for every client otherwise, and loading the CA bundle
    costs ~28 ms of CPU each time (the importer makes a client per request in flight)."""
    return httpx.create_ssl_context()


def number_path(number: str, tail: str = "") -> str:
    """The lookup's (or history's) path: the number as given, every reserved character
    escaped, so "(509) 555-1234" and "+1 509…" reach the service as typed."""
    return f"{END}/{quote(number, safe='')}{tail}"


def change_body(numbers: list[str], reason: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"phoneNumberList": numbers}
    if reason is not None:
        body["reason"] = reason
    return body


def error_of(response: httpx.Response) -> ProblemError:
    """The ProblemError an error answer stands for."""
    problem = parse_problem(
        response.status_code, response.headers.get("content-type", ""), response.content
    )
    return ProblemError(
        problem,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        request_id=response.headers.get("x-request-id"),
    )


def json_of(response: httpx.Response) -> dict[str, Any]:
    """A success's JSON object; an answer that is none (a proxy's page with a 200) is a
    ProblemError that is not retryable, since nothing says a retry would fare better."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProblemError(
            not_a_problem(
                response.status_code, response.headers.get("content-type", ""), response.content
            ),
            request_id=response.headers.get("x-request-id"),
        )
    return body
