"""Reading error answers into one ProblemError: the service's documents, a proxy's
pages, no answer at all; and a chunk's pointers made to index the caller's list."""

from __future__ import annotations

import json

import httpx

from endcontact_client._core import error_of, number_path
from endcontact_client.errors import Problem, ProblemError, ProblemItem, parse_problem, unreachable


def test_a_problem_document_is_read_whole() -> None:
    body = {
        "type": "/problems/invalid-request",
        "title": "Bad Request",
        "status": 400,
        "detail": "1 entry of phoneNumberList must be fixed; nothing was processed.",
        "errors": [{"pointer": "/phoneNumberList/3", "value": "x", "reason": "not a phone"}],
        "errorsOmitted": 2,
    }
    problem = parse_problem(400, "application/problem+json", json.dumps(body).encode())
    assert problem == Problem(
        status=400,
        type="/problems/invalid-request",
        title="Bad Request",
        detail="1 entry of phoneNumberList must be fixed; nothing was processed.",
        errors=[ProblemItem(reason="not a phone", value="x", pointer="/phoneNumberList/3")],
        errors_omitted=2,
    )
    assert not problem.retryable
    assert not problem.synthesized


def test_a_proxys_html_page_gets_a_document_made_for_it() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    problem = parse_problem(502, "text/html; charset=utf-8", html)
    assert problem.synthesized
    assert (problem.status, problem.type, problem.title) == (502, "about:blank", "Bad Gateway")
    assert "502 Bad Gateway" in problem.detail
    assert problem.retryable


def test_broken_json_and_empty_bodies_are_made_up_too() -> None:
    assert parse_problem(500, "application/problem+json", b"{not json").synthesized
    empty = parse_problem(504, "", b"")
    assert empty.synthesized
    assert "no body" in empty.detail
    assert parse_problem(599, "", b"").title == "HTTP 599"


def test_a_long_page_is_quoted_short() -> None:
    problem = parse_problem(502, "text/html", b"x" * 100_000)
    assert len(problem.detail) < 400


def test_no_answer_is_a_retryable_503_made_up() -> None:
    error = unreachable(httpx.ConnectError("refused"))
    assert error.status == 503
    assert error.retryable
    assert error.synthesized
    assert error.problem.synthesized
    assert "ConnectError" in error.detail


def test_the_error_says_whether_its_document_was_made_up() -> None:
    """`synthesized` on the exception itself, as docs/client.md shows it."""

    def error(status: int, content_type: str, body: bytes) -> ProblemError:
        headers = {"content-type": content_type}
        return error_of(httpx.Response(status, headers=headers, content=body))

    page = error(502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>")
    assert (page.status, page.synthesized) == (502, True)
    body = b'{"type": "/problems/unauthorized", "title": "Unauthorized", "status": 401, '
    served = error(401, "application/problem+json", body + b'"detail": "A valid key."}')
    assert (served.type, served.synthesized) == ("/problems/unauthorized", False)


def test_which_problems_are_retryable() -> None:
    def status(code: int) -> Problem:
        return Problem(code, "about:blank", "", "")

    assert [c for c in (400, 401, 404, 410, 413, 429, 500, 502, 503) if status(c).retryable] == [
        429,
        500,
        502,
        503,
    ]


def test_a_chunks_pointers_are_shifted_to_the_whole_list() -> None:
    problem = Problem(
        400,
        "/problems/invalid-request",
        "Bad Request",
        "",
        [
            ProblemItem("bad", "x", pointer="/phoneNumberList/4"),
            ProblemItem("too long", "y", pointer="/reason"),
            ProblemItem("bad", "z", parameter="limit"),
        ],
    )
    shifted = problem.shifted(50)
    assert [e.pointer for e in shifted.errors] == ["/phoneNumberList/54", "/reason", None]
    assert problem.shifted(0) is problem


def test_a_number_in_a_path_is_escaped_whole() -> None:
    assert number_path("(509) 555-1234") == "/api/v1/leads/end-contact/%28509%29%20555-1234"
    assert number_path("+1/509", "/history").endswith("/%2B1%2F509/history")
