"""The service's own OpenAPI document, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from api.body import CHECK_MAX_BODY_BYTES, CHECK_MAX_NUMBERS, MAX_BODY_BYTES
from api.problems import MAX_ECHO
from api.reads import DEFAULT_LIMIT, MAX_LIMIT
from api.webhooks import DEFAULT_DELIVERIES, MAX_DELIVERIES
from api.webhooks import MAX_BODY_BYTES as WEBHOOK_MAX_BODY_BYTES
from shared.addresses import MAX_URL_LENGTH, RESOLVE_TIMEOUT
from shared.events import MAX_NUMBERS, REASON_MAX
from shared.marks import MAX_CURSOR_LENGTH
from shared.phones import MAX_INPUT_LENGTH
from shared.webhooks import EVENT_TYPES, LOG_LENGTH, MAX_PER_CAMPAIGN

# What the service reads as a phone number. No `pattern`: the test is phonenumbers'
# validity (area code, length, country) on national or international text, which no
# regular expression states honestly; a schema-valid string can still be a 400.
PHONE_FORMATS = (
    'A phone number as people write it: international ("+1 509-555-1234", '
    '"+15095551234") or national, read in the default region (US unless '
    'ENDCONTACT_DEFAULT_REGION says otherwise: "(509) 555-1234", "509.555.1234"). '
    "It must be a valid number (a real area code and length, not merely digits) "
    "without an extension; anything else is a 400."
)
PHONE_INPUT = {"type": "string", "maxLength": MAX_INPUT_LENGTH, "description": PHONE_FORMATS}
E164 = {"type": "string", "pattern": r"^\+[1-9][0-9]{1,14}$", "example": "+15095551234"}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
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
CHANGES, READS, EVENTS, WEBHOOKS, SERVICE = ([tag["name"]] for tag in TAGS)
RATE_HEADERS = {
    name: {"schema": {"type": "integer"}, "description": description}
    for name, description in (
        ("RateLimit-Limit", "Requests allowed per key in the window."),
        ("RateLimit-Remaining", "Requests left in the window."),
        ("RateLimit-Reset", "Seconds until the window resets."),
    )
}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
COMMON_ERRORS = {
    "401": _problem("Missing, unknown or revoked x-api-key (the answer never says which)."),
    "429": _problem("Too many requests for this key.", {**RETRY_AFTER, **RATE_HEADERS}),
    "503": _problem("Redis cannot be reached to check the key; retry.", RETRY_AFTER),
}

ENDED_AT = {
    "type": "string",
    "format": "date-time",
    "description": "When it was ended: ending it again keeps this time; after a resume, "
    "a new end records a new one.",
}
MARK = {
    "type": "object",
    "required": ["phoneNumber", "endedAt"],
    "properties": {"phoneNumber": E164, "endedAt": ENDED_AT},
}

CHECK: dict[str, Any] = {
    "post": {
        "operationId": "checkEndContact",
        "tags": READS,
        "summary": f"Which of up to {CHECK_MAX_NUMBERS} numbers are ended for the key's campaign",
        "description": "A read straight from the store. The same rules as end-contact "
        f"for the body, but 1 to {CHECK_MAX_NUMBERS} numbers and up to "
        f"{CHECK_MAX_BODY_BYTES} bytes (1000 numbers of up to 125 characters).",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["phoneNumberList"],
                        "properties": {
                            "phoneNumberList": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": CHECK_MAX_NUMBERS,
                                "uniqueItems": True,
                                "items": {**PHONE_INPUT, "example": "(509) 555-1234"},
                                "description": "Valid phone numbers, unique by number.",
                            }
                        },
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "Every number is in exactly one list, in request order, in E.164.",
                "headers": RATE_HEADERS,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["ended", "notEnded"],
                            "properties": {
                                "ended": {"type": "array", "items": MARK},
                                "notEnded": {"type": "array", "items": E164},
                            },
                        }
                    }
                },
            },
            "400": _problem("Invalid body; nothing was checked.", RATE_HEADERS),
            "408": _problem("The body did not arrive in time.", RATE_HEADERS),
            "413": _problem(f"The body is larger than {CHECK_MAX_BODY_BYTES} bytes.", RATE_HEADERS),
            **COMMON_ERRORS,
        },
    }
}

LIST: dict[str, Any] = {
    "operationId": "listEndContact",
    "tags": READS,
    "summary": "The key's campaign's marks: a page as JSON, or all of them as CSV",
    "description": "JSON (the default): at most `limit` marks and the cursor of the "
    "next page, null at the end. Following `next` returns every number ended "
    "throughout the listing at least once, and no number that was not ended at some "
    "time during it; a page may hold fewer than `limit`, even none, and a number may "
    "come twice. With `Accept: text/csv`: the whole campaign, streamed, header "
    "`phoneNumber,endedAt`, the same guarantee; no `limit` or `cursor` then.",
    "parameters": [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "The `next` of the previous page, as it came.",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CURSOR_LENGTH},
        },
    ],
    "responses": {
        "200": {
            "description": "A page, or the CSV export.",
            "headers": RATE_HEADERS,
            "links": {
                "NextPage": {
                    "operationId": "listEndContact",
                    "parameters": {"cursor": "$response.body#/next"},
                    "description": "The next page, while `next` is not null.",
                }
            },
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["items", "next"],
                        "properties": {
                            "items": {"type": "array", "maxItems": MAX_LIMIT, "items": MARK},
                            "next": {"type": "string", "nullable": True},
                        },
                    }
                },
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "phoneNumber,endedAt\r\n+15095551234,2026-11-28T22:43:58.226Z\r\n",
                },
            },
        },
        "400": _problem("A bad limit or cursor, or either with text/csv.", RATE_HEADERS),
        **COMMON_ERRORS,
    },
}

READINESS: dict[str, Any] = {
    "type": "object",
    "required": ["status", "redis", "broker"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "redis": {"type": "string", "enum": ["ok", "down"], "description": "The store."},
        "broker": {
            "type": "string",
            "enum": ["ok", "down"],
            "description": "The broker and result backend (the store's server by default).",
        },
        "workers": {
            "type": "integer",
            "minimum": 0,
            "description": "Workers alive; absent when the broker is down.",
        },
    },
}

REASON = {
    "type": "string",
    "maxLength": REASON_MAX,
    "description": "Why, in the caller's words: recorded with each event of the request "
    "(the feed and the history show it). Any other type, a longer string, or one with "
    "a lone surrogate (`\\ud800`), is a 400 with pointer `/reason`.",
    "example": "the lead asked by SMS",
}
EVENT_ID = {
    "type": "string",
    "pattern": r"^[0-9]{1,20}-[0-9]{1,20}-[0-9]{1,6}$",
    "description": "Orders the campaign's feed and is its cursor: `after=<id>` continues "
    "after that event. Opaque to clients beyond that.",
    "example": "1764450000000-0-7",
}
EVENT_REF = {"$ref": "#/components/schemas/Event"}
# An API key's public id (shared.apikeys.generate_id).
KEY_ID = {"type": "string", "pattern": "^key_[0-9a-f]{16}$"}
EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One change of a number's mark. Only changes are events: ending an "
    "ended number, or resuming one that is not ended, adds none.",
    "required": ["id", "type", "phoneNumber", "at", "keyId", "requestId"],
    "properties": {
        "id": EVENT_ID,
        "type": {"type": "string", "enum": ["ended", "resumed"]},
        "phoneNumber": E164,
        "at": {
            "type": "string",
            "format": "date-time",
            "description": "When the change was made; for `ended`, the number's `endedAt`.",
        },
        "keyId": {
            **KEY_ID,
            "description": "The public id of the key that asked for it (`endcontact keys list`).",
        },
        "requestId": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "The request's `X-Request-ID`, as its answer echoed it: the "
            "client's own when it sent one of 1 to 128 printable ASCII characters "
            "without spaces, else one made for the request.",
        },
        "reason": {**REASON, "description": "The request's `reason`; absent when it gave none."},
    },
}


def _change(
    operation_id: str, summary: str, description: str, links: dict[str, Any]
) -> dict[str, Any]:
    """End-contact and resume-contact: one body, one answer, the same errors."""
    return {
        "operationId": operation_id,
        "tags": CHANGES,
        "summary": summary,
        "description": description,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["phoneNumberList"],
                        "properties": {
                            "phoneNumberList": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_NUMBERS,
                                "uniqueItems": True,
                                "items": {**PHONE_INPUT, "example": "(509) 555-1234"},
                                "description": "Valid phone numbers, unique by "
                                "number; national ones are read in the default region.",
                            },
                            "reason": REASON,
                        },
                    }
                }
            },
        },
        "responses": {
            "201": {
                "description": "Every number is in exactly one list, in request order. "
                "When this answers, each success's event is in the feed and in the "
                "number's history (read-your-writes).",
                "headers": RATE_HEADERS,
                "links": links,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["success", "failure"],
                            "properties": {
                                "success": {"type": "array", "items": E164},
                                "failure": {"type": "array", "items": E164},
                            },
                        }
                    }
                },
            },
            "400": _problem("Invalid body; nothing was processed.", RATE_HEADERS),
            "408": _problem("The body did not arrive in time.", RATE_HEADERS),
            "413": _problem(f"The body is larger than {MAX_BODY_BYTES} bytes.", RATE_HEADERS),
            **COMMON_ERRORS,
            "503": _problem(
                "Redis cannot be reached to check the key; or, type "
                "/problems/overloaded, more tasks are queued than the workers can "
                "do within the deadline: nothing of the request was queued. Retry "
                "after Retry-After.",
                RETRY_AFTER,
            ),
        },
    }


# Links from a change's 201 to what its first success now reads as.
FIRST_SUCCESS = "$response.body#/success/0"
HISTORY_OF_FIRST_SUCCESS = {
    "operationId": "endContactHistory",
    "parameters": {"phoneNumber": FIRST_SUCCESS},
    "description": "The history of a number in success ends with this change, unless "
    "it was no change (already in that state).",
}
END_CONTACT = _change(
    "endContact",
    "End contact with up to 50 leads for the key's company and campaign",
    "A success means the number is ended now: it was ended by this request (an "
    "`ended` event), or was already (no event, the first `endedAt` kept).",
    {
        "LookUpFirstSuccess": {
            "operationId": "lookUpEndContact",
            "parameters": {"phoneNumber": FIRST_SUCCESS},
            "description": "A number in success has its contact ended.",
        },
        "HistoryOfFirstSuccess": HISTORY_OF_FIRST_SUCCESS,
        "ResumeFirstSuccess": {
            "operationId": "resumeContact",
            "requestBody": {"phoneNumberList": [FIRST_SUCCESS]},
            "description": "Resume contact with a number just ended.",
        },
    },
)
RESUME_CONTACT = _change(
    "resumeContact",
    "Resume contact with up to 50 leads who reached out first",
    "The body and its rules are end-contact's. A success means the number is not "
    "ended now: it was resumed by this request (a `resumed` event), or was not ended "
    "(no event). Afterwards the lookup answers 404, the check, the list and the export "
    "leave the number out, and a later end-contact records a new `endedAt`.",
    {
        "HistoryOfFirstSuccess": HISTORY_OF_FIRST_SUCCESS,
        "EndFirstSuccessAgain": {
            "operationId": "endContact",
            "requestBody": {"phoneNumberList": [FIRST_SUCCESS]},
            "description": "End contact again: a new `endedAt`.",
        },
    },
)

FEED: dict[str, Any] = {
    "get": {
        "operationId": "endContactEvents",
        "tags": EVENTS,
        "summary": "The key's campaign's change feed: every event, oldest first",
        "description": "Follow it with `after` set to each page's `next`: that yields "
        "every event of the campaign exactly once, in order. With nothing new, "
        "`events` is empty and `next` equals `after`, so a client polls with it. "
        "Without `after`, from the oldest event kept. Events are kept "
        "ENDCONTACT_EVENTS_RETENTION_DAYS (30 by default); an `after` older than that "
        "is a 410: read the marks again (the list or the CSV export), then follow the "
        "feed without `after`.",
        "parameters": [
            {
                "name": "after",
                "in": "query",
                "required": False,
                "description": "An event id: the `next` of the previous page, or any "
                "event's `id`. The events after it. One later than every event of the "
                "feed and than the present (a made-up id) is a 400: the feed would hold "
                "nothing after it yet.",
                "schema": EVENT_ID,
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            },
        ],
        "responses": {
            "200": {
                "description": "At most `limit` events after `after`, oldest first.",
                "headers": RATE_HEADERS,
                "links": {
                    "NextEvents": {
                        "operationId": "endContactEvents",
                        "parameters": {"after": "$response.body#/next"},
                        "description": "The events that follow, or none yet: poll.",
                    },
                    "HistoryOfFirstEvent": {
                        "operationId": "endContactHistory",
                        "parameters": {"phoneNumber": "$response.body#/events/0/phoneNumber"},
                        "description": "Every change of the first event's number.",
                    },
                },
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["events", "next"],
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "maxItems": MAX_LIMIT,
                                    "items": EVENT_REF,
                                },
                                "next": {
                                    **EVENT_ID,
                                    "description": "The `after` of the next request: the "
                                    "last event's id, or with none the `after` given (where "
                                    "the kept feed starts, without one).",
                                },
                            },
                        }
                    }
                },
            },
            "400": _problem(
                "A bad limit, or an after that is no event id or is later than every "
                "event and than now.",
                RATE_HEADERS,
            ),
            "410": _problem(
                "Type /problems/cursor-expired: events after `after` are no longer kept. "
                "Read the marks again (list or export), then follow the feed without "
                "`after`.",
                RATE_HEADERS,
            ),
            **COMMON_ERRORS,
        },
    }
}

PHONE_PARAMETER = {
    "name": "phoneNumber",
    "in": "path",
    "required": True,
    "description": PHONE_FORMATS + " URL-encoded.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_INPUT_LENGTH},
    "examples": {
        "international": {"value": "+15095551234"},
        "national": {"value": "(509) 555-1234"},
    },
}

HISTORY: dict[str, Any] = {
    "get": {
        "operationId": "endContactHistory",
        "tags": EVENTS,
        "summary": "Every change of one number's mark for the key's campaign, oldest first",
        "description": "Empty for a number never changed. Kept as long as the number is "
        "ended, and at least as long as the feed keeps its events "
        "(ENDCONTACT_EVENTS_RETENTION_DAYS); a number ended before events existed has "
        "no history.",
        "parameters": [PHONE_PARAMETER],
        "responses": {
            "200": {
                "description": "The number in E.164 and its events.",
                "headers": RATE_HEADERS,
                "links": {
                    "EndThisNumber": {
                        "operationId": "endContact",
                        "requestBody": {"phoneNumberList": ["$response.body#/phoneNumber"]},
                        "description": "End contact with this number (no event if it is "
                        "ended already).",
                    },
                    "ResumeThisNumber": {
                        "operationId": "resumeContact",
                        "requestBody": {"phoneNumberList": ["$response.body#/phoneNumber"]},
                        "description": "Resume contact with this number (no event if it is "
                        "not ended).",
                    },
                },
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["phoneNumber", "events"],
                            "properties": {
                                "phoneNumber": E164,
                                "events": {"type": "array", "items": EVENT_REF},
                            },
                        }
                    }
                },
            },
            "400": _problem("Not a valid phone number.", RATE_HEADERS),
            **COMMON_ERRORS,
        },
    }
}

# The webhooks (api.webhooks). A path's `id` is any string: one not of this key's
# campaign, well-formed or not, is a 404.
WEBHOOK_ID = {"type": "string", "pattern": "^wh_[0-9a-f]{16}$", "example": "wh_3f9a1c0de2b47a65"}
WEBHOOK_EVENTS = {
    "type": "array",
    "minItems": 1,
    "maxItems": len(EVENT_TYPES),
    "uniqueItems": True,
    "items": {"type": "string", "enum": list(EVENT_TYPES)},
}
WEBHOOK_SECRET = {
    "type": "string",
    "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
    "description": "whsec_ and base64 of 32 random bytes, the Standard Webhooks format: "
    "give it as is to standardwebhooks' Webhook(secret). Shown only in this answer.",
}
WEBHOOK: dict[str, Any] = {
    "type": "object",
    "required": ["id", "url", "events", "createdBy", "createdAt"],
    "properties": {
        "id": WEBHOOK_ID,
        "url": {"type": "string", "maxLength": MAX_URL_LENGTH},
        "events": WEBHOOK_EVENTS,
        "createdBy": {
            **KEY_ID,
            "nullable": True,
            "description": "The public id of the key that created it (`endcontact keys "
            "list`); revoking that key disables it. null for a webhook created before "
            "the creating key was recorded.",
        },
        "createdAt": {"type": "string", "format": "date-time"},
        "disabledAt": {
            "type": "string",
            "format": "date-time",
            "description": "When its receiver answered 410 Gone, or the key that created "
            "it was revoked: nothing is sent to it since. Delete it and create it again "
            "to receive again.",
        },
    },
}
WEBHOOK_PATH_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A webhook's id, as its creation answered.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 100},
}
NOT_THIS_CAMPAIGNS = _problem(
    "No such webhook for this key's campaign (another campaign's is not found either).",
    RATE_HEADERS,
)
WEBHOOK_LINKS = {
    name: {
        "operationId": operation,
        "parameters": {"id": "$response.body#/id"},
        "description": description,
    }
    for name, operation, description in (
        ("DeleteWebhook", "deleteWebhook", "The webhook just made can be deleted."),
        ("RotateWebhookSecret", "rotateWebhookSecret", "Its secret can be rotated."),
        ("ListWebhookDeliveries", "listWebhookDeliveries", "Its attempts can be read."),
    )
}
DELIVERY: dict[str, Any] = {
    "type": "object",
    "description": "One attempt to deliver one event. `status` when the receiver "
    "answered (any code), else `error`: `timeout (<seconds> s)`, `connection refused`, "
    "`connection reset`, `connection failed (<errno name>)`, `TLS certificate refused`, "
    "`TLS failed`, `HTTP error (<what>)`, or `address refused: URL <why>` (its host no "
    "longer resolves, or not to public addresses only).",
    "required": ["eventId", "attempt", "at"],
    "properties": {
        "eventId": {"type": "string", "description": "The event's id: the feed's cursor."},
        "attempt": {"type": "integer", "minimum": 1},
        "at": {"type": "string", "format": "date-time"},
        "status": {"type": "integer"},
        "error": {"type": "string"},
        "durationMs": {"type": "number", "minimum": 0},
        "outcome": {
            "type": "string",
            "enum": ["delivered", "retry", "gave_up", "disabled"],
            "description": "What followed: delivered (a 2xx), retry (another attempt "
            "is scheduled), gave_up (the schedule is over), disabled (a 410).",
        },
    },
}

WEBHOOK_PATHS: dict[str, Any] = {
    "/api/v1/webhooks": {
        "post": {
            "operationId": "createWebhook",
            "tags": WEBHOOKS,
            "summary": "Send the key's campaign's changes to a URL, signed",
            "description": "Every change of the campaign (the events of the feed, "
            "`/api/v1/leads/end-contact/events`) of the types asked for is POSTed to "
            "`url`, signed per Standard Webhooks, and retried until delivered "
            "(docs/webhooks.md). The URL must be an absolute https:// URL with a host and no user "
            f"info, at most {MAX_URL_LENGTH} characters, whose host resolves (within "
            f"{RESOLVE_TIMEOUT:g} s) only to public addresses: not loopback, private, "
            "link-local, shared or otherwise non-public. ENDCONTACT_WEBHOOK_ALLOW_PRIVATE"
            "=true (development, tests) allows http:// and those addresses. At most "
            f"{MAX_PER_CAMPAIGN} webhooks per campaign. Other fields of the body are ignored.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["url"],
                            "properties": {
                                "url": {
                                    "type": "string",
                                    "maxLength": MAX_URL_LENGTH,
                                    "example": "https://example.com/hooks/end-contact",
                                },
                                "events": {
                                    **WEBHOOK_EVENTS,
                                    "default": list(EVENT_TYPES),
                                    "description": "Which changes to receive; both by default.",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": {
                    "description": "Created. The only answer that shows the secret.",
                    "headers": RATE_HEADERS,
                    "links": WEBHOOK_LINKS,
                    "content": {
                        "application/json": {
                            "schema": {
                                **WEBHOOK,
                                "required": [*WEBHOOK["required"], "secret"],
                                "properties": {**WEBHOOK["properties"], "secret": WEBHOOK_SECRET},
                            }
                        }
                    },
                },
                "400": _problem(
                    "Invalid body: errors point at /url (its rules, or a host that does not "
                    "resolve or resolves to a non-public address) and /events.",
                    RATE_HEADERS,
                ),
                "408": _problem("The body did not arrive in time.", RATE_HEADERS),
                "409": _problem(
                    f"The campaign already has {MAX_PER_CAMPAIGN} webhooks "
                    "(/problems/too-many-webhooks); delete one first.",
                    RATE_HEADERS,
                ),
                "413": _problem(
                    f"The body is larger than {WEBHOOK_MAX_BODY_BYTES} bytes.", RATE_HEADERS
                ),
                **COMMON_ERRORS,
            },
        },
        "get": {
            "operationId": "listWebhooks",
            "tags": WEBHOOKS,
            "summary": "The key's campaign's webhooks, oldest first; never a secret",
            "responses": {
                "200": {
                    "description": "Every webhook of the campaign.",
                    "headers": RATE_HEADERS,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["webhooks"],
                                "properties": {
                                    "webhooks": {
                                        "type": "array",
                                        "maxItems": MAX_PER_CAMPAIGN,
                                        "items": WEBHOOK,
                                    }
                                },
                            }
                        }
                    },
                },
                **COMMON_ERRORS,
            },
        },
    },
    "/api/v1/webhooks/{id}": {
        "delete": {
            "operationId": "deleteWebhook",
            "tags": WEBHOOKS,
            "summary": "Stop sending to a webhook; its pending deliveries are dropped",
            "parameters": [WEBHOOK_PATH_ID],
            "responses": {
                "204": {"description": "Deleted.", "headers": RATE_HEADERS},
                "404": NOT_THIS_CAMPAIGNS,
                **COMMON_ERRORS,
            },
        }
    },
    "/api/v1/webhooks/{id}/rotate-secret": {
        "post": {
            "operationId": "rotateWebhookSecret",
            "tags": WEBHOOKS,
            "summary": "A new secret; the previous one also signs for 24 hours",
            "description": "Until `previousSecretExpiresAt` every delivery carries two "
            "signatures, one per secret (space-separated in webhook-signature), so a "
            "receiver can switch secrets without missing one. Rotating again within the "
            "day drops the oldest secret at once.",
            "parameters": [WEBHOOK_PATH_ID],
            "responses": {
                "200": {
                    "description": "The new secret, shown only in this answer.",
                    "headers": RATE_HEADERS,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "secret", "previousSecretExpiresAt"],
                                "properties": {
                                    "id": WEBHOOK_ID,
                                    "secret": WEBHOOK_SECRET,
                                    "previousSecretExpiresAt": {
                                        "type": "string",
                                        "format": "date-time",
                                    },
                                },
                            }
                        }
                    },
                },
                "404": NOT_THIS_CAMPAIGNS,
                **COMMON_ERRORS,
            },
        }
    },
    "/api/v1/webhooks/{id}/deliveries": {
        "get": {
            "operationId": "listWebhookDeliveries",
            "tags": WEBHOOKS,
            "summary": "The webhook's latest delivery attempts, newest first",
            "description": f"The service keeps the latest {LOG_LENGTH} attempts of each "
            "webhook: what a receiver answered, or why no answer came, and how long it took.",
            "parameters": [
                WEBHOOK_PATH_ID,
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_DELIVERIES,
                        "default": DEFAULT_DELIVERIES,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "At most `limit` attempts.",
                    "headers": RATE_HEADERS,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["deliveries"],
                                "properties": {
                                    "deliveries": {
                                        "type": "array",
                                        "maxItems": MAX_DELIVERIES,
                                        "items": DELIVERY,
                                    }
                                },
                            }
                        }
                    },
                },
                "400": _problem("A bad limit.", RATE_HEADERS),
                "404": NOT_THIS_CAMPAIGNS,
                **COMMON_ERRORS,
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "endcontact",
        "version": "1.0.0",
        "description": "End contact with leads for a company's campaign. Not a do-not-call entry.",
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "description": "One entry per offending item.",
                        "items": {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {
                                "pointer": {"type": "string"},
                                "header": {"type": "string"},
                                "parameter": {"type": "string"},
                                "value": {
                                    "description": "The offending input, cut to "
                                    f"{MAX_ECHO} characters and an ellipsis when longer."
                                },
                                "reason": {"type": "string"},
                            },
                        },
                    },
                    "errorsOmitted": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Errors left out so that the body stays under 2 KB.",
                    },
                },
            },
            "Event": EVENT,
        },
    },
    "security": [{"apiKey": []}],
    "tags": TAGS,
    "paths": {
        "/api/v1/leads/end-contact": {
            "post": END_CONTACT,
            "get": LIST,
        },
        "/api/v1/leads/end-contact/check": CHECK,
        "/api/v1/leads/end-contact/events": FEED,
        "/api/v1/leads/end-contact/{phoneNumber}": {
            "get": {
                "operationId": "lookUpEndContact",
                "tags": READS,
                "summary": "When contact with a number was ended for the key's campaign",
                "parameters": [PHONE_PARAMETER],
                "responses": {
                    "200": {
                        "description": "Ended for this company and campaign.",
                        "headers": RATE_HEADERS,
                        "content": {"application/json": {"schema": MARK}},
                    },
                    "400": _problem("Not a valid phone number.", RATE_HEADERS),
                    "404": _problem(
                        "Not ended for this company and campaign: never ended, or resumed.",
                        RATE_HEADERS,
                    ),
                    **COMMON_ERRORS,
                },
            }
        },
        "/api/v1/leads/end-contact/{phoneNumber}/history": HISTORY,
        "/api/v1/leads/resume-contact": {"post": RESUME_CONTACT},
        **WEBHOOK_PATHS,
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": SERVICE,
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.0.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "tags": SERVICE,
                "security": [],
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Ready for traffic: store and broker answer, a worker is alive",
                "tags": SERVICE,
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready.",
                        "content": {"application/json": {"schema": READINESS}},
                    },
                    "503": {
                        "description": "The store or the broker does not answer within 1 s, "
                        "or no worker is alive.",
                        "content": {"application/json": {"schema": READINESS}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of the whole service",
                "tags": SERVICE,
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "503": _problem("Redis does not answer."),
                },
            }
        },
    },
}
