"""API keys: how they look, how they are generated, how they are stored (hashed)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

# A recognisable prefix lets secret scanners and people tell our keys apart.
PREFIX = "ec_"
# 32 random bytes: 256 bits, far past guessing; urlsafe so it fits a header as is.
_RANDOM_BYTES = 32
# Anything longer is not one of ours; refusing it early keeps hashing cheap.
MAX_KEY_LENGTH = 100


@dataclass(frozen=True)
class Scope:
    """Whose leads a key acts on: one company and one of its campaigns."""

    company: str
    campaign: str


@dataclass(frozen=True)
class ApiKey:
    id: str
    scope: Scope
    label: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def generate_secret() -> str:
    return PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def generate_id() -> str:
    """The public name of a key, safe to log and to show in `keys list`."""
    return "key_" + secrets.token_hex(8)


def digest(secret: str) -> str:
    """What we store instead of the key.

    A plain SHA-256 is enough: keys carry 256 random bits, so there is no dictionary to
    try, and a slow KDF would only add latency to every request. Lookups go by digest,
    so comparing keys never happens character by character.
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(secret: str) -> bool:
    return secret.startswith(PREFIX) and len(secret) <= MAX_KEY_LENGTH


def check_name(kind: str, value: str) -> str:
    """Company, campaign and label names: printable, bounded, trimmed."""
    value = value.strip()
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if len(value) > 200:
        raise ValueError(f"{kind} must be at most 200 characters")
    if not value.isprintable():
        raise ValueError(f"{kind} must not contain control characters")
    return value
