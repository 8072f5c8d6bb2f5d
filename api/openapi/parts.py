"""What the OpenAPI document is made of: the bodies' schemas, generated from their
types in api/models.py, and one helper per shape of answer, parameter and link.

msgspec writes JSON Schema 2020-12; `openapi_30` turns it into the dialect of OpenAPI
3.0, the version the document has always declared (and code generators read best).
"""

from __future__ import annotations

from typing import Any

import msgspec

from api import models
from api.models import PHONE_FORMATS

COMPONENTS = "#/components/schemas/{name}"
# What the paths refer to; msgspec adds what these refer to (Mark, Event, ...).
MODELS = (
    models.ChangeRequest,
    models.ChangeResult,
    models.CheckRequest,
    models.CheckResult,
    models.MarkPage,
    models.Mark,
    models.EventPage,
    models.History,
    models.WebhookRequest,
    models.CreatedWebhook,
    models.WebhookList,
    models.RotatedSecret,
    models.DeliveryPage,
    models.Readiness,
    models.Problem,
)


def openapi_30(schema: dict[str, Any]) -> dict[str, Any]:
    """A msgspec schema in OpenAPI 3.0's words: `nullable` for a union with null, one
    `example` for `examples`, no `title` (a component is named by its key); and a
    description from a docstring on one line, as the others."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: openapi_30(part) for name, part in value.items()}
        elif key == "items":
            out[key] = openapi_30(value)
        elif key == "description":
            out[key] = " ".join(value.split())
        elif key == "examples":
            out["example"] = value[0]
        elif key == "anyOf" and {"type": "null"} in value and len(value) == 2:
            (other,) = (part for part in value if part != {"type": "null"})
            out.update({**openapi_30(other), "nullable": True})
        elif key != "title":
            out[key] = value
    return out


def components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(MODELS, ref_template=COMPONENTS)
    return {name: openapi_30(schema) for name, schema in sorted(schemas.items())}


def _schema(kind: Any) -> dict[str, Any]:
    """The inline schema of a parameter's type."""
    return openapi_30(msgspec.json.schema(kind))


def _ref(model: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": COMPONENTS.format(name=model.__name__)}


def json_content(model: type[msgspec.Struct]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


# The docs page's groups, in this order (Swagger UI shows one per tag, and every
# operation without one under "default"): by what a reader comes for.
TAGS = [
    {
        "name": "end contact",
        "description": "End contact with leads, or resume it when they reach out first.",
    },
    {
        "name": "reads",
        "description": "Whether contact is ended: one number, up to 1000 at once, the "
        "campaign a page at a time or whole as CSV.",
    },
    {
        "name": "events",
        "description": "Every change of a mark: a number's history, the campaign's "
        "change feed to follow.",
    },
    {
        "name": "webhooks",
        "description": "Changes pushed to a URL of yours as they happen, signed; the "
        "attempts to deliver them.",
    },
    {
        "name": "service",
        "description": "Liveness, readiness, metrics and this document. No key needed.",
    },
]
CHANGES, READS, EVENTS, WEBHOOKS, SERVICE = (str(tag["name"]) for tag in TAGS)
RATE_HEADERS = {
    name: {"schema": {"type": "integer"}, "description": description}
    for name, description in (
        ("RateLimit-Limit", "Requests allowed per key in the window."),
        ("RateLimit-Remaining", "Requests left in the window."),
        ("RateLimit-Reset", "Seconds until the window resets."),
    )
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}


def problem(description: str, headers: dict[str, Any] | None = RATE_HEADERS) -> dict[str, Any]:
    """An error answer; by default one to a key that was admitted (so rate headers)."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(models.Problem)}},
    }
    if headers:
        response["headers"] = headers
    return response


COMMON_ERRORS = {
    "401": problem("Missing, unknown or revoked x-api-key (the answer never says which).", None),
    "429": problem("Too many requests for this key.", {**RETRY_AFTER, **RATE_HEADERS}),
    "503": problem("Redis cannot be reached to check the key; retry.", RETRY_AFTER),
}


def body_errors(invalid: str, limit: int) -> dict[str, Any]:
    """The answers of an operation that reads a JSON body of at most `limit` bytes."""
    return {
        "400": problem(invalid),
        "408": problem("The body did not arrive in time."),
        "413": problem(f"The body is larger than {limit} bytes."),
    }


def ok(
    description: str,
    model: type[msgspec.Struct] | None = None,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "headers": RATE_HEADERS}
    if links:
        response["links"] = links
    if model:
        response["content"] = json_content(model)
    return response


def api_operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Any],
    *,
    description: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: type[msgspec.Struct] | None = None,
) -> dict[str, Any]:
    """An operation that needs a key: with the answers every such one can give."""
    operation: dict[str, Any] = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": True, "content": json_content(body)}
    operation["responses"] = {**COMMON_ERRORS, **responses}
    return operation


def query(name: str, kind: Any, description: str | None = None) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
    if description:
        parameter["description"] = description
    parameter["schema"] = _schema(kind)
    return parameter


def path_parameter(name: str, kind: Any, description: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _schema(kind),
        **more,
    }


def link(operation_id: str, description: str, **by: Any) -> dict[str, Any]:
    """A link to `operation_id`; `by` is its `parameters` or its `requestBody`."""
    return {"operationId": operation_id, **by, "description": description}


def link_with_number(operation_id: str, value: str, description: str) -> dict[str, Any]:
    """A link to end or resume the one number `value` points at."""
    return link(operation_id, description, requestBody={"phoneNumberList": [value]})


PHONE_PARAMETER = path_parameter(
    "phoneNumber",
    models.PhoneParameter,
    PHONE_FORMATS + " URL-encoded.",
    examples={
        "international": {"value": "+15095551234"},
        "national": {"value": "(509) 555-1234"},
    },
)
WEBHOOK_ID = path_parameter("id", models.WebhookPathId, "A webhook's id, as its creation answered.")
NOT_THIS_CAMPAIGNS = {
    "404": problem(
        "No such webhook for this key's campaign (another campaign's is not found either)."
    )
}
