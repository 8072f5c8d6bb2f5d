"""What every route reaches through its request: the process's services, and the
caller's key once admitted."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from api.admission import Admission
from api.auth import KnownKeys, authenticate
from api.fanout import FanOut
from api.middleware import answer_with
from api.ratelimit import RateLimiter
from api.results import ResultListener
from shared import metrics
from shared.apikeys import ApiKey
from shared.broker import AsyncBroker
from shared.settings import Settings
from shared.store import AsyncStore
from shared.webhook_store import AsyncWebhooks


@dataclass
class Services:
    settings: Settings
    store: AsyncStore
    # The queue, results, heartbeats and rate limits: REDIS_URL's server unless
    # ENDCONTACT_BROKER_URL names another (shared.broker).
    broker: AsyncBroker
    admission: Admission
    fanout: FanOut
    metrics: metrics.Registry
    webhooks: AsyncWebhooks
    results: ResultListener
    rates: RateLimiter
    # What the store last said of the keys this process saw (api.auth).
    known_keys: KnownKeys = field(default_factory=KnownKeys)


def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result


async def admit(request: Request, svc: Services) -> ApiKey:
    """The caller's key, with the request counted against its rate limit; from then
    on every answer to it carries the RateLimit headers, a 400 or 404 as a 201."""
    key = await authenticate(request, svc.store, svc.known_keys)
    answer_with(request.scope, await svc.rates.check(key))
    return key
