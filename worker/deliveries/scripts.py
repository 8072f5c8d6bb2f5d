"""The dispatcher's Lua scripts (lua/*.lua, each says its KEYS and ARGV), joined with
the pieces they start with, and the key prefixes those pieces take."""

from __future__ import annotations

from shared import deliveries, lua
from shared.clock import SERVER_TIME
from shared.webhooks import webhook_key

_PREFIXES = lua.load("worker.deliveries", "prefixes")
_PLACE = lua.load("worker.deliveries", "place")

CLAIM_SCRIPT = _PREFIXES + _PLACE + SERVER_TIME + lua.load("worker.deliveries", "claim")
RECORD_SCRIPT = _PREFIXES + _PLACE + SERVER_TIME + lua.load("worker.deliveries", "record")
COMMIT_SCRIPT = _PREFIXES + _PLACE + SERVER_TIME + lua.load("worker.deliveries", "commit")
ALIVE_SCRIPT = SERVER_TIME + lua.load("worker.deliveries", "alive")
RENEW_SCRIPT = lua.load("worker.deliveries", "renew")
RELEASE_SCRIPT = lua.load("worker.deliveries", "release")


def prefixes() -> list[str | int]:
    """lua/prefixes.lua's ARGV: the prefixes of the key names the scripts build."""
    return [deliveries.due_key(""), "ec:delivery:", webhook_key("")]
