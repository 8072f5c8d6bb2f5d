"""The client's core, the one place both halves take their decisions from: driven here
by hand, a step at a time, with the answers httpx would give, so what it sends, how long
it waits and when it gives up are seen without a server or a clock to wait on."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
import pytest

from endcontact_client import _core
from endcontact_client.errors import ProblemError
from endcontact_client.models import ChangeResult
from endcontact_client.retry import Backoff

T = TypeVar("T")
PROBLEM = {"content-type": "application/problem+json"}


class Policy:
    def __init__(self, retry_for: float = 60.0) -> None:
        self.retry_for = retry_for
        # Every backoff wait is 0 to 1 s: well inside the deadlines below.
        self.backoff = Backoff(base=1.0, cap=1.0)


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, content=json.dumps(body).encode())


def drive(plan: _core.Plan[T], replies: list[_core.Reply]) -> tuple[list[Any], T]:
    """The plan's steps (a Send as (method, path, options), a wait as its seconds), each
    Send answered with the next reply, and what the plan returned."""
    run = _core.Run(plan)
    steps: list[Any] = []
    reply: _core.Reply = None
    while (step := run.next(reply)) is not None:
        if isinstance(step, _core.Send):
            steps.append((step.method, step.path, step.options))
            reply = replies.pop(0)
        else:
            steps.append(step)
            reply = None
    assert replies == [], "every reply was asked for"
    return steps, run.result


def test_a_busy_service_is_asked_again_after_its_retry_after() -> None:
    busy = answer(503, {"detail": "busy"}, {**PROBLEM, "retry-after": "2"})
    steps, mark = drive(
        _core.lookup(Policy(), "+15095550001"),
        [busy, httpx.ConnectError("refused"), answer(404, {"type": _core.NOT_ENDED}, PROBLEM)],
    )
    path = f"{_core.END}/%2B15095550001"
    assert steps[0] == steps[2] == ("GET", path, {})
    # Retry-After, and up to half as long again (clients told it together spread out).
    assert isinstance(steps[1], float)
    assert 2.0 <= steps[1] <= 3.0
    # No answer at all: a backoff wait, then the same request again.
    assert 0.0 <= steps[3] <= 1.0
    assert steps[4:] == [("GET", path, {})]
    assert mark is None


def test_a_wait_past_the_deadline_gives_up_and_a_mistake_is_not_retried() -> None:
    busy = answer(429, {"detail": "slow down"}, {**PROBLEM, "retry-after": "30"})
    with pytest.raises(ProblemError) as raised:
        drive(_core.history(Policy(retry_for=10), "+15095550001"), [busy])
    assert (raised.value.status, raised.value.retry_after) == (429, 30.0)

    with pytest.raises(ProblemError) as raised:
        drive(_core.history(Policy(), "+15095550001"), [answer(401, {"detail": "no"}, PROBLEM)])
    assert raised.value.status == 401


def test_failures_are_sent_again_and_a_chunks_pointers_index_the_whole_list() -> None:
    numbers = [f"+1509555{n:04d}" for n in range(60)]
    call = _core.change(Policy(), _core.END, numbers, "asked")
    assert len(call.plans) == 2
    first, second = call.plans
    steps, done = drive(
        first,
        [
            answer(201, {"success": numbers[1:50], "failure": numbers[:1]}),
            answer(201, {"success": numbers[:1], "failure": []}),
        ],
    )
    assert [s[2]["json"]["phoneNumberList"] for s in steps if isinstance(s, tuple)] == [
        numbers[:50],
        numbers[:1],
    ]
    assert steps[0][2]["json"]["reason"] == "asked"
    assert done == ChangeResult(numbers[1:50] + numbers[:1], [])

    refused = {"detail": "x", "errors": [{"pointer": "/phoneNumberList/3", "reason": "r"}]}
    with pytest.raises(ProblemError) as raised:
        drive(second, [answer(400, refused, PROBLEM)])
    assert [e.pointer for e in raised.value.errors] == ["/phoneNumberList/53"]


def test_the_feed_polls_when_idle_or_stops() -> None:
    event = {
        "id": "1-0",
        "type": "ended",
        "phoneNumber": "+15095550001",
        "at": "2026-11-29T21:34:25.416Z",
        "keyId": "k",
        "requestId": "r",
    }
    feed = _core.Feed("0-0", 7, poll_interval=5.0, stop_when_idle=False)
    steps, events = drive(feed.next_page(Policy()), [answer(200, {"events": [], "next": "0-0"})])
    assert (steps, events) == (
        [("GET", _core.EVENTS, {"params": {"limit": 7, "after": "0-0"}})],
        [],
    )
    steps, events = drive(
        feed.next_page(Policy()), [answer(200, {"events": [event], "next": "1-0"})]
    )
    assert steps[0] == 5.0
    assert [e.id for e in events or []] == ["1-0"]
    assert feed.cursor == "1-0"

    idle = _core.Feed(None, 7, poll_interval=5.0, stop_when_idle=True)
    steps, _ = drive(idle.next_page(Policy()), [answer(200, {"events": [], "next": "0-0"})])
    assert steps == [("GET", _core.EVENTS, {"params": {"limit": 7}})]
    assert drive(idle.next_page(Policy()), []) == ([], None)


@pytest.mark.parametrize("kind", [httpx.Client, httpx.AsyncClient])
def test_a_post_is_the_request_httpx_would_build(kind: type[httpx.Client]) -> None:
    http = kind(base_url="http://api.example/v2", headers=_core.headers("ec_k"), timeout=7)
    body = _core.change_body(["+15095550001"], "é")
    send = _core.Send("POST", _core.END, {"json": body})
    made = [_core.Requests(http).build(send) for _ in range(2)][1]
    want = http.build_request("POST", _core.END, json=body)
    assert (made.method, made.url, made.headers.raw, made.content, made.extensions) == (
        want.method,
        want.url,
        want.headers.raw,
        want.content,
        want.extensions,
    )
