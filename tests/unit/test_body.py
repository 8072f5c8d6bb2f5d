"""Reading an end-contact body: its content type, its JSON and its numbers."""

from __future__ import annotations

import json

import pytest

from api.body import _decode, change_request, check_content_type, phone_numbers
from api.problems import MAX_BODY_BYTES, Problem


def _problem(call: object, *args: object) -> dict[str, object]:
    assert callable(call)
    with pytest.raises(Problem) as raised:
        call(*args)
    assert raised.value.status == 400
    body: dict[str, object] = json.loads(raised.value.body())
    assert len(raised.value.body()) <= MAX_BODY_BYTES
    return body


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
        " application/json ; foo=bar",
    ],
)
def test_json_content_types_are_accepted(value: str) -> None:
    check_content_type(value)


@pytest.mark.parametrize(
    "value", [None, "", "text/plain", "application/json; charset=latin-1", "application/jsonx"]
)
def test_other_content_types_are_refused(value: str | None) -> None:
    body = _problem(check_content_type, value)
    assert body["errors"] == [
        {"header": "content-type", "value": value, "reason": "must be application/json"}
    ]


def test_a_long_content_type_is_echoed_cut() -> None:
    value = "text/" + "x" * 10_000
    body = _problem(check_content_type, value)
    assert body["errors"] == [
        {"header": "content-type", "value": value[:64] + "…", "reason": "must be application/json"}
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff{}", "invalid UTF-8 at byte 0"),
        (b"{", "Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "a number is too long"),
    ],
)
def test_undecodable_bodies_are_400s(raw: bytes, reason: str) -> None:
    assert _problem(_decode, raw)["errors"] == [{"pointer": "", "reason": reason}]


def test_numbers_come_back_in_e164_in_request_order() -> None:
    raw = json.dumps({"phoneNumberList": ["+1 212 555 0199", "(509) 555-1234"], "x": 1})
    assert phone_numbers(raw.encode(), "US") == ["+12125550199", "+15095551234"]


@pytest.mark.parametrize(
    ("document", "errors"),
    [
        ([], [{"pointer": "", "reason": "must be a JSON object with a phoneNumberList"}]),
        ({}, [{"pointer": "/phoneNumberList", "reason": "required"}]),
        (
            {"phoneNumberList": "5095551234"},
            [
                {
                    "pointer": "/phoneNumberList",
                    "value": "5095551234",
                    "reason": "must be an array of strings",
                }
            ],
        ),
        (
            {"phoneNumberList": []},
            [{"pointer": "/phoneNumberList", "reason": "must hold 1 to 50 entries"}],
        ),
        (
            {"phoneNumberList": [1e999, {"a": "b" * 100}, "(509) 555-1234", "509-555-1234"]},
            [
                {
                    "pointer": "/phoneNumberList/0",
                    "value": "(a value that cannot be shown)",
                    "reason": "must be a string",
                },
                {
                    "pointer": "/phoneNumberList/1",
                    "value": '{"a": "' + "b" * 57 + "…",
                    "reason": "must be a string",
                },
                {
                    "pointer": "/phoneNumberList/3",
                    "value": "509-555-1234",
                    "reason": "duplicate of /phoneNumberList/2 (+15095551234)",
                },
            ],
        ),
    ],
)
def test_bad_documents_list_every_fault(document: object, errors: list[object]) -> None:
    raw = json.dumps(document).encode()
    assert _problem(phone_numbers, raw, "US")["errors"] == errors


def test_a_huge_non_string_entry_is_echoed_cut() -> None:
    nested = {"phoneNumberList": [{"k": ["v" * 1000] * 50}] * 50}
    body = _problem(phone_numbers, json.dumps(nested).encode(), "US")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors[0]["value"] == '{"k": ["' + "v" * 56 + "…"
    assert body["errorsOmitted"] == 50 - len(errors)


def test_a_reason_with_a_lone_surrogate_is_refused_at_its_pointer() -> None:
    raw = b'{"phoneNumberList": ["(509) 555-0100"], "reason": "a\\ud800"}'
    errors = _problem(change_request, raw, "US")["errors"]
    assert isinstance(errors, list)
    (error,) = errors
    assert error["pointer"] == "/reason"
    assert error["value"] == "a\ud800"
    # A whole pair is one character, and fine.
    raw = b'{"phoneNumberList": ["(509) 555-0100"], "reason": "\\ud83d\\ude00"}'
    assert change_request(raw, "US") == (["+15095550100"], "\U0001f600")
