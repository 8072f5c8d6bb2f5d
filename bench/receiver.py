"""A webhook receiver on 127.0.0.1, in threads of this process, for the tests and the
benchmark: it records every request and answers as told (a status, or hang)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() when it arrived


# What to answer the n-th request (from 0): a status, or None to hang until closed.
Answer = Callable[[int, Received], int | None]


def always(status: int) -> Answer:
    return lambda n, received: status


def statuses(*first: int, then: int = 200) -> Answer:
    """`first` in turn, then `then` for ever."""
    return lambda n, received: first[n] if n < len(first) else then


def hang(n: int, received: Received) -> int | None:
    return None


class Receiver:
    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or always(200)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
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

    def _arrived(self, received: Received) -> int | None:
        with self._lock:
            n = len(self._received)
            self._received.append(received)
        return self.answer(n, received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._arrived(Received(headers, body, time.monotonic()))
                if status is None:
                    receiver._closing.wait()
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

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
