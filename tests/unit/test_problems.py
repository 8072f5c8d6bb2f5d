"""Problem details: what an error may echo of its input, and how much it may weigh."""

from __future__ import annotations

import json

import pytest

from api.problems import MAX_BODY_BYTES, Problem, cut, invalid


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", ""),
        ("x" * 64, "x" * 64),
        ("x" * 65, "x" * 64 + "…"),
        ("é" * 5000, "é" * 64 + "…"),
        (None, None),
        (12, 12),
        ([1, "a"], [1, "a"]),
        ({"a": 1}, {"a": 1}),
        (10**70, "1" + "0" * 63 + "…"),
        ({"a": "b" * 100}, '{"a": "' + "b" * 57 + "…"),
        (float("inf"), "(a value that cannot be shown)"),
        ([float("nan")], "(a value that cannot be shown)"),
    ],
)
def test_cut_keeps_short_values_and_the_start_of_long_ones(value: object, shown: object) -> None:
    assert cut(value) == shown


def test_a_value_nested_too_deeply_to_print_is_not_an_error() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert cut(deep) == "(a value that cannot be shown)"


def test_every_error_value_is_cut_where_the_problem_is_made() -> None:
    problem = invalid("bad", [{"header": "content-type", "value": "a" * 100, "reason": "r"}])
    assert problem.errors == [{"header": "content-type", "value": "a" * 64 + "…", "reason": "r"}]
    assert Problem(400, "no value", errors=[{"reason": "r"}]).errors == [{"reason": "r"}]


def test_a_body_with_too_many_errors_lists_what_fits_and_counts_the_rest() -> None:
    errors = [
        {"pointer": f"/phoneNumberList/{i}", "value": "\x00" * 200, "reason": "not a phone number"}
        for i in range(50)
    ]
    raw = invalid("50 entries of phoneNumberList must be fixed.", errors).body()
    assert len(raw) <= MAX_BODY_BYTES
    body = json.loads(raw)
    shown = body["errors"]
    assert 0 < len(shown) < 50
    assert body["errorsOmitted"] == 50 - len(shown)
    assert shown == [{**error, "value": "\x00" * 64 + "…"} for error in errors[: len(shown)]]


def test_a_small_body_is_whole_and_plain() -> None:
    problem = Problem(404, "Not here.", type="/problems/not-ended")
    assert json.loads(problem.body()) == {
        "type": "/problems/not-ended",
        "title": "Not Found",
        "status": 404,
        "detail": "Not here.",
    }
    response = problem.response()
    assert response.status_code == 404
    assert response.media_type == "application/problem+json"


def test_a_lone_surrogate_echoed_is_escaped_not_a_500() -> None:
    # A JSON body may send "\ud800": half a character, which UTF-8 cannot carry.
    problem = invalid("Fix it.", [{"pointer": "/phoneNumberList/0", "value": "5\ud800"}])
    body = problem.body()
    assert body.isascii()
    assert json.loads(body)["errors"][0]["value"] == "5\ud800"
    # Anything UTF-8 can carry stays as it came.
    assert "é" in invalid("Fix it.", [{"value": "é"}]).body().decode()


def test_a_lone_surrogate_is_echoed_as_its_json_escape() -> None:
    problem = invalid("bad", [{"pointer": "/a", "value": "x\ud800", "reason": "r"}])
    raw = problem.body()
    assert b"x\\ud800" in raw
    assert json.loads(raw.decode("utf-8"))["errors"][0]["value"] == "x\ud800"
