"""The service's OpenAPI document against the app's routes, and schemathesis against
the service with every check and every phase."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.generation.modes import GenerationMode
from starlette.routing import Route

from api.app import create_app
from shared.settings import Settings
from shared.store import Store
from tests.conftest import Caller, new_caller

URL = "/api/v1/leads/end-contact"
PHASES = ["examples", "coverage", "fuzzing", "stateful"]


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def test_document_describes_exactly_the_routes_the_app_serves(web: str, redis_url: str) -> None:
    document = httpx.get(f"{web}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    app = create_app(Settings.from_env({"REDIS_URL": redis_url}))
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds it to every GET
    }
    assert len(served) == 16
    assert _operations(document) == served

    post = document["paths"][URL]["post"]
    assert set(post["responses"]) >= {"201", "400", "401", "408", "413", "429", "503"}
    lookup = document["paths"][f"{URL}/{{phoneNumber}}"]["get"]
    assert set(lookup["responses"]) >= {"200", "400", "401", "404", "429", "503"}
    check = document["paths"][f"{URL}/check"]["post"]
    assert set(check["responses"]) >= {"200", "400", "401", "408", "413", "429", "503"}
    listing = document["paths"][URL]["get"]
    assert set(listing["responses"]) >= {"200", "400", "401", "429", "503"}
    assert set(listing["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    hooks = document["paths"]["/api/v1/webhooks"]
    assert set(hooks["post"]["responses"]) >= {"201", "400", "401", "409", "413", "429", "503"}
    assert set(hooks["get"]["responses"]) >= {"200", "401", "429", "503"}
    for path, method in [
        ("/api/v1/webhooks/{id}", "delete"),
        ("/api/v1/webhooks/{id}/rotate-secret", "post"),
        ("/api/v1/webhooks/{id}/deliveries", "get"),
    ]:
        assert set(document["paths"][path][method]["responses"]) >= {"401", "404", "429", "503"}
    operation_ids = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if "operationId" in operation
    }
    links = [
        link
        for item in document["paths"].values()
        for operation in item.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert links
    assert {link["operationId"] for link in links} <= operation_ids


def test_documented_phone_examples_are_accepted(web: str, caller: Caller) -> None:
    document = httpx.get(f"{web}/openapi.json").json()
    lookup = document["paths"][f"{URL}/{{phoneNumber}}"]["get"]
    (parameter,) = lookup["parameters"]
    examples = [example["value"] for example in parameter["examples"].values()]
    assert len(examples) >= 2
    with httpx.Client(base_url=web, headers=caller.headers, timeout=30) as http:
        for example in examples:
            # Never ended for this fresh key: a 404, not a 400.
            assert http.get(f"{URL}/{example}").status_code == 404, example
        schema = document["paths"][URL]["post"]["requestBody"]["content"]["application/json"]
        entry = schema["schema"]["properties"]["phoneNumberList"]["items"]["example"]
        answer = http.post(URL, json={"phoneNumberList": [entry]})
        assert answer.status_code == 201, answer.text


def _failures(stream: Iterable[events.EngineEvent]) -> list[str]:
    found = []
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        found.append(
                            f"{event.phase} {recorder.label} {check.name}: "
                            f"{check.failure_info.failure.title}\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"error: {event!r}")
        elif isinstance(event, events.EngineFinished):
            found.extend(str(failure) for failure in event.failures)
    return found


def test_schemathesis_finds_nothing_with_every_check_and_phase(web: str, store: Store) -> None:
    # `schemathesis run --checks all --mode all` (all phases by default), from Python.
    schema = schemathesis.openapi.from_url(f"{web}/openapi.json", config=SchemathesisConfig())
    config = schema.config
    config.update(headers=new_caller(store).headers, base_url=web)
    config.phases.update(phases=PHASES)
    # About 650 keyed requests in all (8 operations), around the session web's 600 per
    # key and minute: a 429, if the window fills, is documented and passes every check.
    config.generation.update(modes=list(GenerationMode), max_examples=50)
    # Every check but positive_data_acceptance: the document cannot state which
    # strings are valid phone numbers (phonenumbers' rules for area codes and lengths,
    # per country, national or international), so a schema-valid "0" is rightly a 400.
    config.checks.update(
        included_check_names=["all"], excluded_check_names=["positive_data_acceptance"]
    )
    # A body over 64 KiB is refused by its size before it is read (413): a rejection too.
    rejection = config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]

    stream = schemathesis.engine.from_schema(schema).execute()
    assert _failures(stream) == []
