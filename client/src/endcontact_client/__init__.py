"""A Python client of the end-contact API (typed, over httpx).

    from endcontact_client import Client
    with Client("http://127.0.0.1:8000", key) as api:
        result = api.end_contact(["(509) 555-1234"], reason="asked by SMS to stop")

`AsyncClient` has the same methods for asyncio. Errors are one exception, ProblemError,
carrying the problem document.
"""

from __future__ import annotations

from endcontact_client.aio import AsyncClient
from endcontact_client.errors import Problem, ProblemError, ProblemItem
from endcontact_client.models import ChangeResult, CheckResult, Event, History, Mark
from endcontact_client.retry import Backoff
from endcontact_client.sync import Client

__all__ = [
    "AsyncClient",
    "Backoff",
    "ChangeResult",
    "CheckResult",
    "Client",
    "Event",
    "History",
    "Mark",
    "Problem",
    "ProblemError",
    "ProblemItem",
]
