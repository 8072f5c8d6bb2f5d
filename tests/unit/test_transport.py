"""worker.celery_seam.transport, in process: which queue entries are kombu's envelope
of a message, and the Celery settings that put the transport under each kind of broker
URL."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from kombu.transport import get_transport_cls

from api.publisher import TaskPublisher
from shared.logs import JsonFormatter
from worker.celery_seam import envelope, register_transport

# The number an entry carries: it must not show in the log line.
HIDDEN = "+15095559876"


def message() -> dict[str, Any]:
    """A task message as the web puts it on the queue."""
    publisher = TaskPublisher(None)  # type: ignore[arg-type]  # builds, never sends
    args = ["company", "campaign", HIDDEN, "key_x", "request-x", ""]
    expires = datetime.now(UTC) + timedelta(minutes=5)
    made: dict[str, Any] = json.loads(publisher.message("task-1", args, "['+1']", expires))
    return made


def changed(**parts: Any) -> str:
    """message() with `parts` set (or removed, when None), properties' by 'p_' names."""
    made = message()
    for name, value in parts.items():
        where, key = (made["properties"], name[2:]) if name.startswith("p_") else (made, name)
        if value is None:
            del where[key]
        else:
            where[key] = value
    return json.dumps(made)


def test_a_message_is_an_envelope(caplog: pytest.LogCaptureFixture) -> None:
    raw = json.dumps(message()).encode()
    assert envelope(raw) == json.loads(raw)
    assert caplog.records == []


def test_a_body_left_as_it_is_is_an_envelope() -> None:
    for encoding in (None, "utf-8", "UTF-8"):
        raw = changed(body=HIDDEN, p_body_encoding=encoding).encode()
        assert envelope(raw) == json.loads(raw)


NOT_ENVELOPES = {
    "not JSON": f"not json {HIDDEN}",
    "not UTF-8": HIDDEN.encode() + b"\xff",
    "a JSON array": json.dumps([HIDDEN]),
    "a number": HIDDEN[2:],
    "a string": json.dumps(HIDDEN),
    "null": "null",
    # kombu's JSON decodes tagged objects: its error quotes the value.
    "a bad tagged value": json.dumps({"__type__": "datetime", "__value__": HIDDEN}),
    "no properties": changed(properties=None),
    "properties not an object": changed(properties=[HIDDEN]),
    "no headers": changed(headers=None),
    "headers not an object": changed(headers=[HIDDEN]),
    "no body": changed(body=None),
    "a body not a string": changed(body=int(HIDDEN[2:])),
    "no delivery tag": changed(p_delivery_tag=None),
    "a delivery tag not a string": changed(p_delivery_tag=[HIDDEN]),
    "no delivery info": changed(p_delivery_info=None),
    "a body not base64": changed(body="x" + HIDDEN),
    "an encoding kombu has not": changed(p_body_encoding="rot13"),
    "an encoding not a string": changed(p_body_encoding=64),
}


@pytest.mark.parametrize("entry", NOT_ENVELOPES.values(), ids=NOT_ENVELOPES.keys())
def test_what_is_no_envelope_is_logged_without_its_content(
    entry: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    raw = entry if isinstance(entry, bytes) else entry.encode()
    with caplog.at_level(logging.ERROR, logger="worker.transport"):
        assert envelope(raw) is None
    (record,) = caplog.records
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR"
    assert line["length"] == len(raw)
    assert line["error"] in ("NotAnEnvelope", "JSONDecodeError", "ValueError")
    assert HIDDEN[2:] not in JsonFormatter().format(record)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw@broker:6379/0",
        "rediss://:pw@broker:6380/0",
        "rediss://:pw@broker:6380/0?ssl_cert_reqs=required",
        "sentinel://:pw@s1:26379/0;sentinel://:pw@s2:26379/0",
    ],
)
def test_the_transport_is_ours_under_kombus_name_for_the_url(url: str) -> None:
    # As Celery makes the broker connection (no server is asked).
    register_transport()
    app = Celery(set_as_current=False)
    app.conf.update(broker_url=url)
    with app.connection_for_read() as connection:
        ours = get_transport_cls(connection.transport_cls)
        assert ours is not None
        assert ours.__module__ == "worker.celery_seam.transport"
        # Named by its scheme, as kombu names its own: in logs and in kombu's TLS rule.
        assert connection.as_uri().startswith(url.partition("://")[0] + "://")
        assert bool(connection.ssl) == url.startswith("rediss://")


def test_a_scheme_without_a_redis_transport_is_left_to_kombu() -> None:
    register_transport()
    assert get_transport_cls("memory").__module__ == "kombu.transport.memory"
