"""shared.apikeys, in process: how keys look, how they are hashed, which names pass."""

from __future__ import annotations

import hashlib
import re

import pytest

from shared.apikeys import (
    MAX_KEY_LENGTH,
    PREFIX,
    ApiKey,
    Scope,
    check_name,
    digest,
    generate_id,
    generate_secret,
    looks_like_key,
)


def test_secrets_are_prefixed_url_safe_and_never_repeat() -> None:
    secrets = {generate_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        # 32 random bytes in unpadded base64url: 43 characters after the prefix.
        assert re.fullmatch(rf"{PREFIX}[A-Za-z0-9_-]{{43}}", secret), secret
        assert looks_like_key(secret)


def test_ids_are_public_names_unlike_secrets() -> None:
    ids = {generate_id() for _ in range(200)}
    assert len(ids) == 200
    for key_id in ids:
        assert re.fullmatch(r"key_[0-9a-f]{16}", key_id), key_id
        assert not looks_like_key(key_id)


def test_digest_is_the_sha256_of_the_key() -> None:
    secret = generate_secret()
    assert digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert digest(secret) == digest(secret)
    assert digest(secret) != digest(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert secret not in digest(secret)


def test_digest_takes_any_header_text() -> None:
    # A lone surrogate cannot be encoded as UTF-8; it must not raise on the way to a 401.
    assert len(digest("ec_\udcff")) == 64
    assert digest("ec_\udcff") != digest("ec_\udcfe")


@pytest.mark.parametrize(
    ("text", "looks"),
    [
        ("ec_" + "A" * 43, True),
        ("ec_" + "A" * (MAX_KEY_LENGTH - 3), True),
        ("ec_" + "A" * (MAX_KEY_LENGTH - 2), False),
        ("EC_" + "A" * 43, False),
        ("A" * 43, False),
        ("", False),
    ],
)
def test_looks_like_key(text: str, looks: bool) -> None:
    assert looks_like_key(text) is looks


def test_names_are_trimmed() -> None:
    assert check_name("company", "  Acme: Inc \t") == "Acme: Inc"
    assert check_name("company", "x" * 200) == "x" * 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "company must not be empty"),
        (" \t ", "company must not be empty"),
        ("x" * 201, "company must be at most 200 characters"),
        ("Acme\nInc", "company must not contain control characters"),
        ("Acme\x00", "company must not contain control characters"),
    ],
)
def test_bad_names_are_refused_by_kind(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_name("company", value)


def test_a_key_is_active_until_revoked() -> None:
    scope = Scope("acme", "spring")
    key = ApiKey("key_0123456789abcdef", scope, "crm", "2026-11-28T22:34:14.123Z", None)
    assert key.active
    revoked = ApiKey(key.id, scope, key.label, key.created_at, "2026-11-29T08:00:00.000Z")
    assert not revoked.active
