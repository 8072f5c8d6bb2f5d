"""A webhook receiver for tests/test_docker.py, run in a container on the compose network
(standard library only): it answers 204 to every POST and keeps what it got, which
GET /received returns as JSON ({"headers", "body"} per delivery, oldest first)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received: list[dict[str, object]] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode()
        with lock:
            received.append({"headers": dict(self.headers.items()), "body": body})
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        with lock:
            answer = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 9000), Handler).serve_forever()
