"""Redis clients from the settings: one server by URL, the primary Sentinel names, or
a Valkey (Redis) Cluster.

REDIS_URL is either one server (`redis://`, `rediss://`, `unix://`) or, in the format
Celery and kombu take, the Sentinels of a replicated group:
`sentinel://:PASSWORD@h1:26379/0;sentinel://:PASSWORD@h2:26379/0`, with the group's
name in REDIS_SENTINEL_MASTER. The password and database are the primary's; the
Sentinels' own password, if they have one, is REDIS_SENTINEL_PASSWORD. A client made
here asks the Sentinels for the primary when it connects and again after a failover.

With ENDCONTACT_REDIS_CLUSTER=true, REDIS_URL names one node of a cluster (with its
password, if any); the client finds the others and follows failovers and slot moves
(redis-py's RedisCluster). shared.nodes has what must run on one node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions
import redis.sentinel

if TYPE_CHECKING:
    from shared.settings import Settings

try:
    from redis.driver_info import DriverInfo
except ImportError:  # an earlier redis-py reads its version once, at import
    DRIVER: dict[str, Any] = {}
else:
    # What CLIENT SETINFO says, made once. A connection made without it reads redis-py's
    # version from the installed package's metadata (importlib.metadata: files on
    # sys.path): a herd of 512 requests, each opening connections to the store and the
    # broker, spent a fifth of the web's CPU there (py-spy, 2026-12-07).
    DRIVER = {"driver_info": DriverInfo()}

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


class _Cluster(redis.cluster.RedisCluster):
    """RedisCluster, but its own failures (no node reachable, a slot with no primary
    while one fails over) are redis.ConnectionError, as one server's would be: every
    `except redis.RedisError` of the service catches them (redis-py's
    RedisClusterException is no RedisError)."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisClusterException as exc:
            raise redis.ConnectionError(f"cluster: {exc}") from exc


class _AsyncCluster(redis.asyncio.cluster.RedisCluster):
    """As _Cluster, for the web."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except redis.exceptions.RedisClusterException as exc:
            raise redis.ConnectionError(f"cluster: {exc}") from exc


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client of the store (or, with settings.broker(), the broker). A cluster's is
    typed as redis.Redis: it answers the commands the service sends as one server does;
    where it does not (a write and its WAITAOF, SCAN), shared.nodes tells them apart."""
    options = {**DRIVER, **options}
    if settings.redis_cluster:
        try:
            cluster = _Cluster.from_url(settings.require_redis_url(), **options)
        except redis.exceptions.RedisClusterException as exc:
            raise redis.ConnectionError(f"cluster: {exc}") from exc
        return cast("redis.Redis", cluster)
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
    options = {**DRIVER, **options}
    if settings.redis_cluster:
        return _async_cluster(settings.require_redis_url(), options)
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
    pool.connection_class = _checked(pool.connection_class)
    return client


def _async_cluster(url: str, options: dict[str, Any]) -> redis.asyncio.Redis:
    """The web's cluster client (it connects on first use), its connections checked as
    _closed_checked says; a pool's `max_connections` is per node there."""
    cluster = _AsyncCluster.from_url(url, **options)
    kwargs = cluster.nodes_manager.connection_kwargs
    kwargs["connection_class"] = _checked(kwargs["connection_class"])
    return cast("redis.asyncio.Redis", cluster)


# Each connection class made once: a class per client would grow without end.
_CHECKED: dict[type[Any], type[Any]] = {}


def _checked(base: type[Any]) -> type[Any]:
    if base not in _CHECKED:
        _CHECKED[base] = _closed_checked(base)
    return _CHECKED[base]


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
