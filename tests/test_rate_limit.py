"""What every web process must agree on at once: the per-key rate limit (counted in
Redis) and revocation. Two apps in this process stand for two web processes: each opens
connections of its own, and they share nothing else (no module keeps state)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
import redis

from shared.store import Store
from shared.tasks import QUEUE
from tests.conftest import Caller, new_caller, serving
from tests.helpers import URL, assert_problem, post_numbers

LIMIT = 3


@dataclass(frozen=True)
class Webs:
    clients: Sequence[httpx.Client]
    store: Store
    redis: redis.Redis


@pytest.fixture
def two_webs(redis_server: str) -> Iterator[Webs]:
    # Database 3, which no worker serves: a task a request publishes stays on the
    # queue, so the queue's length tells at once what a request set in motion. An
    # accepted request answers 201 with its numbers as failures, at a short deadline.
    url = f"{redis_server}/3"
    env = {
        "REDIS_URL": url,
        "ENDCONTACT_RATE_LIMIT": str(LIMIT),
        # Far longer than the test: its requests all fall in one window but about once
        # in a thousand runs, and that one is seen and run again (below).
        "ENDCONTACT_RATE_WINDOW": "3600",
        "ENDCONTACT_RESULT_TIMEOUT": "0.2",
    }
    with contextlib.ExitStack() as opened:
        clients = [opened.enter_context(serving(env)) for _ in range(2)]
        client = opened.enter_context(redis.Redis.from_url(url, decode_responses=True))
        yield Webs(clients, Store(client), client)


def one_window(answers: list[httpx.Response]) -> bool:
    """Whether every answer was counted in the same window: within one, the seconds
    to its end (RateLimit-Reset) only go down; a new window starts them high again."""
    resets = [int(answer.headers["ratelimit-reset"]) for answer in answers]
    return resets == sorted(resets, reverse=True)


def use_up(webs: Webs, caller: Caller) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """LIMIT accepted requests, then a POST and a GET on each web: what each answered,
    accepted and refused."""
    accepted = [
        post_numbers(webs.clients[i % 2], caller.headers, ["(509) 555-1234"]) for i in range(LIMIT)
    ]
    refused: list[httpx.Response] = []
    for web in webs.clients:
        refused.append(post_numbers(web, caller.headers, ["(509) 555-9876"]))
        refused.append(web.get(f"{URL}/+15095551234", headers=caller.headers))
    return accepted, refused


def test_limit_is_per_key_and_shared_by_web_processes(two_webs: Webs) -> None:
    queued = two_webs.redis.llen(QUEUE)
    caller = new_caller(two_webs.store)
    accepted, refused = use_up(two_webs, caller)
    if not one_window(accepted + refused):
        # The run straddled a window's end, which restarts the count: once more, with
        # a fresh key, well inside the next window.
        queued = two_webs.redis.llen(QUEUE)
        caller = new_caller(two_webs.store)
        accepted, refused = use_up(two_webs, caller)
        assert one_window(accepted + refused)

    assert [ok.status_code for ok in accepted] == [201] * LIMIT
    assert {ok.headers["ratelimit-limit"] for ok in accepted} == {str(LIMIT)}
    assert [ok.headers["ratelimit-remaining"] for ok in accepted] == ["2", "1", "0"]
    for answer in refused:
        assert_problem(answer, 429)
        assert answer.headers["retry-after"] == answer.headers["ratelimit-reset"]
        assert 1 <= int(answer.headers["retry-after"]) <= 3600
        assert answer.headers["ratelimit-remaining"] == "0"
    # One task per accepted request, none for a refused one: a refused request
    # processed nothing.
    assert two_webs.redis.llen(QUEUE) == queued + LIMIT

    # Another key has its own budget.
    other = new_caller(two_webs.store)
    assert post_numbers(two_webs.clients[0], other.headers, ["(509) 555-1234"]).status_code == 201


def test_revocation_reaches_every_web_process_at_once(two_webs: Webs) -> None:
    caller = new_caller(two_webs.store)
    phones = ["(509) 555-1234"]
    for web in two_webs.clients:
        accepted = post_numbers(web, caller.headers, phones)
        assert accepted.status_code == 201
        assert "ratelimit-remaining" in accepted.headers
    two_webs.store.revoke_key(caller.key.id)
    # Keys are checked in Redis on every request, not cached: no delay to wait out.
    for web in two_webs.clients:
        refused = post_numbers(web, caller.headers, phones)
        assert refused.status_code == 401
        # No key, nothing counted (docs/settings.md, ENDCONTACT_RATE_LIMIT): no RateLimit headers.
        assert not [name for name in refused.headers if name.startswith("ratelimit-")]
