"""The HTTP side of reading marks: the listing's query, content negotiation, and the
CSV export as a stream whose memory does not grow with the campaign."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import redis
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.problems import REDIS_TIMEOUT, Problem, invalid
from shared.events import BadEventId, EventId
from shared.marks import CSV_HEADER, BadCursor, Cursor, start_cursor
from shared.settings import whole_number

log = logging.getLogger("endcontact.api")
T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CSV_TYPE = "text/csv; charset=utf-8"


def _quality(accept: str, media_type: str) -> float:
    """The q the Accept header gives `media_type` when named outright, else 0."""
    best = 0.0
    for part in accept.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        if name.lower() != media_type:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def wants_csv(accept: str | None) -> bool:
    """CSV when the client names text/csv and does not prefer application/json."""
    csv_q = _quality(accept or "", "text/csv")
    return csv_q > 0 and csv_q >= _quality(accept or "", "application/json")


def page_query(query: QueryParams) -> tuple[int, Cursor]:
    """The listing's `limit` and `cursor`, or a 400 naming each bad one."""
    limit, cursor = _limit_and(query, "cursor", Cursor.decode)
    return limit, start_cursor() if cursor is None else cursor


def feed_query(query: QueryParams) -> tuple[EventId | None, int]:
    """The feed's `after` and `limit`, or a 400 naming each bad one."""
    limit, after = _limit_and(query, "after", EventId.parse)
    return after, limit


def _limit_and(query: QueryParams, name: str, parse: Callable[[str], T]) -> tuple[int, T | None]:
    """The query's `limit` and its `name` as `parse` reads it (None without one), or a
    400 naming each bad one."""
    errors: list[dict[str, str]] = []
    limit = query_limit(query, DEFAULT_LIMIT, MAX_LIMIT, errors)
    value = None
    given = query.get(name)
    if given is not None:
        try:
            value = parse(given)
        except (BadCursor, BadEventId) as exc:
            errors.append({"parameter": name, "value": given, "reason": str(exc)})
    if errors:
        raise invalid("The query must be fixed.", errors)
    return limit, value


def after_ahead(after: str) -> Problem:
    """The 400 for an `after` past every event the feed could hold now (FeedAhead): a
    made-up cursor (a feed's ids are its store's clock). Taken, it would answer no event
    and itself as `next` until the clock passed it: its client would skip every event."""
    reason = "later than every event of this feed and than now (start without `after`)"
    return invalid(
        "The query must be fixed.", [{"parameter": "after", "value": after, "reason": reason}]
    )


def query_limit(query: QueryParams, default: int, most: int, errors: list[dict[str, str]]) -> int:
    """The query's `limit` (`default` without one); a bad one is added to `errors`."""
    text = query.get("limit")
    if text is None:
        return default
    limit = whole_number(text, 1, most)
    if limit is None:
        reason = f"must be a whole number from 1 to {most}"
        errors.append({"parameter": "limit", "value": text, "reason": reason})
        return default
    return limit


def export_query(query: QueryParams) -> None:
    """The export is the whole campaign: a limit or cursor would be silently ignored."""
    errors = [
        {"parameter": name, "value": query[name], "reason": "pages are JSON; the CSV is whole"}
        for name in ("limit", "cursor")
        if name in query
    ]
    if errors:
        raise invalid("The CSV export takes no limit or cursor.", errors)


class CsvExport(Response):
    """A 200 text/csv streamed from `chunks`, each awaited within REDIS_TIMEOUT.

    Redis failing mid-way cannot become a problem (the 200 is sent): the stream stops
    without its last chunk, so the client sees a transfer cut short, never a CSV that
    looks complete. A client that goes away stops the reads."""

    def __init__(self, first: str, chunks: AsyncIterator[str]) -> None:
        # Not Response.__init__: there is no body to render, the stream is sent below.
        self.status_code = 200
        self.first = first
        self.chunks = chunks
        self.raw_headers = [
            (b"content-type", CSV_TYPE.encode()),
            # A fixed name: a campaign's may hold quotes or characters a header cannot.
            (b"content-disposition", b'attachment; filename="end-contact.csv"'),
            (b"vary", b"Accept"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if scope["method"] == "HEAD":
            # The headers are all a HEAD gets: no reason to read the campaign for it.
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            await send(
                {
                    "type": "http.response.body",
                    "body": (CSV_HEADER + self.first).encode(),
                    "more_body": True,
                }
            )
            while True:
                try:
                    async with asyncio.timeout(REDIS_TIMEOUT):
                        chunk = await anext(self.chunks)
                except StopAsyncIteration:
                    break
                await send(
                    {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                )
        except (TimeoutError, redis.RedisError) as exc:
            log.warning("export cut short", extra={"error": exc.__class__.__name__})
            return
        except OSError:
            # The client went away (uvicorn's send raises then).
            log.info("export abandoned by the client")
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
