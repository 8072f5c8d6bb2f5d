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


async def authenticate(request: Request, store: AsyncStore) -> ApiKey:
    secret = request.headers.get(HEADER, "")
    if not looks_like_key(secret):
        raise unauthorized()
    key = await or_unavailable(
        store.find_key(secret), "The API key cannot be checked right now; retry shortly."
    )
    if key is None or not key.active:
        raise unauthorized()
    return key
