"""The pure parts of webhooks: the record and what a client sees of it, the scripts'
keys."""

from __future__ import annotations

import pytest

from shared.apikeys import Scope
from shared.webhook_store import create_call, disable_call
from shared.webhooks import REVOKED, from_record, key_webhooks_key, looks_like_id, new_webhook

SCOPE = Scope("Acme: Inc", "spring")
FEED = "Acme%3A%20Inc:spring"
KEY_ID = "key_0123abcd4567ef89"


def test_the_creating_key_is_kept_and_shown() -> None:
    hook = new_webhook(SCOPE, "https://example.com/", ("ended",), KEY_ID)
    again = from_record(hook.record())
    assert again == hook
    assert again.to_json()["createdBy"] == KEY_ID
    assert list(again.to_json()) == ["id", "url", "events", "createdBy", "createdAt"]


def test_a_webhook_stored_before_keys_were_recorded_shows_null() -> None:
    record = new_webhook(SCOPE, "https://example.com/", ("ended",), KEY_ID).record()
    del record["created_by"]
    old = from_record(record)
    assert old is not None
    assert old.created_by is None
    assert old.to_json()["createdBy"] is None


def test_creation_writes_the_keys_set_named_after_its_campaign() -> None:
    hook = new_webhook(SCOPE, "https://example.com/", ("ended",), KEY_ID)
    keys, args = create_call(hook, FEED)
    assert keys[-1] == key_webhooks_key(FEED, KEY_ID) == f"ec:webhooks-by-key:{FEED}:{KEY_ID}"
    assert args[3] == REVOKED
    assert not looks_like_id(REVOKED)


def test_a_new_webhook_needs_its_key() -> None:
    hook = new_webhook(SCOPE, "https://example.com/", ("ended",), KEY_ID)
    old = from_record({k: v for k, v in hook.record().items() if k != "created_by"})
    assert old is not None
    with pytest.raises(ValueError, match="key"):
        create_call(old, FEED)


def test_disabling_names_each_webhooks_record_and_retries() -> None:
    keys, args = disable_call(
        ["wh_0000000000000001", "wh_0000000000000002"], "2026-12-07T00:00:00.000Z"
    )
    assert keys == [
        "ec:webhook-cursors",
        "ec:deliveries:due",
        "ec:webhook:wh_0000000000000001",
        "ec:deliveries:due:wh_0000000000000001",
        "ec:webhook:wh_0000000000000002",
        "ec:deliveries:due:wh_0000000000000002",
    ]
    assert args == ["2026-12-07T00:00:00.000Z", "wh_0000000000000001", "wh_0000000000000002"]


@pytest.mark.parametrize(
    ("webhook_id", "shaped"),
    [("wh_3f9a1c0de2b47a65", True), ("wh_3F9A1C0DE2B47A65", False), ("wh_", False), ("x", False)],
)
def test_ids(webhook_id: str, shaped: bool) -> None:
    assert looks_like_id(webhook_id) is shaped
