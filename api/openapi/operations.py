"""The API's operations as the document states them: what each does, its parameters,
answers and links. Their bodies' schemas are api/models.py's."""

from __future__ import annotations

from typing import Any

from api import models as m
from api.body import CHECK_MAX_BODY_BYTES, CHECK_MAX_NUMBERS, MAX_BODY_BYTES
from api.openapi.parts import (
    CHANGES,
    EVENTS,
    NOT_THIS_CAMPAIGNS,
    PHONE_PARAMETER,
    READS,
    RETRY_AFTER,
    WEBHOOK_ID,
    WEBHOOKS,
    api_operation,
    body_errors,
    link,
    link_with_number,
    ok,
    problem,
    query,
)
from api.webhooks import MAX_BODY_BYTES as WEBHOOK_MAX_BODY_BYTES
from shared.addresses import MAX_URL_LENGTH, RESOLVE_TIMEOUT
from shared.events import MAX_NUMBERS
from shared.webhooks import LOG_LENGTH, MAX_PER_CAMPAIGN

# Links from a change's 201 to what its first success now reads as.
FIRST_SUCCESS = "$response.body#/success/0"
HISTORY_OF_FIRST_SUCCESS = link(
    "endContactHistory",
    "The history of a number in success ends with this change, unless it was no change "
    "(already in that state).",
    parameters={"phoneNumber": FIRST_SUCCESS},
)


def _change(
    operation_id: str, summary: str, description: str, links: dict[str, Any]
) -> dict[str, Any]:
    """End-contact and resume-contact: one body, one answer, the same errors."""
    return api_operation(
        operation_id,
        CHANGES,
        summary,
        {
            "201": ok(
                "Every number is in exactly one list, in request order. When this answers, "
                "each success's event is in the feed and in the number's history "
                "(read-your-writes).",
                m.ChangeResult,
                {"HistoryOfFirstSuccess": HISTORY_OF_FIRST_SUCCESS, **links},
            ),
            **body_errors("Invalid body; nothing was processed.", MAX_BODY_BYTES),
            "503": problem(
                "Redis cannot be reached to check the key; or, type "
                "/problems/overloaded, more tasks are queued than the workers can "
                "do within the deadline: nothing of the request was queued. Retry "
                "after Retry-After.",
                RETRY_AFTER,
            ),
        },
        description=description,
        body=m.ChangeRequest,
    )


END_CONTACT = _change(
    "endContact",
    f"End contact with up to {MAX_NUMBERS} leads for the key's company and campaign",
    "A success means the number is ended now: it was ended by this request (an "
    "`ended` event), or was already (no event, the first `endedAt` kept).",
    {
        "LookUpFirstSuccess": link(
            "lookUpEndContact",
            "A number in success has its contact ended.",
            parameters={"phoneNumber": FIRST_SUCCESS},
        ),
        "ResumeFirstSuccess": link_with_number(
            "resumeContact", FIRST_SUCCESS, "Resume contact with a number just ended."
        ),
    },
)
RESUME_CONTACT = _change(
    "resumeContact",
    f"Resume contact with up to {MAX_NUMBERS} leads who reached out first",
    "The body and its rules are end-contact's. A success means the number is not "
    "ended now: it was resumed by this request (a `resumed` event), or was not ended "
    "(no event). Afterwards the lookup answers 404, the check, the list and the export "
    "leave the number out, and a later end-contact records a new `endedAt`.",
    {
        "EndFirstSuccessAgain": link_with_number(
            "endContact", FIRST_SUCCESS, "End contact again: a new `endedAt`."
        ),
    },
)

LOOK_UP = api_operation(
    "lookUpEndContact",
    READS,
    "When contact with a number was ended for the key's campaign",
    {
        "200": ok("Ended for this company and campaign.", m.Mark),
        "400": problem("Not a valid phone number."),
        "404": problem("Not ended for this company and campaign: never ended, or resumed."),
    },
    parameters=[PHONE_PARAMETER],
)

CHECK = api_operation(
    "checkEndContact",
    READS,
    f"Which of up to {CHECK_MAX_NUMBERS} numbers are ended for the key's campaign",
    {
        "200": ok(
            "Every number is in exactly one list, in request order, in E.164.", m.CheckResult
        ),
        **body_errors("Invalid body; nothing was checked.", CHECK_MAX_BODY_BYTES),
    },
    description="A read straight from the store. The same rules as end-contact for the "
    f"body, but 1 to {CHECK_MAX_NUMBERS} numbers and up to {CHECK_MAX_BODY_BYTES} bytes "
    "(1000 numbers of up to 125 characters).",
    body=m.CheckRequest,
)

_page = ok(
    "A page, or the CSV export.",
    m.MarkPage,
    {
        "NextPage": link(
            "listEndContact",
            "The next page, while `next` is not null.",
            parameters={"cursor": "$response.body#/next"},
        )
    },
)
_page["content"]["text/csv"] = {
    "schema": {"type": "string"},
    "example": "phoneNumber,endedAt\r\n+15095551234,2026-11-28T22:43:58.226Z\r\n",
}
LIST = api_operation(
    "listEndContact",
    READS,
    "The key's campaign's marks: a page as JSON, or all of them as CSV",
    {"200": _page, "400": problem("A bad limit or cursor, or either with text/csv.")},
    description="JSON (the default): at most `limit` marks and the cursor of the "
    "next page, null at the end. Following `next` returns every number ended "
    "throughout the listing at least once, and no number that was not ended at some "
    "time during it; a page may hold fewer than `limit`, even none, and a number may "
    "come twice. With `Accept: text/csv`: the whole campaign, streamed, header "
    "`phoneNumber,endedAt`, the same guarantee; no `limit` or `cursor` then.",
    parameters=[
        query("limit", m.PageLimit),
        query("cursor", m.Cursor, "The `next` of the previous page, as it came."),
    ],
)

FEED = api_operation(
    "endContactEvents",
    EVENTS,
    "The key's campaign's change feed: every event, oldest first",
    {
        "200": ok(
            "At most `limit` events after `after`, oldest first.",
            m.EventPage,
            {
                "NextEvents": link(
                    "endContactEvents",
                    "The events that follow, or none yet: poll.",
                    parameters={"after": "$response.body#/next"},
                ),
                "HistoryOfFirstEvent": link(
                    "endContactHistory",
                    "Every change of the first event's number.",
                    parameters={"phoneNumber": "$response.body#/events/0/phoneNumber"},
                ),
            },
        ),
        "400": problem(
            "A bad limit, or an after that is no event id or is later than every "
            "event and than now."
        ),
        "410": problem(
            "Type /problems/cursor-expired: events after `after` are no longer kept. "
            "Read the marks again (list or export), then follow the feed without `after`."
        ),
    },
    description="Follow it with `after` set to each page's `next`: that yields "
    "every event of the campaign exactly once, in order. With nothing new, "
    "`events` is empty and `next` equals `after`, so a client polls with it. "
    "Without `after`, from the oldest event kept. Events are kept "
    "ENDCONTACT_EVENTS_RETENTION_DAYS (30 by default); an `after` older than that "
    "is a 410: read the marks again (the list or the CSV export), then follow the "
    "feed without `after`.",
    parameters=[
        query(
            "after",
            m.EventId,
            "An event id: the `next` of the previous page, or any event's `id`. The "
            "events after it. One later than every event of the feed and than the "
            "present (a made-up id) is a 400: the feed would hold nothing after it yet.",
        ),
        query("limit", m.PageLimit),
    ],
)

THIS_NUMBER = "$response.body#/phoneNumber"
HISTORY = api_operation(
    "endContactHistory",
    EVENTS,
    "Every change of one number's mark for the key's campaign, oldest first",
    {
        "200": ok(
            "The number in E.164 and its events.",
            m.History,
            {
                "EndThisNumber": link_with_number(
                    "endContact",
                    THIS_NUMBER,
                    "End contact with this number (no event if it is ended already).",
                ),
                "ResumeThisNumber": link_with_number(
                    "resumeContact",
                    THIS_NUMBER,
                    "Resume contact with this number (no event if it is not ended).",
                ),
            },
        ),
        "400": problem("Not a valid phone number."),
    },
    description="Empty for a number never changed. Kept as long as the number is "
    "ended, and at least as long as the feed keeps its events "
    "(ENDCONTACT_EVENTS_RETENTION_DAYS); a number ended before events existed has "
    "no history.",
    parameters=[PHONE_PARAMETER],
)

# The webhooks (api.webhooks). A path's `id` is any string: one not of this key's
# campaign, well-formed or not, is a 404.
THIS_WEBHOOK = {"id": "$response.body#/id"}
CREATE_WEBHOOK = api_operation(
    "createWebhook",
    WEBHOOKS,
    "Send the key's campaign's changes to a URL, signed",
    {
        "201": ok(
            "Created. The only answer that shows the secret.",
            m.CreatedWebhook,
            {
                name: link(operation, description, parameters=THIS_WEBHOOK)
                for name, operation, description in (
                    ("DeleteWebhook", "deleteWebhook", "The webhook just made can be deleted."),
                    ("RotateWebhookSecret", "rotateWebhookSecret", "Its secret can be rotated."),
                    ("ListWebhookDeliveries", "listWebhookDeliveries", "Its attempts can be read."),
                )
            },
        ),
        **body_errors(
            "Invalid body: errors point at /url (its rules, or a host that does not "
            "resolve or resolves to a non-public address) and /events.",
            WEBHOOK_MAX_BODY_BYTES,
        ),
        "409": problem(
            f"The campaign already has {MAX_PER_CAMPAIGN} webhooks "
            "(/problems/too-many-webhooks); delete one first."
        ),
    },
    description="Every change of the campaign (the events of the feed, "
    "`/api/v1/leads/end-contact/events`) of the types asked for is POSTed to "
    "`url`, signed per Standard Webhooks, and retried until delivered "
    "(docs/webhooks.md). The URL must be an absolute https:// URL with a host and no user "
    f"info, at most {MAX_URL_LENGTH} characters, whose host resolves (within "
    f"{RESOLVE_TIMEOUT:g} s) only to public addresses: not loopback, private, "
    "link-local, shared or otherwise non-public. ENDCONTACT_WEBHOOK_ALLOW_PRIVATE"
    "=true (development, tests) allows http:// and those addresses. At most "
    f"{MAX_PER_CAMPAIGN} webhooks per campaign. Other fields of the body are ignored.",
    body=m.WebhookRequest,
)
LIST_WEBHOOKS = api_operation(
    "listWebhooks",
    WEBHOOKS,
    "The key's campaign's webhooks, oldest first; never a secret",
    {"200": ok("Every webhook of the campaign.", m.WebhookList)},
)


def _of_webhook(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    description: str | None = None,
    limit: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An operation on one webhook of the key's campaign, named by its path's id."""
    return api_operation(
        operation_id,
        WEBHOOKS,
        summary,
        {**responses, **NOT_THIS_CAMPAIGNS},
        description=description,
        parameters=[WEBHOOK_ID, *(limit or ())],
    )


DELETE_WEBHOOK = _of_webhook(
    "deleteWebhook",
    "Stop sending to a webhook; its pending deliveries are dropped",
    {"204": ok("Deleted.")},
)
ROTATE_SECRET = _of_webhook(
    "rotateWebhookSecret",
    "A new secret; the previous one also signs for 24 hours",
    {"200": ok("The new secret, shown only in this answer.", m.RotatedSecret)},
    "Until `previousSecretExpiresAt` every delivery carries two signatures, one per "
    "secret (space-separated in webhook-signature), so a receiver can switch secrets "
    "without missing one. Rotating again within the day drops the oldest secret at once.",
)
DELIVERIES = _of_webhook(
    "listWebhookDeliveries",
    "The webhook's latest delivery attempts, newest first",
    {"200": ok("At most `limit` attempts.", m.DeliveryPage), "400": problem("A bad limit.")},
    f"The service keeps the latest {LOG_LENGTH} attempts of each webhook: what a "
    "receiver answered, or why no answer came, and how long it took.",
    [query("limit", m.DeliveriesLimit)],
)
