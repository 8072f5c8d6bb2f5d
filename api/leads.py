"""The end-contact routes: end or resume contact, look a number up, its history, the
campaign's feed, a check of many numbers, and the list or CSV export of its marks."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth import check_shape
from api.body import (
    CHECK_MAX_BODY_BYTES,
    CHECK_MAX_NUMBERS,
    change_request,
    check_content_type,
    phone_numbers,
    read_body,
)
from api.metrics import count_numbers
from api.middleware import arrived
from api.problems import Problem, invalid, or_unavailable
from api.reads import CsvExport, after_ahead, export_query, feed_query, page_query, wants_csv
from api.services import Services, admit, services
from shared import logs
from shared.events import ENDED, RESUMED, Context, FeedAhead, FeedTrimmed
from shared.phones import InvalidPhoneNumber, to_e164

log = logging.getLogger("endcontact.api")


async def change(request: Request, kind: str) -> Response:
    """End or resume contact (`kind`) with the body's numbers, through the workers."""
    svc = services(request)
    started = time.perf_counter()
    # Its deadline runs from its arrival (api.middleware): the time its key, its body and
    # the event loop took is spent.
    deadline = arrived(request.scope) + svc.settings.result_timeout
    # While overloaded, refused before the key is looked up, the body and the messages
    # (api.admission); a key missing or malformed is a 401 all the same.
    check_shape(request)
    async with svc.admission.room(request.headers.get("content-length")) as room:
        key = await admit(request, svc)
        check_content_type(request.headers.get("content-type"))
        phones, reason = change_request(await read_body(request), svc.settings.default_region)
        room.fit(len(phones))
        svc.admission.in_time(deadline - time.monotonic())
    # The middleware has set the request's id (X-Request-ID) before any handler runs.
    context = Context(key.id, logs.request_id.get() or "", reason)
    outcome = await svc.fanout.change(kind, key.scope, phones, context, deadline)
    count_numbers(svc.metrics, outcome)
    log.info(
        "end-contact" if kind == ENDED else "resume-contact",
        extra={
            "key_id": key.id,
            "company": key.scope.company,
            "campaign": key.scope.campaign,
            "numbers": len(phones),
            "success": len(outcome.success),
            "failure": len(outcome.failure),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return JSONResponse({"success": outcome.success, "failure": outcome.failure}, 201)


async def resume_contact(request: Request) -> Response:
    return await change(request, RESUMED)


def path_phone(request: Request, svc: Services) -> str:
    text = request.path_params["phoneNumber"]
    try:
        return to_e164(text, svc.settings.default_region)
    except InvalidPhoneNumber as exc:
        raise invalid(
            "phoneNumber is not a valid phone number.",
            [{"parameter": "phoneNumber", "value": text, "reason": str(exc)}],
        ) from None


async def lookup(request: Request) -> Response:
    svc = services(request)
    key = await admit(request, svc)
    phone = path_phone(request, svc)
    ended_at = await or_unavailable(
        svc.store.ended_at(key.scope, phone), "The lookup cannot be made right now; retry shortly."
    )
    if ended_at is None:
        raise Problem(
            404,
            "Contact with this number has not been ended for this campaign.",
            type="/problems/not-ended",
        )
    return JSONResponse({"phoneNumber": phone, "endedAt": ended_at})


async def history(request: Request) -> Response:
    """Every change of one number's mark, oldest first (shared.events)."""
    svc = services(request)
    key = await admit(request, svc)
    phone = path_phone(request, svc)
    found = await or_unavailable(
        svc.store.history(key.scope, phone), "The history cannot be read right now; retry shortly."
    )
    return JSONResponse({"phoneNumber": phone, "events": [event.to_json() for event in found]})


async def feed(request: Request) -> Response:
    """The campaign's change feed from a cursor: poll with `after=next`."""
    svc = services(request)
    key = await admit(request, svc)
    after, limit = feed_query(request.query_params)
    try:
        page = await or_unavailable(
            svc.store.feed(key.scope, after, limit),
            "The feed cannot be read right now; retry shortly.",
        )
    except FeedTrimmed as exc:
        raise Problem(
            410,
            "Events after this cursor are no longer kept (after "
            f"{svc.settings.events_retention_days:g} days they leave the feed). Read the "
            "marks again (the list or the CSV export), then follow the feed without `after`.",
            type="/problems/cursor-expired",
            errors=[
                {
                    "parameter": "after",
                    "value": str(after),
                    "reason": f"events up to {exc} have left the feed",
                }
            ],
        ) from None
    except FeedAhead:
        raise after_ahead(str(after)) from None
    events = [event.to_json() for event in page.events]
    return JSONResponse({"events": events, "next": str(page.next)})


async def check(request: Request) -> Response:
    """Which of up to 1000 numbers are ended: one HMGET, no Celery."""
    svc = services(request)
    key = await admit(request, svc)
    check_content_type(request.headers.get("content-type"))
    raw = await read_body(request, CHECK_MAX_BODY_BYTES)
    phones = phone_numbers(raw, svc.settings.default_region, CHECK_MAX_NUMBERS)
    found = await or_unavailable(
        svc.store.ended_at_many(key.scope, phones),
        "The check cannot be made right now; retry shortly.",
    )
    ended = [
        {"phoneNumber": phone, "endedAt": ended_at}
        for phone, ended_at in zip(phones, found, strict=True)
        if ended_at is not None
    ]
    not_ended = [phone for phone, ended_at in zip(phones, found, strict=True) if ended_at is None]
    return JSONResponse({"ended": ended, "notEnded": not_ended})


async def list_marks(request: Request) -> Response:
    """A page of the campaign's marks, or with Accept: text/csv all of them, streamed."""
    svc = services(request)
    key = await admit(request, svc)
    if wants_csv(request.headers.get("accept")):
        export_query(request.query_params)
        chunks = svc.store.export(key.scope)
        # The first read before the 200: a Redis that is down is still a 503.
        first = await or_unavailable(
            anext(chunks), "The export cannot start right now; retry shortly."
        )
        return CsvExport(first, chunks)
    limit, cursor = page_query(request.query_params)
    page = await or_unavailable(
        svc.store.page(key.scope, cursor, limit),
        "The list cannot be read right now; retry shortly.",
    )
    items = [{"phoneNumber": phone, "endedAt": ended_at} for phone, ended_at in page.items]
    following = None if page.next is None else page.next.encode()
    return JSONResponse({"items": items, "next": following}, headers={"Vary": "Accept"})


async def leads(request: Request) -> Response:
    # One route for both methods, so that a 405 on this path allows both.
    if request.method == "POST":
        return await change(request, ENDED)
    return await list_marks(request)
