"""The pure parts of webhooks: the record and what a client sees of it, the scripts'
keys."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from shared.apikeys import Scope
from shared.webhook_store import create_call, delete_call, disable_call, feed_end_keys
from shared.webhooks import (
    REVOKED,
    Cursor,
    from_record,
    key_webhooks_key,
    looks_like_id,
    new_webhook,
)

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


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


def test_creation_writes_the_keys_set_in_the_hooks_slot() -> None:
    hook = new_webhook(SCOPE, "https://example.com/", ("ended",), KEY_ID)
    keys, args = create_call(hook, Cursor("5-0", 7, FEED))
    assert keys[-1] == key_webhooks_key(FEED, KEY_ID) == f"ec:{{hooks}}:by-key:{FEED}:{KEY_ID}"
    assert args[2] == f"5-0 7 {FEED}"
    assert args[3] == REVOKED
    assert not looks_like_id(REVOKED)
    # Each script runs on one node of a Cluster: the cursor is read in the campaign's
    # slot, the webhook written in the {hooks} slot.
    assert _slots(keys) == _slots(["ec:{hooks}:due"])
    assert _slots(feed_end_keys(FEED)) == _slots([f"ec:ended:{{{FEED}}}"])
    assert _slots(delete_call(hook, FEED)[0]) == _slots(keys)


def test_a_new_webhook_needs_its_key() -> None:
    hook = new_webhook(SCOPE, "https://example.com/", ("ended",), KEY_ID)
    old = from_record({k: v for k, v in hook.record().items() if k != "created_by"})
    assert old is not None
    with pytest.raises(ValueError, match="key"):
        create_call(old, Cursor("0-0", 0, FEED))


def test_disabling_names_each_webhooks_record_and_retries() -> None:
    keys, args = disable_call(
        ["wh_0000000000000001", "wh_0000000000000002"], "2026-12-07T00:00:00.000Z"
    )
    assert keys == [
        "ec:{hooks}:cursors",
        "ec:{hooks}:due",
        "ec:{hooks}:webhook:wh_0000000000000001",
        "ec:{hooks}:due:wh_0000000000000001",
        "ec:{hooks}:webhook:wh_0000000000000002",
        "ec:{hooks}:due:wh_0000000000000002",
    ]
    assert args == ["2026-12-07T00:00:00.000Z", "wh_0000000000000001", "wh_0000000000000002"]


@pytest.mark.parametrize(
    ("webhook_id", "shaped"),
    [("wh_3f9a1c0de2b47a65", True), ("wh_3F9A1C0DE2B47A65", False), ("wh_", False), ("x", False)],
)
def test_ids(webhook_id: str, shaped: bool) -> None:
    assert looks_like_id(webhook_id) is shaped
