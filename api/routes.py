"""Every path the web answers, and the route each goes to."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import docs
from api import webhooks as hooks
from api.leads import check, feed, history, leads, lookup, resume_contact
from api.monitoring import healthz, metrics_text, readyz
from api.openapi import DOCUMENT
from api.services import admit, services


async def webhooks(request: Request) -> Response:
    """A campaign's webhooks: create one (POST) or list them (api.webhooks)."""
    svc = services(request)
    key = await admit(request, svc)
    if request.method == "POST":
        return await hooks.create(request, svc, key)
    return await hooks.listing(svc, key)


async def webhook(request: Request) -> Response:
    svc = services(request)
    return await hooks.delete(request, svc, await admit(request, svc))


async def rotate_webhook_secret(request: Request) -> Response:
    svc = services(request)
    return await hooks.rotate_secret(request, svc, await admit(request, svc))


async def webhook_deliveries(request: Request) -> Response:
    svc = services(request)
    return await hooks.deliveries(request, svc, await admit(request, svc))


async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)


ROUTES = [
    Route("/api/v1/leads/end-contact", leads, methods=["GET", "POST"]),
    Route("/api/v1/leads/end-contact/check", check, methods=["POST"]),
    # Before the lookup, whose path would take "events" as a number.
    Route("/api/v1/leads/end-contact/events", feed, methods=["GET"]),
    Route("/api/v1/leads/end-contact/{phoneNumber}", lookup, methods=["GET"]),
    Route("/api/v1/leads/end-contact/{phoneNumber}/history", history, methods=["GET"]),
    Route("/api/v1/leads/resume-contact", resume_contact, methods=["POST"]),
    # One route per path, so that a 405 names every method the path allows.
    Route("/api/v1/webhooks", webhooks, methods=["GET", "POST"]),
    Route("/api/v1/webhooks/{id}", webhook, methods=["DELETE"]),
    Route("/api/v1/webhooks/{id}/rotate-secret", rotate_webhook_secret, methods=["POST"]),
    Route("/api/v1/webhooks/{id}/deliveries", webhook_deliveries, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_text, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    *docs.ROUTES,
]
