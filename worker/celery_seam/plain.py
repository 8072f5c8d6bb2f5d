"""A task message of ours read straight from kombu's envelope: the batch's fast path.

An entry taken for a batch (transport.Waiting) used to become a kombu Message and then
a Celery Request, as the consumer builds them for any task: a fifth to a third of a
worker's CPU per number (issue 23's profile), most of it for what a change task never
uses (kombu's JSON hooks, the Message's codecs and QoS bookkeeping, the Request's
properties, dateutil's ISO parser for its expiry). A batch reads five things of a
request: its id, task name, arguments, expiry and masked argument text. An entry that
is plainly a message of ours, as the web publishes it (api/publisher.py) or Celery's
own `send_task` would, is read here, in one pass, into a PlainRequest that holds those.

Anything that would make Celery do more than run the task goes Celery's way instead
(read() answers None): an ETA or countdown, a revoked id, kwargs, callbacks, errbacks,
a chain or chord, another encoding. An expiry already past is read too, the request
marked expired: the batch discards it as Celery would (batch.py), its REVOKED result
stored with the others'. So does every message while the task's events are on (Flower)
or something listens to task_received: those are sent per Request (Reader.on()). Of the
bookkeeping Celery keeps per task, the totals `celery inspect stats` shows are kept for
these too (batch.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from celery import signals
from celery.worker import state as worker_state

from shared.clock import ServerClock

# The embedded options of a message that carries none (Celery's task protocol 2).
_NO_OPTIONS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# msgspec's JSON decoder: the same values as the standard one for what both accept, at a
# third of the CPU (5.2 -> 1.7 µs an envelope). What it refuses (NaN, a lone surrogate,
# nesting past its limit) goes Celery's way, whose parser has its own say; what only it
# accepts (an integer past Python's 4,300 digits) is read, if the rest is plainly ours.
_decode = msgspec.json.Decoder().decode


@dataclass(slots=True)
class PlainRequest:
    """What a batch reads of a Celery Request (batch.py)."""

    id: str
    name: str
    args: list[Any]
    argsrepr: str
    # On this worker's clock, as Celery's Request holds it (moved from the broker's).
    expires: datetime | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Its expiry had passed when it was read: to be discarded, not run.
    expired: bool = False


class Reader:
    """Reads the envelopes of messages taken for a batch (read())."""

    def __init__(self, names: Collection[str], broker_clock: ServerClock) -> None:
        self._names = frozenset(names)
        self._broker_clock = broker_clock

    def on(self, events: bool) -> bool:
        """Whether the fast path may be taken now: not while the task's events go out or
        anything listens to task_received, which Celery sends per Request."""
        return not events and not signals.task_received.receivers

    def read(self, raw: bytes) -> PlainRequest | None:
        """The request an entry of the queue holds if it is plainly a message of ours;
        None for Celery's way (transport.envelope(), kombu's Message and Celery's
        Request, or dropped there if it is no message at all)."""
        try:
            envelope = _decode(raw)
        except msgspec.DecodeError:
            return None
        if not isinstance(envelope, dict):
            return None
        headers, properties = envelope.get("headers"), envelope.get("properties")
        if not isinstance(headers, dict) or not isinstance(properties, dict):
            return None
        name, task_id = headers.get("task"), headers.get("id")
        if (
            not isinstance(name, str)
            or name not in self._names
            or not isinstance(task_id, str)
            or headers.get("eta") is not None
            or not isinstance(body := envelope.get("body"), str)
            or properties.get("body_encoding") != "base64"
            or envelope.get("content-type") != "application/json"
            or envelope.get("content-encoding") != "utf-8"
            or task_id in worker_state.revoked
        ):
            return None
        try:
            args, kwargs, options = _decode(base64.b64decode(body))
        except (binascii.Error, ValueError, msgspec.DecodeError, TypeError):
            return None  # Celery's way: dropped by envelope() or consumer.py, logged
        if not isinstance(args, list) or kwargs != {} or options != _NO_OPTIONS:
            return None
        try:
            expires, expired = _expiry(headers.get("expires"), self._broker_clock.offset)
        except _CeleryWay:
            return None
        argsrepr = headers.get("argsrepr")
        text = argsrepr if isinstance(argsrepr, str) else ""
        return PlainRequest(task_id, name, args, text, expires, expired=expired)


class _CeleryWay(Exception):
    """A message for Celery's own handling (read())."""


def _expiry(text: object, broker_offset: float) -> tuple[datetime | None, bool]:
    """The message's expiry moved onto this worker's clock (None if it has none), and
    whether it has passed (Celery's test: Request.maybe_expire); _CeleryWay if it is
    not one Python reads the way Celery would."""
    if text is None:
        return None, False
    if not isinstance(text, str):
        raise _CeleryWay
    expires, timestamp = _moved(text, broker_offset)
    return expires, timestamp <= time.time()


# A request's 50 messages carry one expiry: read once for all of them.
@functools.lru_cache(maxsize=256)
def _moved(text: str, broker_offset: float) -> tuple[datetime, float]:
    try:
        expires = datetime.fromisoformat(text)
    except ValueError:
        raise _CeleryWay from None
    if expires.tzinfo is None:
        raise _CeleryWay  # Celery would take the worker's timezone
    # The web set it on the broker's clock (api.fanout): as batch.py moves a Request's.
    expires -= timedelta(seconds=broker_offset)
    return expires, expires.timestamp()
