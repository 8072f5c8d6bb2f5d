from __future__ import annotations

import pytest

from shared.phones import InvalidPhoneNumber, mask, to_e164


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("(509) 555-1234", "+15095551234"),
        ("+1 509-555-1234", "+15095551234"),
        ("509.555.1234", "+15095551234"),
        ("1 (509) 555 1234", "+15095551234"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_accepted_forms(text: str, e164: str) -> None:
    assert to_e164(text, "US") == e164


def test_default_region_reads_national_numbers() -> None:
    assert to_e164("020 7946 0958", "GB") == "+442079460958"


@pytest.mark.parametrize(
    "text",
    ["", "555-1234", "(555) 555-1234", "hello", "+1 509 555 1234 ext 12", "1" * 300, "+999 1"],
)
def test_rejected(text: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        to_e164(text, "US")


def test_mask_hides_the_middle() -> None:
    assert mask("+15095551234") == "+15*******34"
    assert "5095551" not in mask("+15095551234")
