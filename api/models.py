"""The API's request and response bodies, and its parameters, as types: the OpenAPI
document's schemas are generated from them (api/openapi/).

They describe; api/body.py and the handlers decide. A body is not decoded with its
model: a 400 names every fault at once in the API's own words, and decoding with
msgspec would save about 20 µs of a 50-number body's ~100 µs of validation (figures
in docs/design.md, from `python -m bench.validation`). tests/unit/test_models.py
holds the models to what the service accepts and writes. A struct's docstring is its
schema's description, so only those whose schema has one carry a docstring; limits
come from the constants the code enforces.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType

from api.body import CHECK_MAX_NUMBERS
from api.problems import MAX_ECHO
from api.reads import DEFAULT_LIMIT, MAX_LIMIT
from api.webhooks import DEFAULT_DELIVERIES, MAX_DELIVERIES
from shared.addresses import MAX_URL_LENGTH
from shared.deliveries import OUTCOMES
from shared.events import E164 as E164_PATTERN
from shared.events import MAX_NUMBERS, REASON_MAX
from shared.marks import MAX_CURSOR_LENGTH
from shared.phones import MAX_INPUT_LENGTH
from shared.webhooks import EVENT_TYPES, MAX_PER_CAMPAIGN


def one_of(values: Iterable[str], description: str | None = None) -> Meta:
    """A string from `values`, the constants the code uses (a Literal would write them
    a second time)."""
    return Meta(description=description, extra_json_schema={"type": "string", "enum": [*values]})


def limit(default: int, most: int) -> Meta:
    """A query's `limit`."""
    return Meta(ge=1, le=most, extra_json_schema={"default": default})


def numbers(most: int, description: str) -> Meta:
    """A change's or a check's numbers: 1 to `most`, unique by number (not merely by
    text, so `uniqueItems` states the weaker rule)."""
    return Meta(
        min_length=1,
        max_length=most,
        description=description,
        extra_json_schema={"uniqueItems": True},
    )


# When something happened, as the service writes it: UTC with its offset (Z).
Time = Annotated[datetime, Meta(tz=True)]
E164 = Annotated[str, Meta(pattern=f"^{E164_PATTERN.pattern}$", examples=["+15095551234"])]
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
PhoneInput = Annotated[
    str, Meta(max_length=MAX_INPUT_LENGTH, description=PHONE_FORMATS, examples=["(509) 555-1234"])
]
# The paths' phone number and webhook id: any string a URL can hold, read by the handler.
PhoneParameter = Annotated[str, Meta(min_length=1, max_length=MAX_INPUT_LENGTH)]
WebhookPathId = Annotated[str, Meta(min_length=1, max_length=100)]
Reason = Annotated[
    str,
    Meta(
        max_length=REASON_MAX,
        description="Why, in the caller's words: recorded with each event of the request "
        "(the feed and the history show it). Any other type, a longer string, or one with "
        "a lone surrogate (`\\ud800`), is a 400 with pointer `/reason`.",
        examples=["the lead asked by SMS"],
    ),
]
EventId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{1,20}-[0-9]{1,20}-[0-9]{1,6}$",
        description="Orders the campaign's feed and is its cursor: `after=<id>` continues "
        "after that event. Opaque to clients beyond that.",
        examples=["1764450000000-0-7"],
    ),
]
# An API key's public id (shared.apikeys.generate_id).
KeyId = Annotated[str, Meta(pattern="^key_[0-9a-f]{16}$")]
EventType = Annotated[str, one_of(EVENT_TYPES)]
Cursor = Annotated[str, Meta(min_length=1, max_length=MAX_CURSOR_LENGTH)]
PageLimit = Annotated[int, limit(DEFAULT_LIMIT, MAX_LIMIT)]
DeliveriesLimit = Annotated[int, limit(DEFAULT_DELIVERIES, MAX_DELIVERIES)]


class ChangeRequest(Struct, rename="camel"):
    phone_number_list: Annotated[
        list[PhoneInput],
        numbers(
            MAX_NUMBERS,
            "Valid phone numbers, unique by number; national ones are read in the default region.",
        ),
    ]
    reason: Reason | UnsetType = UNSET


class CheckRequest(Struct, rename="camel"):
    phone_number_list: Annotated[
        list[PhoneInput], numbers(CHECK_MAX_NUMBERS, "Valid phone numbers, unique by number.")
    ]


class ChangeResult(Struct):
    success: list[E164]
    failure: list[E164]


class Mark(Struct, rename="camel"):
    phone_number: E164
    ended_at: Annotated[
        Time,
        Meta(
            description="When it was ended: ending it again keeps this time; after a resume, "
            "a new end records a new one."
        ),
    ]


class CheckResult(Struct, rename="camel"):
    ended: list[Mark]
    not_ended: list[E164]


class MarkPage(Struct):
    items: Annotated[list[Mark], Meta(max_length=MAX_LIMIT)]
    next: str | None


class Event(Struct, rename="camel", kw_only=True):
    """One change of a number's mark. Only changes are events: ending an ended number,
    or resuming one that is not ended, adds none."""

    id: EventId
    type: EventType
    phone_number: E164
    at: Annotated[
        Time, Meta(description="When the change was made; for `ended`, the number's `endedAt`.")
    ]
    key_id: Annotated[
        KeyId,
        Meta(description="The public id of the key that asked for it (`endcontact keys list`)."),
    ]
    request_id: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=128,
            description="The request's `X-Request-ID`, as its answer echoed it: the "
            "client's own when it sent one of 1 to 128 printable ASCII characters "
            "without spaces, else one made for the request.",
        ),
    ]
    reason: (
        Annotated[Reason, Meta(description="The request's `reason`; absent when it gave none.")]
        | UnsetType
    ) = UNSET


class EventPage(Struct):
    events: Annotated[list[Event], Meta(max_length=MAX_LIMIT)]
    next: Annotated[
        EventId,
        Meta(
            description="The `after` of the next request: the last event's id, or with "
            "none the `after` given (where the kept feed starts, without one)."
        ),
    ]


class History(Struct, rename="camel"):
    phone_number: E164
    events: list[Event]


# The webhooks (api/webhooks.py).
WebhookId = Annotated[str, Meta(pattern="^wh_[0-9a-f]{16}$", examples=["wh_3f9a1c0de2b47a65"])]
WebhookEvents = Annotated[
    list[EventType],
    Meta(min_length=1, max_length=len(EVENT_TYPES), extra_json_schema={"uniqueItems": True}),
]
Secret = Annotated[
    str,
    Meta(
        pattern="^whsec_[A-Za-z0-9+/]+={0,2}$",
        description="whsec_ and base64 of 32 random bytes, the Standard Webhooks format: "
        "give it as is to standardwebhooks' Webhook(secret). Shown only in this answer.",
    ),
]


class WebhookRequest(Struct):
    url: Annotated[
        str, Meta(max_length=MAX_URL_LENGTH, examples=["https://example.com/hooks/end-contact"])
    ]
    events: (
        Annotated[
            WebhookEvents,
            Meta(
                description="Which changes to receive; both by default.",
                extra_json_schema={"default": [*EVENT_TYPES]},
            ),
        ]
        | UnsetType
    ) = UNSET


class Webhook(Struct, rename="camel", kw_only=True):
    id: WebhookId
    url: Annotated[str, Meta(max_length=MAX_URL_LENGTH)]
    events: WebhookEvents
    created_by: Annotated[
        KeyId | None,
        Meta(
            description="The public id of the key that created it (`endcontact keys "
            "list`); revoking that key disables it. null for a webhook created before "
            "the creating key was recorded."
        ),
    ]
    created_at: Time
    disabled_at: (
        Annotated[
            Time,
            Meta(
                description="When its receiver answered 410 Gone, or the key that created "
                "it was revoked: nothing is sent to it since. Delete it and create it again "
                "to receive again."
            ),
        ]
        | UnsetType
    ) = UNSET


class CreatedWebhook(Webhook, kw_only=True):
    secret: Secret


class WebhookList(Struct):
    webhooks: Annotated[list[Webhook], Meta(max_length=MAX_PER_CAMPAIGN)]


class RotatedSecret(Struct, rename="camel"):
    id: WebhookId
    secret: Secret
    previous_secret_expires_at: Time


class Delivery(Struct, rename="camel", kw_only=True):
    """One attempt to deliver one event. `status` when the receiver answered (any code),
    else `error`: `timeout (<seconds> s)`, `connection refused`, `connection reset`,
    `connection failed (<errno name>)`, `TLS certificate refused`, `TLS failed`, `HTTP
    error (<what>)`, or `address refused: URL <why>` (its host no longer resolves, or
    not to public addresses only)."""

    event_id: Annotated[str, Meta(description="The event's id: the feed's cursor.")]
    attempt: Annotated[int, Meta(ge=1)]
    at: Time
    status: int | UnsetType = UNSET
    error: str | UnsetType = UNSET
    duration_ms: Annotated[float, Meta(ge=0)] | UnsetType = UNSET
    outcome: (
        Annotated[
            str,
            one_of(
                OUTCOMES,
                "What followed: delivered (a 2xx), retry (another attempt is scheduled), "
                "gave_up (the schedule is over), disabled (a 410).",
            ),
        ]
        | UnsetType
    ) = UNSET


class DeliveryPage(Struct):
    deliveries: Annotated[list[Delivery], Meta(max_length=MAX_DELIVERIES)]


Up = Annotated[str, one_of(("ok", "down"))]


class Readiness(Struct, kw_only=True):
    status: Annotated[str, one_of(("ready", "unavailable"))]
    redis: Annotated[Up, Meta(description="The store.")]
    broker: Annotated[
        Up, Meta(description="The broker and result backend (the store's server by default).")
    ]
    workers: (
        Annotated[int, Meta(ge=0, description="Workers alive; absent when the broker is down.")]
        | UnsetType
    ) = UNSET


class ProblemError(Struct, kw_only=True):
    pointer: str | UnsetType = UNSET
    header: str | UnsetType = UNSET
    parameter: str | UnsetType = UNSET
    value: (
        Annotated[
            Any,
            Meta(
                description=f"The offending input, cut to {MAX_ECHO} characters and an "
                "ellipsis when longer."
            ),
        ]
        | UnsetType
    ) = UNSET
    reason: str


class Problem(Struct, rename="camel", kw_only=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: (
        Annotated[list[ProblemError], Meta(description="One entry per offending item.")] | UnsetType
    ) = UNSET
    errors_omitted: (
        Annotated[
            int,
            Meta(ge=1, description="Errors left out so that the body stays under 2 KB."),
        ]
        | UnsetType
    ) = UNSET
