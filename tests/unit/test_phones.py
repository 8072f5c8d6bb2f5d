"""shared.phones, in process: what is accepted, how it is written, what logs see."""

from __future__ import annotations

import pytest

from shared.phones import MAX_INPUT_LENGTH, InvalidPhoneNumber, mask, to_e164


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("(509) 555-1234", "+15095551234"),
        ("+1 509-555-1234", "+15095551234"),
        ("509.555.1234", "+15095551234"),
        ("1 (509) 555 1234", "+15095551234"),
        ("+44 20 7946 0958", "+442079460958"),
        ("(509)\u00a0555-1234", "+15095551234"),  # a no-break space, as pasted
        ("\u0665\u0660\u0669\u0665\u0665\u0665\u0661\u0662\u0663\u0664", "+15095551234"),
    ],
)
def test_accepted_forms(text: str, e164: str) -> None:
    assert to_e164(text, "US") == e164


def test_default_region_reads_national_numbers() -> None:
    assert to_e164("020 7946 0958", "GB") == "+442079460958"
    # The same digits read in the US are no number at all.
    with pytest.raises(InvalidPhoneNumber, match=r"default region US"):
        to_e164("020 7946 0958", "US")


def test_an_e164_number_reads_the_same_in_any_region() -> None:
    assert {to_e164("+15095551234", region) for region in ("US", "GB", "FR")} == {"+15095551234"}


@pytest.mark.parametrize(
    "text",
    ["", "555-1234", "(555) 555-1234", "hello", "+1 509 555 1234 ext 12", "1" * 300, "+999 1"],
)
def test_rejected(text: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        to_e164(text, "US")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("(509) 555-1234 ext. 7", "extensions are not accepted"),
        ("call me maybe", "not a phone number"),
        ("(555) 555-1234", "not a valid phone number (default region US)"),
        ("1" * (MAX_INPUT_LENGTH + 1), f"longer than {MAX_INPUT_LENGTH} characters"),
    ],
)
def test_the_reason_is_fit_for_a_client(text: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as raised:
        to_e164(text, "US")
    assert str(raised.value) == reason
    # The client's own text is not repeated back in the reason.
    assert text not in str(raised.value)


def test_mask_hides_the_middle() -> None:
    assert mask("+15095551234") == "+15*******34"
    assert "5095551" not in mask("+15095551234")


@pytest.mark.parametrize("e164", ["+15095551234", "+442079460958", "+4930123456"])
def test_mask_keeps_the_length_and_too_few_digits_to_dial(e164: str) -> None:
    masked = mask(e164)
    assert len(masked) == len(e164)
    assert sum(char.isdigit() for char in masked) == 4


@pytest.mark.parametrize("short", ["", "+1", "+12345"])
def test_mask_of_a_short_text_shows_nothing(short: str) -> None:
    assert mask(short) == "*" * len(short)
