"""kombu's Redis transport, where an entry of the queue that is not a message at all
costs only itself. A seam to kombu's internals, kept to this one module.

Every entry of the queue (the list QUEUE on the broker) should be kombu's envelope of
a message: a JSON object with `body` (a string), `headers` (an object) and
`properties` (an object with a `delivery_tag` string, a `delivery_info` object and
a `body_encoding` kombu knows), as kombu writes it and as the web does
(api/publisher.py). kombu reads that envelope in its transport, below Celery's
consumer: `Channel._brpop_read` decodes the entry it popped and hands it to
`Connection._deliver`, which builds kombu's Message from it. An entry that is not an
envelope (`LPUSH endcontact "not json"`, a JSON array, an object without properties)
raises there, out of the worker's event loop, and the worker exits ("Unrecoverable
error"); the supervisor restarts it at most five times a minute, so a handful of such
entries would leave no worker.

Here each entry is read by envelope(), the one rule for both ways a worker takes
entries (this transport's BRPOP, and Waiting taking what else waits, for batch.py's
batches): an entry
that is not an envelope is logged (its length and what is wrong, never its content:
it may hold a phone number) and dropped, and the worker goes on with the next. An
envelope whose message Celery cannot run is consumer.py's to drop.

The worker takes the transport by the broker URL's scheme, as kombu does (register()). The
overrides are of kombu's `Channel._brpop_start` and `Channel._brpop_read`, whose text
they repeat but for the command (BLMPOP, see _ReadsEnvelopes) and the decoding; they
were read in kombu 5.5.2, 5.6.0 and 5.7.0, which differ only where said (5.5 waits 1 s,
5.6 brpop_timeout, 5.7 also notes when the pop was sent). Before moving to a later
kombu, compare its `_brpop_start` and `_brpop_read` with these.
"""

from __future__ import annotations

import base64
import binascii
import logging
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, _transport_cache, redis
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import loads
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from shared import lua
from worker.celery_seam.versions import FLUSHES_BRPOP_REAUTH

# The logger names of before the seam package: what operators filter the logs on (what
# Waiting says was worker.batch's).
log = logging.getLogger("worker.transport")
batch_log = logging.getLogger("worker.batch")

# Most entries one pop takes: a batch's most (batch.py). Larger batches cost fewer round
# trips per number but keep the numbers of one batch waiting for its slowest part, and
# leave less work for the other worker processes.
POP_MOST = 100
# What else waits on the queue, in one round trip (Waiting).
TAKE_WAITING_SCRIPT = lua.load("worker.celery_seam", "take_waiting")


class NotAnEnvelope(ValueError):
    """What is wrong with an entry of the queue, in words of ours (never its content)."""


def envelope(raw: bytes) -> dict[str, Any] | None:
    """The envelope an entry of the queue holds (as the broker's client returns it),
    decoded as kombu decodes it; None if it holds none: then it is logged, and the
    caller drops it."""
    try:
        return _envelope(raw)
    except Exception as exc:
        # The error's words only when they are ours: a decoder's may quote the entry.
        error = exc.__class__.__name__
        log.error(
            "dropped a queue entry that is not a task message (%d bytes): %s",
            len(raw),
            exc if isinstance(exc, NotAnEnvelope) else error,
            extra={"length": len(raw), "error": error},
        )
        return None


def _envelope(raw: bytes) -> dict[str, Any]:
    payload = loads(bytes_to_str(raw))  # type: ignore[no-untyped-call]
    if not isinstance(payload, dict):
        raise NotAnEnvelope("not a JSON object")
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        raise NotAnEnvelope("properties are not an object")
    if not isinstance(payload.get("headers"), dict):
        raise NotAnEnvelope("headers are not an object")
    body = payload.get("body")
    if not isinstance(body, str):
        raise NotAnEnvelope("the body is not a string")
    # kombu's QoS keeps each delivered message under its tag (a dict key).
    if not isinstance(properties.get("delivery_tag"), str):
        raise NotAnEnvelope("the delivery tag is not a string")
    if not isinstance(properties.get("delivery_info"), dict):
        raise NotAnEnvelope("the delivery info is not an object")
    # As kombu's Channel.decode_body: none or utf-8 leave the body as it is; its only
    # codec is base64, which its Message decodes when it is built.
    encoding = properties.get("body_encoding")
    if encoding == "base64":
        try:
            base64.b64decode(str_to_bytes(body))  # type: ignore[no-untyped-call]
        except (binascii.Error, ValueError):
            raise NotAnEnvelope("the body is not base64") from None
    elif encoding and not (isinstance(encoding, str) and encoding.lower() == "utf-8"):
        raise NotAnEnvelope("the body encoding is not one kombu knows")
    return payload


class _ReadsEnvelopes:
    """kombu's Channel._brpop_start and _brpop_read, but for how many entries one pop
    takes and how it reads them.

    kombu pops one entry a wait (BRPOP). Then a request's 50 messages woke every idle
    worker: Redis hands each blocked BRPOP one entry, so three workers each took a part
    of one request at once on two cores, each with its own write, fsync and results
    (at one client: three batches a request, 2.1 ms a write). BLMPOP (Redis 7.0) hands
    the first worker up to POP_MOST entries in the same reply: what waits is its batch,
    taken in the round trip that woke it, and the other workers wait for the next.
    A broker without BLMPOP, or a key prefix (kombu's global_keyprefix, which this does
    not apply), pops as kombu does.
    """

    # Until the broker says it has no BLMPOP: then one entry a pop, as kombu.
    _pops_many = True
    _pop_command = "BRPOP"

    @property
    def popped(self: Any) -> list[tuple[str, bytes]]:
        """Entries popped with the one being delivered and not delivered yet, each with
        its queue: Waiting takes them for the batch in hand; what it leaves,
        _brpop_read delivers."""
        entries: list[tuple[str, bytes]] = self.__dict__.setdefault("_popped", [])
        return entries

    def _brpop_start(self: Any, timeout: float | None = None) -> None:
        if not self._pops_many or getattr(self, "global_keyprefix", None):
            self._pop_command = "BRPOP"
            super()._brpop_start(*(() if timeout is None else (timeout,)))  # type: ignore[misc]
            return
        if timeout is None:  # kombu 5.5 has no brpop_timeout: it waits 1 s
            timeout = getattr(self, "brpop_timeout", 1)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        # kombu's keys: each queue at each priority, in the order BRPOP tries them.
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        # kombu 5.7 drops a connection whose pop is overdue by then (a half-open socket).
        self._brpop_sent_at = monotonic()
        self._pop_command = "BLMPOP"
        self.client.connection.send_command(
            "BLMPOP", timeout or 0, len(keys), *keys, "RIGHT", "COUNT", POP_MOST
        )

    def _brpop_read(self: Any, **options: Any) -> bool:
        try:
            try:
                reply = self.client.parse_response(
                    self.client.connection, self._pop_command, **options
                )
            except self.connection_errors:
                # As kombu: the next poll reconnects.
                self.client.connection.disconnect()
                raise
            except ResponseError as exc:
                if self._pop_command != "BLMPOP" or not _unsupported(exc):
                    raise
                log.warning("the broker cannot pop several entries at once: one at a time")
                self._pops_many = False
                reply = None
            popped = self.popped
            if reply:
                dest, entries = reply if self._pop_command == "BLMPOP" else (reply[0], reply[1:])
                queue = bytes_to_str(dest).rsplit(self.sep, 1)[0]  # type: ignore[no-untyped-call]
                self._queue_cycle.rotate(queue)
                # After any that a delivery which raised left: they go first.
                popped.extend((queue, entry) for entry in entries)
            delivered = False
            while popped:
                queue, entry = popped.pop(0)
                message = envelope(entry)
                # None: nothing delivered, as kombu says of a fanout message it cannot
                # decode (Channel._receive_one).
                if message is not None:
                    self.connection._deliver(message, queue)
                    delivered = True
            if not delivered:
                raise Empty()
            return True
        finally:
            self._in_poll = None
            if FLUSHES_BRPOP_REAUTH:
                self._flush_brpop_reauth()


class Waiting:
    """What else waits on the queue, for a batch (batch.py): what was popped with the
    message in hand (_ReadsEnvelopes), or, from a broker without BLMPOP, what waits,
    taken in one round trip (lua/take_waiting.lua)."""

    def __init__(self, most: int, shared_from: int) -> None:
        self._args = [most, shared_from]
        # Redis before 6.2 has no RPOP with a count: there a batch is one message.
        self._supported = True
        self._script: Any = None

    def take(self, channel: Any, queue: str) -> list[bytes]:
        """The entries waiting on `queue`, taken off it through kombu's `channel`, as
        the broker's client returns them: each is read by the batch (plain.py), or by
        envelope() before it is delivered."""
        if getattr(channel, "_pop_command", "") == "BLMPOP":
            # Taken with the message in hand: what waited then is the batch.
            popped = channel.popped
            taken = [entry for source, entry in popped if source == queue]
            popped[:] = [(source, entry) for source, entry in popped if source != queue]
            return taken
        if not self._supported:
            return []
        try:
            with channel.conn_or_acquire() as client:
                if self._script is None:
                    self._script = client.register_script(TAKE_WAITING_SCRIPT)
                raws: list[bytes] = self._script(keys=[queue], args=self._args, client=client)
        except ResponseError as exc:
            if _unsupported(exc):
                # Before Redis 6.2 RPOP takes no count; an ACL may forbid scripts.
                batch_log.warning("the broker cannot pop several messages at once: batches of one")
                self._supported = False
                return []
            batch_log.warning("could not take waiting messages: %s", exc.__class__.__name__)
            return []
        except (RedisError, OSError) as exc:
            # Nothing was taken: they stay for the next delivery.
            batch_log.warning("could not take waiting messages: %s", exc.__class__.__name__)
            return []
        return list(raws or ())


def deliver(channel: Any, message: dict[str, Any], queue: str) -> None:
    """Deliver an envelope through the consumer as this transport delivers what it pops
    (kombu's `Connection._deliver`: kombu's Message, then Celery's Request); whatever
    its task message holds is consumer.py's to handle."""
    try:
        channel.connection._deliver(message, queue)
    except Exception:
        # One bad message must not cost the rest of the batch.
        batch_log.exception("could not deliver a message")


def _unsupported(exc: ResponseError) -> bool:
    # redis-py takes NOPERM off the text of an ACL's refusal into its class.
    if isinstance(exc, NoPermissionError):
        return True
    text = str(exc).lower()
    return any(sign in text for sign in ("wrong number of arguments", "unknown command", "noperm"))


class Channel(_ReadsEnvelopes, redis.Channel):  # type: ignore[misc]
    pass


class SentinelChannel(_ReadsEnvelopes, redis.SentinelChannel):  # type: ignore[misc]
    pass


class Transport(redis.Transport):
    Channel = Channel


class SentinelTransport(redis.SentinelTransport):
    Channel = SentinelChannel


# kombu's transport for each scheme a broker URL may have (shared.settings) -> ours.
_TRANSPORTS = {
    "redis": f"{__name__}:Transport",
    "rediss": f"{__name__}:Transport",
    "sentinel": f"{__name__}:SentinelTransport",
}


def register() -> None:
    """Put this module's transports under kombu's names for Redis URLs, in kombu's own
    registry (kombu.transport.TRANSPORT_ALIASES, read whenever a connection resolves
    its transport), for this process: the worker's, Celery's tools', Flower's. A broker
    URL then picks ours by its scheme as before, so kombu still reads TLS from
    `rediss://` and Celery still names the broker by its URL (named by its class, in
    Celery's `broker_transport`, it was `worker.transport:Transport://...` in every
    log line, and TLS had to be asked of kombu by hand)."""
    TRANSPORT_ALIASES.update(_TRANSPORTS)
    for scheme in _TRANSPORTS:  # resolved before, by kombu's name: looked up again
        _transport_cache.pop(scheme, None)
