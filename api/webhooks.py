"""The webhook routes: a campaign's endpoints, their secrets and their recent attempts.

Every route admits the key first (auth and rate limit, api.services.admit) and acts on the
key's campaign only: another campaign's webhook is a 404, as one that does not exist.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from api.body import check_content_type, json_document, read_body
from api.problems import Problem, invalid, or_unavailable, unauthorized
from api.reads import query_limit
from shared.addresses import AddressError, resolve_public_async, target
from shared.events import iso
from shared.keyspace import feed_name
from shared.text import is_text
from shared.webhook_store import Creation
from shared.webhooks import EVENT_TYPES, MAX_PER_CAMPAIGN, Webhook, new_webhook

if TYPE_CHECKING:
    from starlette.requests import Request

    from api.services import Services
    from shared.apikeys import ApiKey

log = logging.getLogger("endcontact.api")

# A URL of 2000 characters, four bytes each at worst, and the events: far below.
MAX_BODY_BYTES = 16 * 1024
DEFAULT_DELIVERIES = 20
MAX_DELIVERIES = 100


def _not_found() -> Problem:
    return Problem(
        404,
        "No webhook with this id for this key's campaign.",
        type="/problems/webhook-not-found",
    )


def _error(pointer: str, value: Any, reason: str) -> dict[str, Any]:
    """An errors entry that shows the value when it can be shown: one holding a lone
    surrogate (JSON may escape one, "\\ud800") has no UTF-8, so only the reason is."""
    error: dict[str, Any] = {"pointer": pointer, "reason": reason}
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        return error
    if is_text(shown):
        error["value"] = value
    return error


def _events(document: dict[str, Any]) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The events asked for, in EVENT_TYPES' order (both when none are named)."""
    if "events" not in document:
        return EVENT_TYPES, []
    given = document["events"]
    allowed = " or ".join(f'"{kind}"' for kind in EVENT_TYPES)
    if not isinstance(given, list) or not given:
        why = f"must be a non-empty array of {allowed}"
        return (), [_error("/events", given, why)]
    errors: list[dict[str, Any]] = []
    for index, kind in enumerate(given):
        pointer = f"/events/{index}"
        if not isinstance(kind, str) or kind not in EVENT_TYPES:
            errors.append(_error(pointer, kind, f"must be {allowed}"))
        elif given.index(kind) < index:
            why = f"duplicate of /events/{given.index(kind)}"
            errors.append(_error(pointer, kind, why))
    return tuple(kind for kind in EVENT_TYPES if kind in given), errors


async def _url(document: dict[str, Any], allow_private: bool) -> tuple[str, list[dict[str, Any]]]:
    """The body's URL once its rules and its host's addresses allow it."""
    if "url" not in document:
        return "", [{"pointer": "/url", "reason": "required"}]
    url = document["url"]
    if not isinstance(url, str):
        return "", [_error("/url", url, "must be a string")]
    try:
        where = target(url, allow_private)
        await resolve_public_async(where.host, where.port, allow_private)
    except AddressError as exc:
        return "", [_error("/url", url, str(exc))]
    return url, []


async def _request(request: Request, allow_private: bool) -> tuple[str, tuple[str, ...]]:
    """The URL and events of a creation's body, or a 400 naming every fault."""
    check_content_type(request.headers.get("content-type"))
    document = _json_object(await read_body(request, MAX_BODY_BYTES))
    events, event_errors = _events(document)
    url, url_errors = await _url(document, allow_private)
    if url_errors or event_errors:
        raise invalid("The webhook must be fixed; none was created.", url_errors + event_errors)
    return url, events


def _json_object(raw: bytes) -> dict[str, Any]:
    document = json_document(raw)
    if not isinstance(document, dict):
        raise invalid(
            "The body must be a JSON object.",
            [{"pointer": "", "reason": "must be a JSON object with a url"}],
        )
    return document


async def create(request: Request, svc: Services, key: ApiKey) -> Response:
    url, events = await _request(request, svc.settings.webhook_allow_private)
    webhook = new_webhook(key.scope, url, events, key.id)
    created = await or_unavailable(
        svc.webhooks.create(webhook, feed_name(key.scope)),
        "The webhook cannot be created right now; retry shortly.",
    )
    if created is Creation.REVOKED:
        # Revoked while this request was under way: refused as it now would be.
        raise unauthorized()
    if created is Creation.FULL:
        # 409, not 400: the request is sound, the campaign's state refuses it, and
        # deleting a webhook makes the same request succeed.
        raise Problem(
            409,
            f"This campaign already has {MAX_PER_CAMPAIGN} webhooks, the most it may "
            "have (disabled ones count); delete one first.",
            type="/problems/too-many-webhooks",
        )
    _log("webhook created", key, webhook)
    # The one answer that shows the secret.
    return JSONResponse({**webhook.to_json(), "secret": webhook.secret}, 201)


async def listing(svc: Services, key: ApiKey) -> Response:
    found = await or_unavailable(
        svc.webhooks.of_feed(feed_name(key.scope)),
        "The webhooks cannot be read right now; retry shortly.",
    )
    return JSONResponse({"webhooks": [webhook.to_json() for webhook in found]})


async def _own(request: Request, svc: Services, key: ApiKey) -> Webhook:
    """The path's webhook, if it is the key's campaign's; else a 404."""
    found = await or_unavailable(
        svc.webhooks.get(request.path_params["id"], key.scope),
        "The webhook cannot be read right now; retry shortly.",
    )
    if found is None:
        raise _not_found()
    return found


async def delete(request: Request, svc: Services, key: ApiKey) -> Response:
    webhook = await _own(request, svc, key)
    await or_unavailable(
        svc.webhooks.delete(webhook, feed_name(key.scope)),
        "The webhook cannot be deleted right now; retry shortly.",
    )
    _log("webhook deleted", key, webhook)
    return Response(status_code=204)


async def rotate_secret(request: Request, svc: Services, key: ApiKey) -> Response:
    webhook = await _own(request, svc, key)
    rotated = await or_unavailable(
        svc.webhooks.rotate(webhook), "The secret cannot be rotated right now; retry shortly."
    )
    if rotated is None:  # deleted meanwhile
        raise _not_found()
    _log("webhook secret rotated", key, webhook)
    return JSONResponse(
        {
            "id": webhook.id,
            "secret": rotated.secret,
            "previousSecretExpiresAt": iso(rotated.previous_until),
        }
    )


async def deliveries(request: Request, svc: Services, key: ApiKey) -> Response:
    errors: list[dict[str, str]] = []
    limit = query_limit(request.query_params, DEFAULT_DELIVERIES, MAX_DELIVERIES, errors)
    if errors:
        raise invalid("The query must be fixed.", errors)
    webhook = await _own(request, svc, key)
    attempts = await or_unavailable(
        svc.webhooks.attempts(webhook.id, limit),
        "The deliveries cannot be read right now; retry shortly.",
    )
    return JSONResponse({"deliveries": attempts})


def _log(message: str, key: ApiKey, webhook: Webhook) -> None:
    # Never the secret; not the whole URL either (its query may hold a receiver's token).
    log.info(
        message,
        extra={
            "key_id": key.id,
            "company": key.scope.company,
            "campaign": key.scope.campaign,
            "webhook_id": webhook.id,
            "host": target(webhook.url, allow_private=True).host,
        },
    )
