"""The servers a process needs, named as an operator set them, and waiting for them.

The store, and the broker when it is another server: `run` checks them once before it
says it runs (cli.preflight); the web, which compose may start before its servers, says
at each attempt which one it waits for, until each has answered once (issue 20: an idle
web with its store down said nothing after its first line, or nothing at all when only
the store was down). Later outages are told by what fails then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis
import redis.asyncio

from shared.connection import failure
from shared.settings import Settings, without_password

log = logging.getLogger(__name__)

# As Celery's worker first tries again: often enough to see the wait end, seldom enough
# for a log that waits minutes.
WAIT_EVERY = 2.0
# A server that takes a connection and never answers (SIGSTOPped) is a failed attempt.
PING_TIMEOUT = 2.0


@dataclass(frozen=True)
class Server:
    role: str
    variable: str
    settings: Settings

    def __str__(self) -> str:
        url = without_password(self.settings.require_redis_url())
        return f"the {self.role} ({self.variable}) at {url}"


def servers(settings: Settings) -> list[Server]:
    """The store, then the broker when it is not the store's server."""
    needed = [Server("store", "REDIS_URL", settings)]
    if settings.broker_url is not None:
        needed.append(Server("broker", "ENDCONTACT_BROKER_URL", settings.broker()))
    return needed


async def until_answering(
    clients: Sequence[tuple[Server, redis.asyncio.Redis]], every: float = WAIT_EVERY
) -> None:
    """Ping each server until it has answered once: a warning naming it at each attempt
    that fails, and a line when one that failed answers."""
    waiting, retrying = list(clients), False
    while waiting:
        still = []
        for server, client in waiting:
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    await client.ping()
            except (TimeoutError, redis.RedisError, OSError) as exc:
                log.warning(
                    "waiting for %s, trying again every %g s: %s", server, every, failure(exc)
                )
                still.append((server, client))
            else:
                if retrying:
                    log.info("%s answers", server)
        waiting, retrying = still, True
        if waiting:
            await asyncio.sleep(every)
