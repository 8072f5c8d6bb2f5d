"""What a JSON string may hold that a stored or sent one must not."""

from __future__ import annotations

# Why a string that is not text is refused, where a client or an operator reads it.
NOT_TEXT = "must be text: a lone surrogate (such as \\ud800) is no character"


def is_text(value: str) -> bool:
    """Whether `value` is text: JSON lets a string escape half a surrogate pair
    (\\ud800), which no UTF-8 can carry. Stored, it would make every answer that
    shows it fail to encode."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
