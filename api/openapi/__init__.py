"""The service's own OpenAPI document, served at /openapi.json: the operations
(api/openapi/operations.py) by path, and the schemas of their bodies generated from
api/models.py (api/openapi/parts.py)."""

from __future__ import annotations

from typing import Any

from api import models
from api.openapi import operations as op
from api.openapi.parts import SERVICE, TAGS, components, json_content, problem


def _service(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """An operation of the service itself: no key, so none of a key's answers."""
    return {"get": {"summary": summary, "tags": [SERVICE], "security": [], "responses": responses}}


def _object(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


READINESS = json_content(models.Readiness)
DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "endcontact",
        "version": "1.0.0",
        "description": "End contact with leads for a company's campaign. Not a do-not-call entry.",
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        "schemas": components(),
    },
    "security": [{"apiKey": []}],
    "tags": TAGS,
    "paths": {
        "/api/v1/leads/end-contact": {"post": op.END_CONTACT, "get": op.LIST},
        "/api/v1/leads/end-contact/check": {"post": op.CHECK},
        "/api/v1/leads/end-contact/events": {"get": op.FEED},
        "/api/v1/leads/end-contact/{phoneNumber}": {"get": op.LOOK_UP},
        "/api/v1/leads/end-contact/{phoneNumber}/history": {"get": op.HISTORY},
        "/api/v1/leads/resume-contact": {"post": op.RESUME_CONTACT},
        "/api/v1/webhooks": {"post": op.CREATE_WEBHOOK, "get": op.LIST_WEBHOOKS},
        "/api/v1/webhooks/{id}": {"delete": op.DELETE_WEBHOOK},
        "/api/v1/webhooks/{id}/rotate-secret": {"post": op.ROTATE_SECRET},
        "/api/v1/webhooks/{id}/deliveries": {"get": op.DELIVERIES},
        "/openapi.json": _service("This document", {"200": _object("OpenAPI 3.0.")}),
        "/healthz": _service("The process is alive", {"200": _object("Alive.")}),
        "/readyz": _service(
            "Ready for traffic: store and broker answer, a worker is alive",
            {
                "200": {"description": "Ready.", "content": READINESS},
                "503": {
                    "description": "The store or the broker does not answer within 1 s, "
                    "or no worker is alive.",
                    "content": READINESS,
                },
            },
        ),
        "/metrics": _service(
            "Prometheus metrics of the whole service",
            {
                "200": {
                    "description": "Prometheus text format 0.0.4.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "503": problem("Redis does not answer.", None),
            },
        ),
    },
}
