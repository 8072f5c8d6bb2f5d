"""The servers a command works with: REDIS_URL's, or the data directory's embedded ones."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from shared.embedded import embedded_broker, embedded_redis
from shared.settings import Settings
from shared.store import Store


@contextlib.contextmanager
def servers(settings: Settings, *, store: bool = True, broker: bool = True) -> Iterator[Settings]:
    """The settings with their servers: REDIS_URL when set, otherwise the data
    directory's embedded server, and beside it its broker unless ENDCONTACT_BROKER_URL
    is set. `store`/`broker` False: a command that does not need that one."""
    with contextlib.ExitStack() as started:
        if settings.redis_url is None:
            url = started.enter_context(embedded_redis(settings.data_dir)) if store else None
            broker_url = settings.broker_url
            if broker and broker_url is None:
                broker_url = started.enter_context(embedded_broker(settings.data_dir))
            settings = replace(settings, redis_url=url, broker_url=broker_url)
        yield settings


def server_env(settings: Settings) -> dict[str, str]:
    """The resolved servers, for child processes that read them from the environment."""
    env = {"REDIS_URL": settings.require_redis_url()}
    if settings.broker_url is not None:
        env["ENDCONTACT_BROKER_URL"] = settings.broker_url
    return env


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    with servers(settings, broker=False) as resolved:
        store = Store.connect(resolved)
        try:
            yield store
        finally:
            store.close()
