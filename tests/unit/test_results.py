"""Reading a task's result message (api.results.outcome): whatever arrives on a result
channel, an answer, never an exception that would stop the listener."""

from __future__ import annotations

import pytest

from api.results import outcome


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"status": "SUCCESS"}', True),
        ('{"status": "FAILURE"}', False),
        ('{"status": "REVOKED"}', False),
        ('{"status": "PENDING"}', None),
        (None, None),
        # Not ours to read: a failure of that task, not of the listener.
        ("not json", False),
        ("[1, 2]", False),
        ('"text"', False),
        ('{"status": {"nested": 1}}', False),
        ('{"status": ["SUCCESS"]}', False),
        ("[" * 100_000, False),
        ('{"a":' * 100_000, False),
        (b"\xff\xfe", False),
    ],
)
def test_any_result_message_has_an_outcome(raw: str | bytes | None, expected: bool | None) -> None:
    assert outcome(raw) is expected
