"""The one settings object, read from the environment."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers

from shared.connection import SEPARATOR, is_sentinel

# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (issue 12).
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
# How logs are written (shared.logs): auto is text on a terminal, JSON elsewhere.
LOG_FORMATS = ("auto", "json", "text")
# The longest deadline ENDCONTACT_RESULT_TIMEOUT may give a request (seconds).
RESULT_TIMEOUT_MOST = 300


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
    # REDIS_URL names a node of a Valkey (Redis) Cluster (shared.connection); the
    # broker is then another server (ENDCONTACT_BROKER_URL): kombu has no cluster
    # transport (kombu#526).
    redis_cluster: bool = False
    # Replicas that must have a mark on disk too before it counts as a success; 1 or
    # more keeps successes through a failover to a replica (docs/operating.md, "Several hosts").
    durable_replicas: int = 0
    # The broker and result backend when they are not REDIS_URL's server (None: they
    # are). Queue messages and results live for a deadline, so that server needs no
    # fsync (docs/durability.md); broker() gives the settings as they see it.
    broker_url: str | None = None
    broker_sentinel_master: str | None = None
    # How long the change feed keeps an event (shared.events); a number's history is
    # kept as long as it is ended, and at least this long after it is resumed.
    events_retention_days: float = 30.0
    # Webhook URLs may be http:// and resolve to loopback or private addresses: only for
    # development and tests (shared.addresses); never in production, where it opens SSRF.
    webhook_allow_private: bool = False
    # Seconds to wait before each retry of a failed delivery; past the last, it is given up.
    webhook_retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    # On SIGTERM, a web process answers 421 for this long before it stops listening, so
    # that a proxy learns to send elsewhere first (api/drain.py); 0 stops at once.
    drain_seconds: float = 0.0
    # One of LOG_FORMATS.
    log_format: str = "auto"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            redis_url=_redis_url(env.get("REDIS_URL") or None),
            data_dir=Path(env.get("ENDCONTACT_DATA_DIR") or "var").resolve(),
            result_timeout=_seconds(
                env, "ENDCONTACT_RESULT_TIMEOUT", default=5.0, most=RESULT_TIMEOUT_MOST
            ),
            default_region=_region(env.get("ENDCONTACT_DEFAULT_REGION") or "US"),
            rate_limit=_count(
                env, "ENDCONTACT_RATE_LIMIT", default=600, least=0, most=1_000_000_000, zero="off"
            ),
            rate_window=_count(env, "ENDCONTACT_RATE_WINDOW", default=60, least=1, most=86_400),
            sentinel_master=_sentinel_master(env),
            sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
            redis_cluster=_cluster(env),
            durable_replicas=_count(
                env, "ENDCONTACT_DURABLE_REPLICAS", default=0, least=0, most=16
            ),
            broker_url=_redis_url(
                env.get("ENDCONTACT_BROKER_URL") or None, "ENDCONTACT_BROKER_URL"
            ),
            broker_sentinel_master=_broker_sentinel_master(env),
            events_retention_days=_days(env, "ENDCONTACT_EVENTS_RETENTION_DAYS", default=30.0),
            webhook_allow_private=_flag(env, "ENDCONTACT_WEBHOOK_ALLOW_PRIVATE", default=False),
            webhook_retry_schedule=_schedule(env, "ENDCONTACT_WEBHOOK_RETRY_SCHEDULE"),
            drain_seconds=_seconds(
                env, "ENDCONTACT_DRAIN_SECONDS", default=0.0, most=60, zero="off"
            ),
            log_format=log_format(env),
        )

    def broker(self) -> Settings:
        """The settings as the broker's clients see them: its URL and Sentinel group in
        place of the store's, so shared.connection serves both."""
        if self.broker_url is None:
            return self
        return replace(
            self,
            redis_url=self.broker_url,
            sentinel_master=self.broker_sentinel_master,
            redis_cluster=False,
        )

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise SettingsError("REDIS_URL is not set and no embedded server was started")
        return self.redis_url


@contextlib.contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """For entry points that are not `endcontact` (uvicorn's factory, `celery -A
    worker.celery_app`): a bad setting is the same single line on stderr and exit
    status 2, instead of a traceback inside someone else's command."""
    try:
        yield
    except SettingsError as exc:
        print(f"endcontact: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


# ASCII digits only, and few of them: str.isdigit() and int() also take "²" (isdigit
# says yes, int raises), "١٢", " 5", "1_000" and 5,000-digit numbers.
_WHOLE = re.compile(r"[0-9]{1,10}")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def shown(raw: str) -> str:
    """The value as the error shows it: quoted, escaped onto one line, and short."""
    return repr(raw) if len(raw) <= 40 else f"{raw[:40]!r}..."


def _seconds(
    env: Mapping[str, str], name: str, *, default: float, most: float, zero: str = ""
) -> float:
    """Seconds above 0 and at most `most`; 0 too when `zero` says what it turns."""
    raw = env.get(name)
    if not raw:
        return default
    value = float(raw) if _DECIMAL.fullmatch(raw) else -1.0
    if not (0 < value <= most or (zero and value == 0)):
        least = f"from 0 ({zero})" if zero else "above 0"
        raise SettingsError(
            f"{name} must be a number of seconds {least} and at most {most:g} "
            f"(like 5 or 2.5), got {shown(raw)}"
        )
    return value


def _days(env: Mapping[str, str], name: str, *, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    value = float(raw) if _DECIMAL.fullmatch(raw) else 0.0
    # Fractions of a day, down to a second, let a test see events leave the feed.
    if not 1 / 86_400 <= value <= 36_500:
        raise SettingsError(
            f"{name} must be a number of days from 0.0000116 (a second) to 36500 "
            f"(like 30 or 0.5), got {shown(raw)}"
        )
    return value


def _count(
    env: Mapping[str, str], name: str, *, default: int, least: int, most: int, zero: str = ""
) -> int:
    raw = env.get(name)
    if not raw:
        return default
    value = whole_number(raw, least, most)
    if value is None:
        meaning = f" ({least} turns it {zero})" if zero else ""
        raise SettingsError(
            f"{name} must be a whole number from {least} to {most}{meaning}, got {shown(raw)}"
        )
    return value


def log_format(env: Mapping[str, str]) -> str:
    """ENDCONTACT_LOG_FORMAT; on its own, for shared.logs, which sets up logging before
    an entry point reads the rest."""
    raw = env.get("ENDCONTACT_LOG_FORMAT")
    if not raw:
        return "auto"
    if raw not in LOG_FORMATS:
        raise SettingsError(f"ENDCONTACT_LOG_FORMAT must be auto, json or text, got {shown(raw)}")
    return raw


def whole_number(raw: str, least: int, most: int) -> int | None:
    """`raw` as a whole number from `least` to `most`, else None; the one reading of a
    count, in settings and in command options alike."""
    value = int(raw) if _WHOLE.fullmatch(raw) else None
    return value if value is not None and least <= value <= most else None


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if not raw:
        return default
    # Only the two words: "yes", "1" or "True " would each be a guess about intent.
    if raw not in ("true", "false"):
        raise SettingsError(f"{name} must be true or false, got {shown(raw)}")
    return raw == "true"


def _schedule(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    raw = env.get(name)
    if not raw:
        return DEFAULT_RETRY_SCHEDULE
    parts = raw.split(",")
    # A day at most per step and 100 steps keep a typo from meaning "retry for a year".
    ok = 1 <= len(parts) <= 100 and all(whole_number(part, 1, 86_400) is not None for part in parts)
    if not ok:
        raise SettingsError(
            f"{name} must be whole seconds from 1 to 86400, comma-separated "
            f"(like 5,300,1800), got {shown(raw)}"
        )
    return tuple(int(part) for part in parts)


def _region(raw: str) -> str:
    region = raw.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(
            "ENDCONTACT_DEFAULT_REGION must be a two-letter region code such as US or GB, "
            f"got {shown(raw)}"
        )
    return region


def _redis_url(raw: str | None, name: str = "REDIS_URL") -> str | None:
    if raw is None:
        return None
    sentinel = is_sentinel(raw)
    schemes = {"sentinel"} if sentinel else {"redis", "rediss", "unix"}
    chunks = [chunk for chunk in raw.split(SEPARATOR) if chunk] if sentinel else [raw]
    try:
        # .port raises ValueError for a port that is not a number or out of range.
        ok = all(
            urlsplit(chunk).scheme in schemes and urlsplit(chunk).port != 0 for chunk in chunks
        )
    except ValueError:
        ok = False
    if not ok:
        raise SettingsError(
            f"{name} must be a redis://, rediss://, unix:// or sentinel:// URL, "
            f"got {shown(without_password(raw))}"
        )
    return raw


def without_password(url: str) -> str:
    """The URL as a line may show it: a password it holds (which may hold an @) as **."""
    return re.sub(r"(://[^:/@;]*:)[^;]*@", r"\1**@", url)


def _sentinel_master(env: Mapping[str, str]) -> str | None:
    url, master = env.get("REDIS_URL", ""), env.get("REDIS_SENTINEL_MASTER") or None
    if is_sentinel(url) and master is None:
        raise SettingsError("REDIS_URL names Sentinels: set REDIS_SENTINEL_MASTER to the group")
    return master


def _cluster(env: Mapping[str, str]) -> bool:
    if not _flag(env, "ENDCONTACT_REDIS_CLUSTER", default=False):
        return False
    url = env.get("REDIS_URL") or ""
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise SettingsError(
            "ENDCONTACT_REDIS_CLUSTER=true needs REDIS_URL to name one of the cluster's "
            "nodes, as redis:// or rediss://"
        )
    if not env.get("ENDCONTACT_BROKER_URL"):
        raise SettingsError(
            "ENDCONTACT_REDIS_CLUSTER=true needs ENDCONTACT_BROKER_URL: the broker is one "
            "server or a Sentinel group, never the cluster"
        )
    return True


def _broker_sentinel_master(env: Mapping[str, str]) -> str | None:
    url = env.get("ENDCONTACT_BROKER_URL", "")
    master = env.get("ENDCONTACT_BROKER_SENTINEL_MASTER") or None
    if is_sentinel(url) and master is None:
        raise SettingsError(
            "ENDCONTACT_BROKER_URL names Sentinels: set ENDCONTACT_BROKER_SENTINEL_MASTER"
        )
    return master
