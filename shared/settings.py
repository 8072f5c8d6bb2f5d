"""The one settings object, read from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from shared.connection import is_sentinel


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    # None means "use the embedded server for data_dir": the CLI resolves it before
    # anything connects, so code below the CLI always sees a URL.
    redis_url: str | None
    data_dir: Path
    result_timeout: float
    default_region: str
    # Requests per key per window, shared by all web processes; 0 turns it off.
    rate_limit: int = 600
    rate_window: int = 60
    # With a sentinel:// REDIS_URL (shared.connection): the group's name, and the
    # Sentinels' own password if they have one.
    sentinel_master: str | None = None
    sentinel_password: str | None = None
    # Replicas that must have a mark on disk too before it counts as a success; 1 or
    # more keeps successes through a failover to a replica (README, "Several hosts").
    durable_replicas: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("ENDCONTACT_DATA_DIR") or "var").resolve(),
            result_timeout=_seconds(env, "ENDCONTACT_RESULT_TIMEOUT", default=5.0),
            default_region=_region(env.get("ENDCONTACT_DEFAULT_REGION") or "US"),
            rate_limit=_count(env, "ENDCONTACT_RATE_LIMIT", default=600),
            rate_window=max(1, _count(env, "ENDCONTACT_RATE_WINDOW", default=60)),
            sentinel_master=_sentinel_master(env),
            sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
            durable_replicas=_count(env, "ENDCONTACT_DURABLE_REPLICAS", default=0),
        )

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise SettingsError("REDIS_URL is not set and no embedded server was started")
        return self.redis_url


def _seconds(env: Mapping[str, str], name: str, *, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and 0 < value <= 300):
        raise SettingsError(f"{name} must be between 0 and 300 seconds, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, *, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit():
        raise SettingsError(f"{name} must be a whole number, got {raw!r}")
    return int(raw)


def _region(raw: str) -> str:
    region = raw.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(f"ENDCONTACT_DEFAULT_REGION {raw!r} is not a known region code")
    return region


def _sentinel_master(env: Mapping[str, str]) -> str | None:
    url, master = env.get("REDIS_URL", ""), env.get("REDIS_SENTINEL_MASTER") or None
    if is_sentinel(url) and master is None:
        raise SettingsError("REDIS_URL names Sentinels: set REDIS_SENTINEL_MASTER to the group")
    return master
