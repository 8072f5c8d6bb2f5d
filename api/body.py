"""Reading and validating the end-contact request body.

Everything wrong with a body is reported at once, one `errors` entry per offending
item, so a client can fix all of it in one go.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from api.problems import Problem, invalid
from shared.events import MAX_NUMBERS, REASON_MAX, is_reason
from shared.phones import InvalidPhoneNumber, to_e164
from shared.settings import whole_number
from shared.text import NOT_TEXT, is_text

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_BODY_BYTES = 64 * 1024
# The bulk check reads up to 1000 numbers: 128 KiB holds 1000 entries of up to 125
# characters each (a number with its quotes, comma and a space), five times the
# longest way people write one ("+44 (0) 20 7946 0958 " is 21). A longer body is a 413.
CHECK_MAX_NUMBERS = 1000
CHECK_MAX_BODY_BYTES = 128 * 1024
FIELD = "phoneNumberList"
REASON = "reason"
# A client that trickles its body must not hold a connection and a task forever.
BODY_READ_TIMEOUT = 10.0


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"The body is larger than {limit} bytes.",
        type="/problems/body-too-large",
        # Else the server, to keep the connection for a next request, reads and drops
        # all the rest of the body, however large: closing it is what stops the upload.
        headers={"Connection": "close"},
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, refusing early (without reading it) when it is too large."""
    declared = whole_number(request.headers.get("content-length", ""), 0, sys.maxsize)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(
            408, "The body did not arrive in time.", type="/problems/body-timeout"
        ) from None
    except ClientDisconnect:
        raise invalid("The body ended before it was complete.", []) from None
    return b"".join(chunks)


def check_content_type(value: str | None) -> None:
    media_type, _, params = (value or "").partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, param_value = param.strip().partition("=")
        if name.lower() == "charset":
            charset = param_value.strip().strip('"').lower()
    if media_type.strip().lower() != "application/json" or charset not in ("", "utf-8"):
        raise invalid(
            "The body must be JSON, sent as Content-Type: application/json.",
            [{"header": "content-type", "value": value, "reason": "must be application/json"}],
        )


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(
            "The body is not valid UTF-8.",
            [{"pointer": "", "reason": f"invalid UTF-8 at byte {exc.start}"}],
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(
            "The body is not valid JSON.",
            [{"pointer": "", "reason": f"{exc.msg} at line {exc.lineno} column {exc.colno}"}],
        ) from None
    except ValueError:
        # Not a JSONDecodeError: Python refuses an integer of more than 4,300 digits.
        raise invalid(
            "The body is not valid JSON.", [{"pointer": "", "reason": "a number is too long"}]
        ) from None
    except RecursionError:
        raise invalid(
            "The body is not valid JSON.", [{"pointer": "", "reason": "nested too deeply"}]
        ) from None


def json_document(raw: bytes) -> Any:
    """Any body as JSON (the webhooks' too), or a 400 saying where it is not."""
    return _decode(raw)


def phone_numbers(raw: bytes, region: str, maximum: int = MAX_NUMBERS) -> list[str]:
    """The E.164 numbers of a request body, in request order, or a 400 Problem."""
    return _numbers(_object(raw), region, maximum, [])


def change_request(raw: bytes, region: str) -> tuple[list[str], str | None]:
    """A change's numbers and its optional reason, or a 400 naming every fault."""
    document = _object(raw)
    reason, reason_errors = _reason(document)
    return _numbers(document, region, MAX_NUMBERS, reason_errors), reason


def _object(raw: bytes) -> dict[str, Any]:
    document = _decode(raw)
    if not isinstance(document, dict):
        raise invalid(
            "The body must be a JSON object.",
            [{"pointer": "", "reason": "must be a JSON object with a phoneNumberList"}],
        )
    return document


def _reason(document: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    if REASON not in document:
        return None, []
    reason = document[REASON]
    if isinstance(reason, str) and is_reason(reason):
        return reason, []
    why = f"must be a string of at most {REASON_MAX} characters"
    if isinstance(reason, str) and not is_text(reason):
        why = NOT_TEXT
    return None, [{"pointer": f"/{REASON}", "value": reason, "reason": why}]


def _numbers(
    document: dict[str, Any], region: str, maximum: int, others: list[dict[str, Any]]
) -> list[str]:
    """The numbers of the body, or a 400 with their faults and `others` (the rest of
    the body's)."""
    pointer = f"/{FIELD}"
    if FIELD not in document:
        raise invalid(
            f"{FIELD} is required.", [{"pointer": pointer, "reason": "required"}, *others]
        )
    entries = document[FIELD]
    if not isinstance(entries, list):
        raise invalid(
            f"{FIELD} must be an array of strings.",
            [
                {"pointer": pointer, "value": entries, "reason": "must be an array of strings"},
                *others,
            ],
        )
    if not 1 <= len(entries) <= maximum:
        raise invalid(
            f"{FIELD} must hold 1 to {maximum} numbers; it holds {len(entries)}.",
            [{"pointer": pointer, "reason": f"must hold 1 to {maximum} entries"}, *others],
        )

    numbers: list[str] = []
    errors: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        item = f"{pointer}/{index}"
        if not isinstance(entry, str):
            errors.append({"pointer": item, "value": entry, "reason": "must be a string"})
            continue
        try:
            number = to_e164(entry, region)
        except InvalidPhoneNumber as exc:
            errors.append({"pointer": item, "value": entry, "reason": str(exc)})
            continue
        if number in first_seen:
            errors.append(
                {
                    "pointer": item,
                    "value": entry,
                    "reason": f"duplicate of {pointer}/{first_seen[number]} ({number})",
                }
            )
            continue
        first_seen[number] = index
        numbers.append(number)
    if errors:
        count = "1 entry" if len(errors) == 1 else f"{len(errors)} entries"
        raise invalid(f"{count} of {FIELD} must be fixed; nothing was processed.", errors + others)
    if others:
        detail = (
            f"{REASON} must be a string of at most {REASON_MAX} characters; nothing was processed."
        )
        raise invalid(detail, others)
    return numbers
