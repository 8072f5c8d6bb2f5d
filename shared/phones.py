"""Phone-number parsing, normalisation to E.164, and masking for logs."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

# phonenumbers itself refuses longer input; checking first keeps odd input cheap.
MAX_INPUT_LENGTH = 250


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number we accept; str() is the reason, fit for a client."""


def to_e164(text: str, region: str) -> str:
    """Parse `text` (national numbers read in `region`) into E.164, or raise."""
    # The bulk check endpoint parses 1000 numbers a request in its 15 ms. phonenumbers
    # takes 21-25 µs a number; the fast path about 1 µs for "(509) 555-1234" or
    # "+15095551234" (up to 2.3 µs for late Caribbean regions, 4.4 µs to refuse one).
    fast = _to_e164_fast(text, region)
    if fast is not None:
        return fast
    return _to_e164_slow(text, region)


def _to_e164_slow(text: str, region: str) -> str:
    """to_e164 by phonenumbers alone: the reference the fast path must agree with."""
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


def _to_e164_fast(text: str, region: str) -> str | None:
    """to_e164 for plainly written NANP numbers, or None: not one, ask phonenumbers.

    For text in _FAST_FORM, phonenumbers.parse yields country code 1 and the ten digits
    as national number: the text holds no letters, extension marks or non-ASCII
    characters, and the area code starts with 2-9, so neither the national prefix 1, an
    IDD (011) nor a leading zero is in play. Validity then depends on those ten digits
    alone, which _NANP_VALID decides as is_valid_number does.
    """
    form = _FAST_FORM.fullmatch(text)
    if form is None:
        return None
    plus, npa_in_parens, npa, nxx, line = form.groups()
    if plus is None and region not in _NATIONAL_FAST_REGIONS:
        return None
    national = (npa_in_parens or npa) + nxx + line
    if _NANP_VALID.match(national) is None:
        raise InvalidPhoneNumber(f"not a valid phone number (default region {region})")
    return "+1" + national


# ASCII only ([0-9], not \d): "+1" or nothing, then an area code 2-9XX, bare or in
# parentheses, then exchange and line, with at most one space, dash or dot between parts.
_FAST_FORM = re.compile(
    r"(\+1[ .-]?)?(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})[ .-]?)([0-9]{3})[ .-]?([0-9]{4})",
    re.ASCII,
)

# A national_prefix_for_parsing that cannot match ten digits starting 2-9: "1", or, as
# Caribbean regions have it, a seven-digit local number ending the text (e.g.
# "([457]\d{6})$|1"). A region whose metadata says anything else goes to phonenumbers.
_HARMLESS_NATIONAL_PREFIX = re.compile(r"(?:\((?:\[[0-9-]+\]|[0-9])\\d\{6\}\)\$\|)?1")


def _national_fast_regions() -> frozenset[str]:
    """Default regions in which parse reads ten digits starting 2-9 as +1 and those digits."""
    regions: set[str] = set()
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if (
            metadata is not None
            and metadata.country_code == 1
            and metadata.international_prefix == "011"
            and _HARMLESS_NATIONAL_PREFIX.fullmatch(metadata.national_prefix_for_parsing or "")
        ):
            regions.add(region)
    return frozenset(regions)


_NATIONAL_FAST_REGIONS = _national_fast_regions()

_NSN_LENGTH = 10


def _desc_pattern(desc: phonenumbers.PhoneNumberDesc | None) -> str | None:
    """The pattern a ten-digit number must fullmatch to match `desc`, as
    _is_number_matching_desc decides it; None when no ten-digit number can."""
    if desc is None:
        return None
    if desc.possible_length and _NSN_LENGTH not in desc.possible_length:
        return None
    if not desc.national_number_pattern:
        return None
    return f"(?:{desc.national_number_pattern})"


def _valid_for_region_pattern(metadata: PhoneMetadata) -> str | None:
    """A pattern matching exactly the ten-digit numbers for which _number_type_helper
    returns a type other than UNKNOWN; None when there are none."""
    general = _desc_pattern(metadata.general_desc)
    if general is None:
        return None
    descs = [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
        metadata.fixed_line,
    ]
    # _number_type_helper looks at mobile only when its pattern differs from fixed line.
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    types = [pattern for desc in descs if (pattern := _desc_pattern(desc)) is not None]
    if not types:
        return None
    return rf"(?={general}\Z)(?:{'|'.join(types)})\Z"


def _nanp_valid_pattern() -> str:
    """A pattern matching exactly the ten-digit national numbers that is_valid_number
    accepts with country code 1.

    is_valid_number asks region_code_for_number for the region, then that region's
    _number_type_helper. _region_code_for_number_from_list walks the regions in order
    and takes the first whose leading_digits prefix-match, or, for a region without
    leading_digits, the first for which the number is valid. So a number is valid when,
    for some region R, no earlier region's leading_digits match, R's leading_digits (if
    any) match, and the number is valid for R; an earlier region without leading_digits
    for which the number is valid makes it valid anyway.
    """
    regions = COUNTRY_CODE_TO_REGION_CODE[1]
    alternatives: list[str] = []
    earlier_leading: list[str] = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            continue
        # With one region, region_code_for_number takes it without looking at anything.
        leading = metadata.leading_digits if len(regions) > 1 else None
        valid = _valid_for_region_pattern(metadata)
        if valid is not None:
            not_earlier = "".join(f"(?!{pattern})" for pattern in earlier_leading)
            this = f"(?=(?:{leading}))" if leading is not None else ""
            alternatives.append(f"(?:{not_earlier}{this}{valid})")
        if leading is not None:
            earlier_leading.append(f"(?:{leading})")
    return "|".join(alternatives)


# Built from phonenumbers' own metadata at import, so a phonenumbers upgrade brings its
# new area codes with it.
_NANP_VALID = re.compile(_nanp_valid_pattern())


def mask(e164: str) -> str:
    """What logs may show of a number: enough to correlate, too little to dial."""
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:3] + "*" * (len(e164) - 5) + e164[-2:]
