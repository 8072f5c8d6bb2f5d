"""Who is calling: the x-api-key header resolved to an active key, or a 401."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from api.problems import Problem, or_unavailable, unauthorized
from shared.apikeys import digest, looks_like_key

if TYPE_CHECKING:
    from starlette.requests import Request

    from shared.apikeys import ApiKey
    from shared.store import AsyncStore

HEADER = "x-api-key"


def check_shape(request: Request) -> None:
    """A 401 for a key missing or not shaped as ours, with no I/O: what may come
    before the overload check, so that such a request gets its 401, never a 503."""
    if not looks_like_key(request.headers.get(HEADER, "")):
        raise unauthorized()


# How long, and for how many keys, a web process answers with what the store last
# said of a key while the store cannot say (below).
KNOWN_FOR = 60.0
KNOWN_KEYS = 10_000


class KnownKeys:
    """The active keys this process saw last, by their secret's digest (never the secret).

    On a Valkey Cluster a key's record lives on one primary, rarely its campaign's: while
    that primary fails over (about 2 s) every request with the key would be a 503,
    though its campaign's own primary serves. So a key the store vouched for within
    KNOWN_FOR is taken while the store cannot answer for it; while it can, the store's
    answer (a revoke included) is the only one. A revoke written just before its
    primary failed can so be missed for KNOWN_FOR at most: revoking then fails anyway."""

    def __init__(self, for_seconds: float = KNOWN_FOR, most: int = KNOWN_KEYS) -> None:
        self._for = for_seconds
        self._most = most
        self._keys: OrderedDict[str, tuple[float, ApiKey]] = OrderedDict()

    def saw(self, secret_digest: str, key: ApiKey | None) -> None:
        self._keys.pop(secret_digest, None)
        if key is not None and key.active:
            self._keys[secret_digest] = (time.monotonic(), key)
            if len(self._keys) > self._most:
                self._keys.popitem(last=False)

    def recent(self, secret_digest: str) -> ApiKey | None:
        seen = self._keys.get(secret_digest)
        return seen[1] if seen and time.monotonic() - seen[0] <= self._for else None


async def authenticate(request: Request, store: AsyncStore, known: KnownKeys) -> ApiKey:
    check_shape(request)
    secret = request.headers.get(HEADER, "")
    secret_digest = digest(secret)
    try:
        key = await or_unavailable(
            store.find_key(secret_digest), "The API key cannot be checked right now; retry shortly."
        )
    except Problem:  # the store cannot answer
        if (recent := known.recent(secret_digest)) is not None:
            return recent
        raise
    known.saw(secret_digest, key)
    if key is None or not key.active:
        raise unauthorized()
    return key
