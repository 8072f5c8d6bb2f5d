"""What every web process must agree on at once: the per-key rate limit (counted in
Redis) and revocation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.store import Store
from tests.conftest import new_caller
from tests.processes import start_web, stop

URL = "/api/v1/leads/end-contact"


@pytest.fixture
def two_webs(redis_url: str, worker: None, tmp_path: Path) -> Iterator[list[str]]:
    env = {"REDIS_URL": redis_url, "ENDCONTACT_RATE_LIMIT": "3", "ENDCONTACT_RATE_WINDOW": "60"}
    started = [start_web(env, tmp_path / f"web{i}.log") for i in range(2)]
    yield [base for base, _ in started]
    for _, process in started:
        stop(process)


def test_limit_is_per_key_and_shared_by_web_processes(two_webs: list[str], store: Store) -> None:
    caller, other = new_caller(store), new_caller(store)
    body = {"phoneNumberList": ["(509) 555-1234"]}
    remaining = []
    for i in range(3):
        ok = httpx.post(f"{two_webs[i % 2]}{URL}", json=body, headers=caller.headers)
        assert ok.status_code == 201
        assert ok.headers["ratelimit-limit"] == "3"
        remaining.append(ok.headers["ratelimit-remaining"])
    assert remaining == ["2", "1", "0"]

    for base in two_webs:
        refused = httpx.post(f"{base}{URL}", json=body, headers=caller.headers)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        lookup = httpx.get(f"{base}{URL}/+15095551234", headers=caller.headers)
        assert lookup.status_code == 429

    # Another key has its own budget; a refused request processed nothing.
    assert httpx.post(f"{two_webs[0]}{URL}", json=body, headers=other.headers).status_code == 201


def test_revocation_reaches_every_web_process_at_once(two_webs: list[str], store: Store) -> None:
    caller = new_caller(store)
    body = {"phoneNumberList": ["(509) 555-1234"]}
    for base in two_webs:
        assert httpx.post(f"{base}{URL}", json=body, headers=caller.headers).status_code == 201
    store.revoke_key(caller.key.id)
    # Keys are checked in Redis on every request, not cached: no delay to wait out.
    for base in two_webs:
        assert httpx.post(f"{base}{URL}", json=body, headers=caller.headers).status_code == 401
