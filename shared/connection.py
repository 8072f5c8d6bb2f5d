"""Redis clients from the settings: one server by URL, or the primary Sentinel names.

REDIS_URL is either one server (`redis://`, `rediss://`, `unix://`) or, in the format
Celery and kombu take, the Sentinels of a replicated group:
`sentinel://:PASSWORD@h1:26379/0;sentinel://:PASSWORD@h2:26379/0`, with the group's
name in REDIS_SENTINEL_MASTER. The password and database are the primary's; the
Sentinels' own password, if they have one, is REDIS_SENTINEL_PASSWORD. A client made
here asks the Sentinels for the primary when it connects and again after a failover.
"""

from __future__ import annotations

from collections.abc import Iterable
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
        client = redis.asyncio.Redis.from_url(settings.require_redis_url(), **options)
    else:
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            target.sentinels, sentinel_kwargs=target.sentinel_kwargs(), **options
        )
        client = sentinel.master_for(target.master, **target.primary_kwargs())
    pool = client.connection_pool
    # Before any connection is made: the pool makes them of this class.
    base = pool.connection_class
    if base not in _CHECKED:
        _CHECKED[base] = _closed_checked(base)
    pool.connection_class = _CHECKED[base]
    return client


# Each connection class made once: a class per client would grow without end.
_CHECKED: dict[type[Any], type[Any]] = {}


def _closed_checked(base: type[Any]) -> type[Any]:
    """The async connection class `base` (plain, TLS, Unix socket or Sentinel's), but a
    connection the server closed is told as redis.ConnectionError, which redis-py's
    retry reconnects on, never as what the event loop raises.

    A pooled connection whose server closed it (the server restarted, or killed while
    a request was connecting) still counts as connected; the next write went to its
    closed transport, and uvloop (uvicorn's loop) raises RuntimeError "the handler is
    closed" there (uvloop#506), past every `except redis.RedisError`: a 500 in the
    broker-kill test, once in about 30 CI runs. redis-py 8.2 checks this itself
    (redis-py#4287, #4288); the range here goes down to 5.2. The check stands right
    before each write, with no await between them, where nothing can close it after.
    """

    class ClosedChecked(base):  # type: ignore[misc]
        def _check_open(self) -> None:
            writer = self._writer
            if writer is not None and writer.transport.is_closing():
                raise redis.ConnectionError(f"{self.host}:{self.port}: the server closed it")

        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            if self.is_connected and self._writer.transport.is_closing():
                await self.disconnect(nowait=True)  # found closed before use: connect anew
            await super().send_packed_command(command, check_health)

        async def _send_packed_command(self, command: Iterable[bytes]) -> None:
            # With a socket timeout, the write runs in a task of its own (wait_for on
            # Python 3.11): checked there, just before it.
            self._check_open()
            await super()._send_packed_command(command)

    ClosedChecked.__name__ = ClosedChecked.__qualname__ = f"ClosedChecked{base.__name__}"
    return ClosedChecked
