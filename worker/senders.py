"""Webhook attempts over HTTP/1.1: the standard library's http.client on kept-alive
connections, to the address that was checked (shared.addresses), never to the name.

Why not httpx, as the client library uses: an attempt through httpx costs about four
times the CPU (bench/senders.py: 430 against 110 us a request to a local receiver), and
the dispatcher makes one per change and webhook. What httpx gave that matters here is
kept: a bounded wait on every step, no redirect followed, no proxy from the
environment, TLS verified against the URL's host name (SNI included) while the socket
goes to the checked address, a bounded read of the answer.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from shared.addresses import IPAddress

# The contract's limit on one attempt: connecting, sending and each read.
ATTEMPT_TIMEOUT = 10.0
# Of a receiver's answer, at most this much is read; it is not kept.
MAX_ANSWER_BYTES = 65_536
# Idle connections kept per origin and address, and in all.
IDLE_PER_ORIGIN = 8
MAX_IDLE = 256
USER_AGENT = "endcontact-webhooks/1"
# A path's characters sent as they are; anything else (non-ASCII) percent-encoded.
_SAFE = "/%:@!$&'()*+,;=-._~?"


@dataclass(frozen=True)
class Request:
    """Where and what one attempt sends."""

    scheme: str
    name: str  # the URL's host, ASCII (IDNA), which TLS checks the certificate against
    port: int
    address: IPAddress  # where the socket goes: checked after resolution
    target: str  # path and query
    body: bytes
    headers: dict[str, str]


def request_target(url: str) -> tuple[str, str]:
    """The Host header's value and the request target (path and query) of `url`,
    which shared.addresses.target accepted."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = (parts.hostname or "").encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    return host, quote(path, safe=_SAFE)


class _TLSConnection(http.client.HTTPSConnection):
    """TLS to an address, with the certificate checked against the URL's host name."""

    def __init__(self, address: str, port: int, name: str, context: ssl.SSLContext) -> None:
        super().__init__(address, port, timeout=ATTEMPT_TIMEOUT, context=context)
        self._name = name
        self._tls = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._name)


_Origin = tuple[str, str, int, str]


class Connections:
    """Kept-alive connections, idle ones per origin and address. Thread-safe: a
    connection is in one sender's hands or idle here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[_Origin, list[http.client.HTTPConnection]] = OrderedDict()
        self._count = 0
        self._context = ssl.create_default_context()

    def post(self, request: Request) -> int:
        """Send `request`; its status. A kept-alive connection that the receiver
        closed meanwhile is found out when used: the request is sent once more on a
        new one (the receiver may get it twice; webhook-id tells it so)."""
        origin = (request.scheme, request.name, request.port, str(request.address))
        connection = self._take(origin)
        if connection is not None:
            try:
                return self._send(origin, connection, request)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                pass
        return self._send(origin, self._connect(request), request)

    def close(self) -> None:
        with self._lock:
            idle = [one for ones in self._idle.values() for one in ones]
            self._idle.clear()
            self._count = 0
        for connection in idle:
            connection.close()

    def _connect(self, request: Request) -> http.client.HTTPConnection:
        address = str(request.address)
        if request.scheme == "https":
            return _TLSConnection(address, request.port, request.name, self._context)
        return http.client.HTTPConnection(address, request.port, timeout=ATTEMPT_TIMEOUT)

    def _send(
        self, origin: _Origin, connection: http.client.HTTPConnection, request: Request
    ) -> int:
        try:
            connection.request("POST", request.target, request.body, request.headers)
            answer = connection.getresponse()
            # Only the status counts. The answer is read (up to a bound) so that the
            # connection can carry the next attempt.
            answer.read(MAX_ANSWER_BYTES)
            reusable = answer.isclosed() and not answer.will_close
            status = answer.status
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._give(origin, connection)
        else:
            connection.close()
        return status

    def _take(self, origin: _Origin) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(origin)
            if not idle:
                return None
            self._count -= 1
            return idle.pop()

    def _give(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        dropped: list[http.client.HTTPConnection] = []
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            self._idle.move_to_end(origin)
            if len(idle) < IDLE_PER_ORIGIN:
                idle.append(connection)
                self._count += 1
            else:
                dropped.append(connection)
            while self._count > MAX_IDLE:
                _, oldest = self._idle.popitem(last=False)
                self._count -= len(oldest)
                dropped.extend(oldest)
        for one in dropped:
            with contextlib.suppress(OSError):
                one.close()


def error_of(exc: BaseException) -> str:
    """What the attempt log says of an attempt that got no status."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timeout ({ATTEMPT_TIMEOUT:g} s)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate refused"
    if isinstance(exc, ssl.SSLError):
        return "TLS failed"
    if isinstance(exc, http.client.HTTPException):
        return f"HTTP error ({exc.__class__.__name__})"
    return "connection failed"
