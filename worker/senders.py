"""Webhook attempts over HTTP/1.1: the standard library's http.client on kept-alive
connections, to the address that was checked (shared.addresses), never to the name.

Why not httpx, as the client library uses: an attempt through httpx costs about four
times the CPU (bench/senders.py: 430 against 110 us a request to a local receiver), and
the dispatcher makes one per change and webhook. What httpx gave that matters here is
kept: a bounded wait on every step and on the whole attempt, no redirect followed, no
proxy from the environment, TLS verified against the URL's host name (SNI included)
while the socket goes to the checked address, a bounded read of the answer.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from shared.addresses import IPAddress

# The contract's limit on one attempt, in all: resolving the name
# (worker/deliveries/attempt.py), connecting, TLS, sending and reading the answer (each
# step's socket timeout is at most this too, but a sum of steps is not bounded by it: a
# receiver sending a byte every few seconds held one attempt for hours, issue 19).
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

    def __init__(
        self, address: str, port: int, name: str, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._name = name
        self._tls = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._name)


_Origin = tuple[str, str, int, str]
# How soon the watchdog looks again at an attempt whose deadline came while it was still
# connecting (no socket yet to cut; the connect itself is bounded by its timeout).
_CONNECTING_RECHECK = 0.05


class AttemptDeadline(TimeoutError):
    """The attempt's total deadline (ATTEMPT_TIMEOUT) passed."""

    def __init__(self) -> None:
        super().__init__(f"the attempt's deadline ({ATTEMPT_TIMEOUT:g} s) passed")


class _Attempt:
    """One attempt's connection while it is in a sender's hands, for the watchdog."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self.connection = connection
        self.done = False
        self.expired = False


class _Watchdog:
    """One thread for every attempt of the process: at an attempt's deadline it shuts
    the attempt's socket down, which ends whatever read or write holds it. (A timer
    thread per attempt would cost about as much CPU as the attempt itself.)"""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: _Attempt, deadline: float) -> None:
        with self._lock:
            heapq.heappush(self._heap, (deadline, next(self._order), attempt))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines")
                self._thread.daemon = True
                self._thread.start()
            # Woken only for a deadline earlier than those it waits for: deadlines come
            # in order, so the thread sleeps until the first one, not once per attempt.
            if self._heap[0][2] is attempt:
                self._lock.notify()

    def finish(self, attempt: _Attempt) -> None:
        """Under the lock: once this returns, the attempt's socket is never cut (its
        connection may go back to the idle pool)."""
        with self._lock:
            attempt.done = True

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    _, _, attempt = heapq.heappop(self._heap)
                    if not attempt.done:
                        attempt.expired = True
                        self._cut(attempt, now)
                wait = self._heap[0][0] - now if self._heap else None
                self._lock.wait(wait)

    def _cut(self, attempt: _Attempt, now: float) -> None:
        sock = attempt.connection.sock
        if sock is None:
            # Still connecting: cut it as soon as it has a socket.
            heapq.heappush(self._heap, (now + _CONNECTING_RECHECK, next(self._order), attempt))
            return
        # The plain socket's shutdown, under TLS too: it wakes the reader without
        # touching the TLS state from this thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


_watchdog = _Watchdog()


class Connections:
    """Kept-alive connections, idle ones per origin and address. Thread-safe: a
    connection is in one sender's hands or idle here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[_Origin, list[http.client.HTTPConnection]] = OrderedDict()
        self._count = 0
        self._context = ssl.create_default_context()

    def post(self, request: Request, deadline: float | None = None) -> int:
        """Send `request`; its status. A kept-alive connection that the receiver
        closed meanwhile is found out when used: the request is sent once more on a
        new one (the receiver may get it twice; webhook-id tells it so). `deadline`
        (time.monotonic()) is the attempt's, when it began before this call (with the
        name's resolution): by default ATTEMPT_TIMEOUT from now."""
        origin = (request.scheme, request.name, request.port, str(request.address))
        # One deadline for the attempt, a retry on a new connection included.
        if deadline is None:
            deadline = time.monotonic() + ATTEMPT_TIMEOUT
        connection = self._take(origin)
        if connection is not None:
            try:
                return self._send(origin, connection, request, deadline)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if time.monotonic() >= deadline:
                    raise AttemptDeadline from None
        return self._send(origin, self._connect(request, deadline), request, deadline)

    def close(self) -> None:
        with self._lock:
            idle = [one for ones in self._idle.values() for one in ones]
            self._idle.clear()
            self._count = 0
        for connection in idle:
            connection.close()

    def _connect(self, request: Request, deadline: float) -> http.client.HTTPConnection:
        """A new connection, not yet connected. Its connect waits at most until the
        deadline: the watchdog cannot cut a socket that is still connecting."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AttemptDeadline
        address = str(request.address)
        if request.scheme == "https":
            return _TLSConnection(address, request.port, request.name, self._context, left)
        return http.client.HTTPConnection(address, request.port, timeout=left)

    def _send(
        self,
        origin: _Origin,
        connection: http.client.HTTPConnection,
        request: Request,
        deadline: float,
    ) -> int:
        attempt = _Attempt(connection)
        _watchdog.watch(attempt, deadline)
        try:
            connection.request("POST", request.target, request.body, request.headers)
            answer = connection.getresponse()
            # Only the status counts. The answer is read (up to a bound) so that the
            # connection can carry the next attempt.
            answer.read(MAX_ANSWER_BYTES)
            reusable = answer.isclosed() and not answer.will_close
            status = answer.status
        except BaseException as exc:
            _watchdog.finish(attempt)
            connection.close()
            if attempt.expired:
                raise AttemptDeadline from exc
            raise
        _watchdog.finish(attempt)
        if attempt.expired:
            # Cut as it was answered: the socket is gone, the status is not to be trusted
            # to have been read whole.
            connection.close()
            raise AttemptDeadline
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
    """What the attempt log says of an attempt that got no status: what its receiver's
    owner can look for (nothing listens, a firewall drops, a proxy cuts)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timeout ({ATTEMPT_TIMEOUT:g} s)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate refused"
    if isinstance(exc, ssl.SSLError):
        return "TLS failed"
    # Before the OSErrors: a receiver that closes without answering is RemoteDisconnected,
    # a ConnectionResetError too.
    if isinstance(exc, http.client.HTTPException):
        return f"HTTP error ({exc.__class__.__name__})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    name = errno.errorcode.get(exc.errno or 0) if isinstance(exc, OSError) else None
    return f"connection failed ({name})" if name else "connection failed"
