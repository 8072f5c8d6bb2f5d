"""What a new connection of a client made by shared.connection costs before it connects:
a herd of requests opens hundreds at once in the web."""

from __future__ import annotations

import importlib.metadata

import pytest
import redis

from shared.connection import async_client, sync_client
from shared.settings import Settings

# Nothing listens there: no connection below connects.
SETTINGS = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"})


def test_a_new_connection_reads_no_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    version = importlib.metadata.version

    def reading(name: str) -> str:
        read.append(name)
        return version(name)

    monkeypatch.setattr(importlib.metadata, "version", reading)
    sync, asynchronous = sync_client(SETTINGS), async_client(SETTINGS)
    made = [c.connection_pool.make_connection() for c in (sync, asynchronous) for _ in range(3)]
    assert read == []
    # CLIENT SETINFO still names the library and its version, as redis-py would.
    for connection in made:
        info = getattr(connection, "driver_info", None)
        if info is not None:  # redis-py 7.1 and later
            assert (info.name, info.lib_version) == ("redis-py", redis.__version__)
