"""Phone-number parsing, normalisation to E.164, and masking for logs."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

# phonenumbers itself refuses longer input; checking first keeps odd input cheap.
MAX_INPUT_LENGTH = 250


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number we accept; str() is the reason, fit for a client."""


def to_e164(text: str, region: str) -> str:
    """Parse `text` (national numbers read in `region`) into E.164, or raise."""
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidPhoneNumber(f"longer than {MAX_INPUT_LENGTH} characters")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        raise InvalidPhoneNumber("not a phone number") from None
    if number.extension:
        raise InvalidPhoneNumber("extensions are not accepted")
    # Valid, not merely possible: "(555) 555-1234" has the right length but no such
    # area code, and a lead can't be reached at a number that does not exist.
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(f"not a valid phone number (default region {region})")
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def mask(e164: str) -> str:
    """What logs may show of a number: enough to correlate, too little to dial."""
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:3] + "*" * (len(e164) - 5) + e164[-2:]
