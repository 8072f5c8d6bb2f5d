"""Who is calling: the x-api-key header resolved to an active key, or a 401."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.problems import or_unavailable, unauthorized
from shared.apikeys import looks_like_key

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


async def authenticate(request: Request, store: AsyncStore) -> ApiKey:
    check_shape(request)
    secret = request.headers.get(HEADER, "")
    key = await or_unavailable(
        store.find_key(secret), "The API key cannot be checked right now; retry shortly."
    )
    if key is None or not key.active:
        raise unauthorized()
    return key
