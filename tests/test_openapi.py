"""The service's OpenAPI document against the app's routes, and schemathesis against
the service (a web process and a worker) with every check and every phase."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.generation.modes import GenerationMode
from starlette.routing import Route

from api.app import create_app
from shared.settings import Settings
from shared.store import Store
from tests.conftest import Caller, new_caller
from tests.helpers import TLS
from tests.processes import start_web, stop

URL = "/api/v1/leads/end-contact"
PHASES = ["examples", "coverage", "fuzzing", "stateful"]


def _resolved(document: dict[str, Any]) -> Any:
    """The document with every $ref replaced by what it names: as a reader of one
    operation sees it, whether a schema is written in place or in components."""
    schemas = document["components"]["schemas"]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return resolve(schemas[node["$ref"].removeprefix("#/components/schemas/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(document)


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def test_document_describes_exactly_the_routes_the_app_serves(
    client: httpx.Client, redis_url: str
) -> None:
    document = _resolved(client.get("/openapi.json").json())
    assert document["openapi"].startswith("3.")
    app = create_app(Settings.from_env({"REDIS_URL": redis_url}))
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route) and route.include_in_schema  # not /docs
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds it to every GET
    }
    assert len(served) == 16
    assert _operations(document) == served
    # Grouped on the docs page by what a reader comes for, none under "default": every
    # operation has one of the document's tags, and every tag is used and described.
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert len(tags) == len(document["tags"]) >= 4
    assert all(tags.values())
    used = [
        operation.get("tags") for item in document["paths"].values() for operation in item.values()
    ]
    assert [len(tagged or ()) for tagged in used] == [1] * len(served)
    assert {tagged[0] for tagged in used if tagged} == set(tags)

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
    resume = document["paths"]["/api/v1/leads/resume-contact"]["post"]
    assert set(resume["responses"]) >= {"201", "400", "401", "408", "413", "429", "503"}
    for change in (post, resume):
        body = change["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["reason"]["maxLength"] == 200
    feed = document["paths"][f"{URL}/events"]["get"]
    assert set(feed["responses"]) >= {"200", "400", "401", "410", "429", "503"}
    assert {parameter["name"] for parameter in feed["parameters"]} == {"after", "limit"}
    history = document["paths"][f"{URL}/{{phoneNumber}}/history"]["get"]
    assert set(history["responses"]) >= {"200", "400", "401", "429", "503"}
    event = document["components"]["schemas"]["Event"]
    assert set(event["properties"]) == {
        "id", "type", "phoneNumber", "at", "keyId", "requestId", "reason"
    }  # fmt: skip
    assert event["properties"]["type"]["enum"] == ["ended", "resumed"]
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
    document = _resolved(httpx.get(f"{web}/openapi.json", verify=TLS).json())
    lookup = document["paths"][f"{URL}/{{phoneNumber}}"]["get"]
    (parameter,) = lookup["parameters"]
    examples = [example["value"] for example in parameter["examples"].values()]
    assert len(examples) >= 2
    with httpx.Client(base_url=web, headers=caller.headers, timeout=30, verify=TLS) as http:
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


@pytest.fixture(scope="module")
def roomy_web(servers: dict[str, str], worker: None, logs: Path) -> Iterator[str]:
    """A web whose rate limit the run below does not reach: past the session web's 600
    a minute every answer would be a 429, and the stateful phase would follow no link."""
    base, process = start_web({**servers, "ENDCONTACT_RATE_LIMIT": "1000000"}, logs / "roomy.log")
    yield base
    stop(process)


def test_schemathesis_finds_nothing_with_every_check_and_phase(
    roomy_web: str, store: Store
) -> None:
    # `schemathesis run --checks all --mode all` (all phases by default), from Python.
    schema = schemathesis.openapi.from_url(f"{roomy_web}/openapi.json", config=SchemathesisConfig())
    config = schema.config
    config.update(headers=new_caller(store).headers, base_url=roomy_web)
    config.phases.update(phases=PHASES)
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

    seen: list[events.EngineEvent] = []
    stream = schemathesis.engine.from_schema(schema).execute()
    assert _failures(_kept(stream, seen)) == []
    # Every API operation, new ones included, was reached past the key and the body's
    # checks at least once: a run of 400s alone would say little.
    api = {
        f"{method} {path}"
        for path, method in _operations(schema.raw_schema)
        if path.startswith("/api/")
    }
    assert len(api) == 12
    answers = list(_answers(seen))
    reached = {label for label, status in answers if status < 300 or status == 404}
    # Creating a webhook needs a URL whose host resolves to a public address: none that
    # schemathesis makes up does here (no DNS), so each is a 400 at /url; the other
    # webhook operations are reached with ids that are not the campaign's (404).
    creating = "POST /api/v1/webhooks"
    assert api - reached == {creating}
    assert 400 in {status for label, status in answers if label == creating}


def _kept(
    stream: Iterable[events.EngineEvent], seen: list[events.EngineEvent]
) -> Iterator[events.EngineEvent]:
    for event in stream:
        seen.append(event)
        yield event


def _answers(seen: Iterable[events.EngineEvent]) -> Iterator[tuple[str, int]]:
    """Each request's operation and the status it got."""
    for event in seen:
        if isinstance(event, events.ScenarioFinished):
            for case_id, node in event.recorder.cases.items():
                interaction = event.recorder.interactions.get(case_id)
                if interaction is not None and interaction.response is not None:
                    yield node.value.operation.label, interaction.response.status_code
