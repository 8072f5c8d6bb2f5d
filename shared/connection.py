"""Redis clients from the settings: one server by URL, or the primary Sentinel names.

REDIS_URL is either one server (`redis://`, `rediss://`, `unix://`) or, in the format
Celery and kombu take, the Sentinels of a replicated group:
`sentinel://:PASSWORD@h1:26379/0;sentinel://:PASSWORD@h2:26379/0`, with the group's
name in REDIS_SENTINEL_MASTER. The password and database are the primary's; the
Sentinels' own password, if they have one, is REDIS_SENTINEL_PASSWORD. A client made
here asks the Sentinels for the primary when it connects and again after a failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

if TYPE_CHECKING:
    from shared.settings import Settings

SENTINEL_SCHEME = "sentinel://"
SEPARATOR = ";"
# For the Sentinels themselves: a Sentinel that does not answer is skipped for the next.
SENTINEL_TIMEOUTS = {"socket_timeout": 2, "socket_connect_timeout": 2}


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


@dataclass(frozen=True)
class SentinelGroup:
    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None

    @classmethod
    def parse(cls, url: str, master: str, sentinel_password: str | None) -> SentinelGroup:
        parts = [urlsplit(chunk) for chunk in url.split(SEPARATOR) if chunk]
        first = parts[0]
        path = first.path.lstrip("/")
        return cls(
            sentinels=[(part.hostname or "localhost", part.port or 26379) for part in parts],
            master=master,
            db=int(path) if path else 0,
            username=unquote(first.username) if first.username else None,
            password=unquote(first.password) if first.password else None,
            sentinel_password=sentinel_password,
        )

    def sentinel_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(SENTINEL_TIMEOUTS)
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def primary_kwargs(self) -> dict[str, Any]:
        return {"db": self.db, "username": self.username, "password": self.password}


def group(settings: Settings) -> SentinelGroup | None:
    url = settings.require_redis_url()
    if not is_sentinel(url):
        return None
    assert settings.sentinel_master is not None  # Settings.from_env checks it
    return SentinelGroup.parse(url, settings.sentinel_master, settings.sentinel_password)


def failure(exc: BaseException) -> str:
    """A Redis failure as a log line says it. A connection's error says where, as
    host:port and never with a password, so that a line names the server that is down;
    any other only by its kind, since a reply's text can quote what was sent."""
    connection = isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)
    said = str(exc) if connection else ""
    return f"{exc.__class__.__name__}: {said}" if said else exc.__class__.__name__


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    target = group(settings)
    if target is None:
        return redis.Redis.from_url(settings.require_redis_url(), **options)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        target.sentinels, sentinel_kwargs=target.sentinel_kwargs(), **options
    )
    primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        target.master, **target.primary_kwargs()
    )
    return primary


def async_client(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    target = group(settings)
    if target is None:
        return redis.asyncio.Redis.from_url(settings.require_redis_url(), **options)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        target.sentinels, sentinel_kwargs=target.sentinel_kwargs(), **options
    )
    primary: redis.asyncio.Redis = sentinel.master_for(target.master, **target.primary_kwargs())
    return primary
