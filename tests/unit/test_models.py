"""The API's models (api/models.py) against the code: a body's shape is refused by a
model exactly when the service refuses it, what the service writes is what the models
say, and the document built from them refers to nothing it lacks."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from api import models
from api.body import CHECK_MAX_NUMBERS, change_request, phone_numbers
from api.openapi import DOCUMENT
from api.openapi.parts import openapi_30
from api.problems import Problem, invalid
from bench.validation import measure
from shared.apikeys import Scope, generate_id
from shared.deliveries import GAVE_UP, Attempt, log_entry
from shared.events import MAX_NUMBERS, REASON_MAX, Event, EventId
from shared.webhooks import EVENT_TYPES, Webhook, new_id, new_secret

NUMBERS = [f"(509) 555-{n:04d}" for n in range(CHECK_MAX_NUMBERS + 1)]


def _raw(**body: Any) -> bytes:
    return json.dumps(body).encode()


def _accepted_by_model(raw: bytes, model: type[msgspec.Struct]) -> bool:
    try:
        msgspec.json.decode(raw, type=model)
    except msgspec.ValidationError:
        return False
    return True


def _status(call: Any, *args: Any) -> int:
    """What the service answers a body with, as far as its reading goes."""
    try:
        call(*args)
    except Problem as problem:
        return problem.status
    return 201


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        (_raw(phoneNumberList=NUMBERS[:1]), True),
        (_raw(phoneNumberList=NUMBERS[:MAX_NUMBERS]), True),
        (_raw(phoneNumberList=NUMBERS[: MAX_NUMBERS + 1]), False),
        (_raw(phoneNumberList=[]), False),
        (_raw(phoneNumberList=NUMBERS[:1], reason="r" * REASON_MAX), True),
        (_raw(phoneNumberList=NUMBERS[:1], reason="r" * (REASON_MAX + 1)), False),
        (_raw(phoneNumberList=NUMBERS[:1], reason=None), False),
        (_raw(phoneNumberList=NUMBERS[:1], reason=7), False),
        (_raw(phoneNumberList=NUMBERS[:1], other={"any": ["thing"]}), True),
        (_raw(phoneNumberList=NUMBERS[0]), False),
        (_raw(phoneNumberList=[NUMBERS[0], 5095551234]), False),
        (_raw(phoneNumberList=["+1 509 555 0000" + " " * 250]), False),
        (_raw(reason="no numbers"), False),
    ],
)
def test_a_change_body_is_refused_by_its_model_when_the_service_refuses_it(
    raw: bytes, accepted: bool
) -> None:
    # Valid, distinct numbers: what is left to refuse is the shape the model states.
    assert _status(change_request, raw, "US") == (201 if accepted else 400)
    assert _accepted_by_model(raw, models.ChangeRequest) is accepted


@pytest.mark.parametrize("count", [0, 1, CHECK_MAX_NUMBERS, CHECK_MAX_NUMBERS + 1])
def test_a_check_body_holds_as_many_numbers_as_the_service_reads(count: int) -> None:
    raw = _raw(phoneNumberList=NUMBERS[:count])
    accepted = 1 <= count <= CHECK_MAX_NUMBERS
    assert _status(phone_numbers, raw, "US", CHECK_MAX_NUMBERS) == (201 if accepted else 400)
    assert _accepted_by_model(raw, models.CheckRequest) is accepted


def _as(model: type[msgspec.Struct], body: object) -> msgspec.Struct:
    """`body` as a client reads it, decoded with the model: its rules hold."""
    return msgspec.json.decode(json.dumps(body), type=model)


def test_events_are_written_as_the_model_says() -> None:
    event = Event(
        EventId.parse("1764450000000-0-7"), "ended", "+15095551234", generate_id(), "r1", None
    )
    assert isinstance(_as(models.Event, event.to_json()), models.Event)
    with_reason = Event(event.id, "resumed", event.phone, event.key_id, "r" * 128, "asked")
    decoded = _as(models.EventPage, {"events": [with_reason.to_json()], "next": str(event.id)})
    assert isinstance(decoded, models.EventPage)
    assert decoded.events[0].reason == "asked"
    with pytest.raises(msgspec.ValidationError, match="requestId"):
        _as(models.Event, {**event.to_json(), "requestId": "r" * 129})


def test_webhooks_are_written_as_the_models_say() -> None:
    webhook = Webhook(
        new_id(),
        Scope("acme", "spring"),
        "https://example.com/h",
        EVENT_TYPES,
        new_secret(),
        "2026-11-28T22:34:14.123Z",
        None,
    )
    assert isinstance(
        _as(models.WebhookList, {"webhooks": [webhook.to_json()]}), models.WebhookList
    )
    created = {**webhook.to_json(), "createdBy": generate_id(), "secret": webhook.secret}
    assert isinstance(_as(models.CreatedWebhook, created), models.CreatedWebhook)
    with pytest.raises(msgspec.ValidationError, match="secret"):
        _as(models.CreatedWebhook, {**created, "secret": "not whsec_"})
    entry = log_entry(
        "1764450000000-0-7", 3, 1764450000000, Attempt(None, "timeout (5 s)", 5001), GAVE_UP
    )
    assert isinstance(
        _as(models.DeliveryPage, {"deliveries": [json.loads(entry)]}), models.DeliveryPage
    )


def test_problems_are_written_as_the_model_says() -> None:
    errors = [
        {"pointer": f"/phoneNumberList/{n}", "value": "x" * 100, "reason": "bad"} for n in range(50)
    ]
    body = msgspec.json.decode(invalid("Fix it.", errors).body(), type=models.Problem)
    assert body.errors
    assert body.errors_omitted
    assert len(body.errors) + body.errors_omitted == 50


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def test_the_document_refers_to_every_schema_it_holds_and_to_none_it_lacks() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert _refs(DOCUMENT) == {f"#/components/schemas/{name}" for name in schemas}
    change = schemas["ChangeRequest"]["properties"]
    assert change["phoneNumberList"]["maxItems"] == MAX_NUMBERS
    assert change["reason"]["maxLength"] == REASON_MAX
    assert schemas["CheckRequest"]["properties"]["phoneNumberList"]["maxItems"] == CHECK_MAX_NUMBERS


def test_schemas_are_written_in_openapi_30s_words() -> None:
    created_by = DOCUMENT["components"]["schemas"]["Webhook"]["properties"]["createdBy"]
    assert created_by.items() >= {"type": "string", "nullable": True}.items()
    assert "anyOf" not in created_by
    assert openapi_30({"title": "T", "examples": ["a", "b"], "description": "two\n    lines"}) == {
        "example": "a",
        "description": "two lines",
    }


def test_the_validation_benchmark_runs() -> None:
    table = measure(iterations=1, rounds=1)
    assert set(table) == {"national", "international"}
    assert all(microseconds > 0 for row in table.values() for microseconds in row.values())
