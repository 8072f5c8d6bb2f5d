"""The service's OpenAPI document, and schemathesis against it: no server errors and
no response that breaks the document."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.store import Store
from tests.conftest import new_caller

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_document_describes_every_endpoint(web: str) -> None:
    document = httpx.get(f"{web}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    post = document["paths"]["/api/v1/leads/end-contact"]["post"]
    assert set(post["responses"]) >= {"201", "400", "401", "413", "429", "503"}
    lookup = document["paths"]["/api/v1/leads/end-contact/{phoneNumber}"]["get"]
    assert set(lookup["responses"]) >= {"200", "400", "401", "404"}
    assert set(document["paths"]) == {
        "/api/v1/leads/end-contact",
        "/api/v1/leads/end-contact/{phoneNumber}",
        "/healthz",
        "/readyz",
        "/metrics",
    }


def test_api_conforms(web: str, store: Store) -> None:
    # Driven by hand, not by schemathesis' pytest plugin, which does not run on
    # this pytest: each operation's cases come from its Hypothesis strategy.
    caller = new_caller(store)
    api = schemathesis.openapi.from_url(f"{web}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 5

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=caller.headers, checks=CHECKS)

        conforms()
