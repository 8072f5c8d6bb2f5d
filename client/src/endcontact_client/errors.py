"""The one exception the client raises: a problem document (RFC 9457), the service's own
or, for an answer that is none (a proxy's HTML 502, no answer at all), one made for it."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx

PROBLEM_MEDIA_TYPE = "application/problem+json"
# What a made-up problem quotes of a body that is not one: enough to recognise it.
QUOTED = 200
_POINTER = re.compile(r"/phoneNumberList/([0-9]+)")


@dataclass(frozen=True)
class ProblemItem:
    """One entry of a problem's `errors`: what was wrong (`reason`) with which item
    (`pointer` into the body, or query/path `parameter`) and its `value`."""

    reason: str
    value: Any = None
    pointer: str | None = None
    parameter: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> ProblemItem:
        if not isinstance(body, dict):
            return cls(reason=str(body))
        return cls(
            reason=str(body.get("reason", "")),
            value=body.get("value"),
            pointer=body.get("pointer"),
            parameter=body.get("parameter"),
        )


@dataclass(frozen=True)
class Problem:
    """A problem document. `synthesized` is true when the client made it up because the
    answer was not one (or there was no answer: then `status` is 503)."""

    status: int
    type: str
    title: str
    detail: str
    errors: list[ProblemItem] = field(default_factory=list)
    errors_omitted: int = 0
    synthesized: bool = False

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later: too many requests, the service
        overloaded or unreachable, or a server error. Never a 4xx that names a mistake."""
        return self.status == 429 or self.status >= 500

    def shifted(self, offset: int) -> Problem:
        """This problem with `/phoneNumberList/N` pointers counted from `offset`: a
        chunk's pointers, made to index the caller's whole list."""
        if offset == 0:
            return self
        errors = [
            dataclasses.replace(e, pointer=_shift(e.pointer, offset)) if e.pointer else e
            for e in self.errors
        ]
        return dataclasses.replace(self, errors=errors)


def _shift(pointer: str, offset: int) -> str:
    match = _POINTER.fullmatch(pointer)
    return f"/phoneNumberList/{int(match[1]) + offset}" if match else pointer


class ProblemError(Exception):
    """Any error answer, or none in time: `problem` is the document; `retry_after` the
    seconds the service asked to wait (429, 503), `request_id` its X-Request-ID."""

    def __init__(
        self, problem: Problem, *, retry_after: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail}")
        self.problem = problem
        self.retry_after = retry_after
        self.request_id = request_id

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def errors(self) -> list[ProblemItem]:
        return self.problem.errors

    @property
    def synthesized(self) -> bool:
        """True when the client made the document up: the answer was no problem (a
        proxy's HTML 502), or there was no answer (then `status` is 503)."""
        return self.problem.synthesized

    @property
    def retryable(self) -> bool:
        return self.problem.retryable

    def shifted(self, offset: int) -> ProblemError:
        shifted = ProblemError(
            self.problem.shifted(offset), retry_after=self.retry_after, request_id=self.request_id
        )
        shifted.__cause__ = self.__cause__
        return shifted


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def parse_problem(status: int, content_type: str, content: bytes) -> Problem:
    """The problem an error answer carries, or one made up for an answer that is none."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in (PROBLEM_MEDIA_TYPE, "application/json"):
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("detail", ""), str):
            errors = body.get("errors")
            omitted = body.get("errorsOmitted")
            return Problem(
                # The status line is what happened; a body may disagree (RFC 9457 3.1.4).
                status=status,
                type=str(body.get("type", "about:blank")),
                title=str(body.get("title", phrase(status))),
                detail=str(body.get("detail", "")),
                errors=[ProblemItem.from_json(e) for e in errors]
                if isinstance(errors, list)
                else [],
                errors_omitted=omitted if isinstance(omitted, int) else 0,
            )
    return not_a_problem(status, content_type, content)


def not_a_problem(status: int, content_type: str, content: bytes) -> Problem:
    """A document for an answer that carries none (a proxy's HTML page, an empty body)."""
    text = content[:QUOTED].decode("utf-8", "replace").strip()
    shown = f": {text!r}" if text else " with no body"
    return Problem(
        status=status,
        type="about:blank",
        title=phrase(status),
        detail=f"The service answered {status} ({content_type or 'no content type'}){shown}.",
        synthesized=True,
    )


def unreachable(exc: httpx.TransportError) -> ProblemError:
    """No answer (refused, reset, timed out): a 503 made up, retryable like one."""
    problem = Problem(
        status=503,
        type="about:blank",
        title=phrase(503),
        detail=f"No answer from the service: {type(exc).__name__}: {exc}",
        synthesized=True,
    )
    error = ProblemError(problem)
    error.__cause__ = exc
    return error
