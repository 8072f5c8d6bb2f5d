"""Every script the service registers, as read from its `.lua` files, compiles on the
real server (SCRIPT LOAD): a slip in a file fails here, not in the one path that runs it."""

from __future__ import annotations

import redis

from tests.unit.test_lua import registered_scripts


def test_every_registered_script_compiles(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        failed = {}
        for name, script in registered_scripts().items():
            try:
                client.script_load(script)
            except redis.ResponseError as exc:
                failed[name] = str(exc)
        assert failed == {}
    finally:
        client.close()
