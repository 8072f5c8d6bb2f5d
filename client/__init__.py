"""A Python client of the end-contact API (typed, over httpx).

    from client import Client
    with Client("http://127.0.0.1:8000", key) as api:
        result = api.end_contact(["(509) 555-1234"], reason="asked by SMS to stop")

`AsyncClient` has the same methods for asyncio. Errors are one exception, ProblemError,
carrying the problem document.
"""

from __future__ import annotations

from client.aio import AsyncClient
from client.errors import Problem, ProblemError, ProblemItem
from client.models import ChangeResult, CheckResult, Event, History, Mark
from client.retry import Backoff
from client.sync import Client

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
