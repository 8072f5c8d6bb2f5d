"""shared.phones, in process: what is accepted, how it is written, what logs see."""

from __future__ import annotations

import random
from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from shared.phones import (
    _NATIONAL_FAST_REGIONS,
    MAX_INPUT_LENGTH,
    InvalidPhoneNumber,
    _to_e164_fast,
    _to_e164_slow,
    mask,
    to_e164,
)


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


# The fast path against phonenumbers (_to_e164_slow): the same E.164 or the same reason.

NANP_REGIONS = sorted(phonenumbers.phonenumberutil.COUNTRY_CODE_TO_REGION_CODE[1])
# National numbers read in these go to phonenumbers; "+1" ones still take the fast path.
OTHER_REGIONS = ["GB", "FR", "DE", "us", "XX"]
NATIONAL_FORMS = [
    "({a}) {b}-{c}",
    "({a}){b}-{c}",
    "({a}){b}{c}",
    "{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "{a} {b} {c}",
    "{a}{b}{c}",
    "{a}{b}-{c}",
]
PLUS_FORMS = [
    "+1{a}{b}{c}",
    "+1 {a}-{b}-{c}",
    "+1 ({a}) {b}-{c}",
    "+1({a}){b}{c}",
    "+1-{a}-{b}-{c}",
    "+1.{a}.{b}.{c}",
    "+1 {a} {b} {c}",
]
Convert = Callable[[str, str], str | None]


def outcome(convert: Convert, text: str, region: str) -> str | None:
    """What `convert` answers: the E.164, the reason it refused, or None (no answer)."""
    try:
        return convert(text, region)
    except InvalidPhoneNumber as exc:
        return f"refused: {exc}"


def takes_fast_path(form: str, area: str, region: str) -> bool:
    """Whether the fast path should answer: a plain form, an area code 2-9XX, and "+1" or
    a NANP default region."""
    return area[0] not in "01" and (form.startswith("+") or region in NANP_REGIONS)


def test_every_nanp_region_reads_national_numbers_fast() -> None:
    # A metadata change that made a region unsafe would drop it here, not fail silently.
    assert set(NANP_REGIONS) == _NATIONAL_FAST_REGIONS


@given(
    form=st.sampled_from(NATIONAL_FORMS + PLUS_FORMS),
    area=st.integers(0, 999).map(lambda n: f"{n:03d}"),
    exchange=st.integers(0, 999).map(lambda n: f"{n:03d}"),
    line=st.integers(0, 9999).map(lambda n: f"{n:04d}"),
    region=st.sampled_from(NANP_REGIONS + OTHER_REGIONS),
)
@settings(max_examples=300, deadline=None)
def test_fast_path_agrees_with_phonenumbers(
    form: str, area: str, exchange: str, line: str, region: str
) -> None:
    text = form.format(a=area, b=exchange, c=line)
    slow = outcome(_to_e164_slow, text, region)
    fast = outcome(_to_e164_fast, text, region)
    if takes_fast_path(form, area, region):
        assert fast == slow, text
    else:
        assert fast is None, text
    assert outcome(to_e164, text, region) == slow, text


@pytest.mark.parametrize(
    "text",
    [
        "1 (509) 555-1234",  # a leading 1: phonenumbers decides if it is the national prefix
        "15095551234",
        "011 1 509 555 1234",  # the US international prefix
        "(509) 555-1234 x7",  # an extension
        "(509) 555-CALL",  # letters, which phonenumbers reads as digits
        "509-555-123\u0664",  # Arabic-Indic digits, which phonenumbers reads as ASCII
        "\uff15\uff10\uff19-555-1234",  # fullwidth digits
        "\uff0b1 509 555 1234",  # a fullwidth plus
        "(509)\u00a0555-1234",  # a no-break space
        " (509) 555-1234",  # space around the number
        "(509) 555-1234 ",
        "(509 555-1234",  # unbalanced parentheses
        "509--555-1234",
        "+1 (109) 555-1234",  # an area code starting 0 or 1
        "+1 (009) 555-1234",
    ],
)
def test_forms_phonenumbers_treats_specially_are_left_to_it(text: str) -> None:
    assert _to_e164_fast(text, "US") is None
    assert outcome(to_e164, text, "US") == outcome(_to_e164_slow, text, "US")


@given(
    text=st.text(alphabet="0123456789 1+()-.x#,;/\u00a0\uff0b\u0665", max_size=20),
    region=st.sampled_from(["US", "CA", "JM", "GB"]),
)
@settings(max_examples=300, deadline=None)
def test_text_near_the_fast_forms_reads_as_phonenumbers_reads_it(text: str, region: str) -> None:
    assert outcome(to_e164, text, region) == outcome(_to_e164_slow, text, region), text


def test_many_random_numbers_read_the_same_both_ways() -> None:
    rng = random.Random(20261129)  # noqa: S311 - seeded test data, repeatable; no secret
    forms = NATIONAL_FORMS + PLUS_FORMS
    regions = [*NANP_REGIONS, "US", "US", "US", "GB"]
    fast_answers = valid = 0
    for index in range(50_000):
        digits = f"{rng.randrange(10**10):010d}"
        area, exchange, line = digits[:3], digits[3:6], digits[6:]
        form = forms[index % len(forms)]
        region = rng.choice(regions)
        text = form.format(a=area, b=exchange, c=line)
        fast = outcome(_to_e164_fast, text, region)
        if not takes_fast_path(form, area, region):
            assert fast is None, text
            continue
        assert fast == outcome(_to_e164_slow, text, region), text
        fast_answers += 1
        valid += fast == f"+1{digits}"
    # Enough of both answers that a wrong fast path would have shown.
    assert fast_answers > 35_000
    assert 5_000 < valid < fast_answers - 5_000


@pytest.mark.parametrize("region", NANP_REGIONS)
def test_each_regions_example_numbers_read_the_same_both_ways(region: str) -> None:
    # phonenumbers' own examples reach every region's patterns, whatever random
    # numbers happen to hit; a digit changed at the end probes the pattern's edge.
    checked = 0
    for kind in PhoneNumberType.values():
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        national = phonenumbers.national_significant_number(example)
        if example.country_code != 1 or len(national) != 10:
            continue
        for last in "0123456789":
            digits = national[:-1] + last
            for form in ("({a}) {b}-{c}", "+1{a}{b}{c}"):
                text = form.format(a=digits[:3], b=digits[3:6], c=digits[6:])
                fast = outcome(_to_e164_fast, text, region)
                assert fast is not None, text
                assert fast == outcome(_to_e164_slow, text, region), text
                checked += 1
    assert checked > 0
