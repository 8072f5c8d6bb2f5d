"""A webhook receiver on 127.0.0.1, in threads of this process, for the tests and the
benchmark: it records every request and answers as told (a status, hang, or trickle),
and counts the requests of one webhook-id it has open at once."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() when it arrived


@dataclass(frozen=True)
class Trickle:
    """An answer that never ends: a 200's head, one byte every `every` seconds."""

    every: float = 2.0


# What to answer the n-th request (from 0): a status, None to hang until closed, or a
# Trickle. A request that hangs or trickles ends when the receiver closes or the sender
# does (it is then no longer open).
Answer = Callable[[int, Received], int | Trickle | None]


def always(status: int) -> Answer:
    return lambda n, received: status


def statuses(*first: int, then: int = 200) -> Answer:
    """`first` in turn, then `then` for ever."""
    return lambda n, received: first[n] if n < len(first) else then


def hang(n: int, received: Received) -> int | None:
    return None


def trickle(n: int, received: Received) -> Trickle:
    return Trickle()


def _trickled() -> Iterator[bytes]:
    yield from (bytes([b]) for b in b"HTTP/1.1 200 OK\r\nx-trickle: ")
    while True:
        yield b"."


class _Server(ThreadingHTTPServer):
    # The listen queue: at socketserver's 5, a burst of connections from the worker's
    # senders overflowed it, and some failed ("connection failed"), as no real receiver's
    # would.
    request_queue_size = 1024


class Receiver:
    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or always(200)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._open: Counter[str] = Counter()
        self._most = 0
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def most_at_once(self) -> int:
        """The most requests of one webhook-id that were open at the same time."""
        with self._lock:
            return self._most

    def close(self) -> None:
        self._closing.set()  # hanging requests end
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _arrived(self, received: Received) -> int | Trickle | None:
        with self._lock:
            n = len(self._received)
            self._received.append(received)
            key = received.headers.get("webhook-id", "")
            self._open[key] += 1
            self._most = max(self._most, self._open[key])
        return self.answer(n, received)

    def _ended(self, received: Received) -> None:
        with self._lock:
            self._open[received.headers.get("webhook-id", "")] -= 1

    def _hold(self, connection: socket.socket, trickle: Trickle | None) -> None:
        """Until this receiver closes or the sender does (found out at once: the
        socket turns readable), sending a byte every `trickle.every` seconds."""
        wait = trickle.every if trickle is not None else 0.1
        sending = _trickled()
        while not self._closing.is_set():
            try:
                readable, _, _ = select.select([connection], [], [], wait)
                if readable and not connection.recv(1, socket.MSG_PEEK):
                    return
                if trickle is not None:
                    connection.sendall(next(sending))
            except OSError:
                return

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                received = Received(headers, body, time.monotonic())
                status = receiver._arrived(received)
                try:
                    if status is None or isinstance(status, Trickle):
                        receiver._hold(self.connection, status)
                        self.close_connection = True
                        return
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                finally:
                    receiver._ended(received)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the tests look at what was received, not at a log

        return Handler


def serve() -> None:
    """`python -m bench.receiver [hang]`: a receiver in a process of its own (so that
    what it costs falls on no one else's GIL); prints its URL, runs until stdin closes."""
    import sys

    with Receiver(hang if sys.argv[1:] == ["hang"] else always(200)) as receiver:
        print(receiver.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    serve()
