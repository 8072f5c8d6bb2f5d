"""api.auth.KnownKeys: what a web answers with while the store cannot say."""

from __future__ import annotations

import time

import pytest

from api.auth import KnownKeys
from shared.apikeys import ApiKey, Scope


def _key(revoked: str | None = None) -> ApiKey:
    return ApiKey("key_1", Scope("acme", "spring"), "", "2026-12-07T00:00:00.000Z", revoked)


def test_an_active_key_is_known_until_the_store_says_otherwise() -> None:
    known = KnownKeys()
    known.saw("d1", _key())
    assert known.recent("d1") == _key()
    known.saw("d1", _key(revoked="2026-12-07T00:00:01.000Z"))
    assert known.recent("d1") is None
    known.saw("d2", _key())
    known.saw("d2", None)
    assert known.recent("d2") is None


def test_what_was_seen_too_long_ago_is_not_known(monkeypatch: pytest.MonkeyPatch) -> None:
    known = KnownKeys(for_seconds=60)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now)
    known.saw("d1", _key())
    monkeypatch.setattr(time, "monotonic", lambda: now + 60.5)
    assert known.recent("d1") is None


def test_it_holds_the_most_recent_keys_only() -> None:
    known = KnownKeys(most=2)
    for name in ("d1", "d2", "d3"):
        known.saw(name, _key())
    assert [known.recent(name) is not None for name in ("d1", "d2", "d3")] == [False, True, True]
