"""What one webhook attempt costs the sender: `python -m bench.senders [N]`.

The same signed-sized POST sent N times, one after the other, to a receiver in another
process on this machine (bench.receiver), through httpx (what the client library
uses) and through worker.senders (what the dispatcher uses); CPU time of this process
per request, and wall time per request.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from bench.arguments import counts
from worker.senders import Connections, Request

BODY = (
    b'{"type":"end-contact.ended","timestamp":"2026-11-29T23:00:00.000Z","data":{"id":'
    b'"1764457200000-0-0","type":"ended","phoneNumber":"+12015550123","at":'
    b'"2026-11-29T23:00:00.000Z","keyId":"key_0123456789abcdef","requestId":'
    b'"0123456789abcdef0123456789abcdef"}}'
)
HEADERS = {
    "content-type": "application/json",
    "webhook-id": "msg_wh_0123456789abcdef_1764457200000-0-0",
    "webhook-timestamp": "1764457200",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}


def measure(name: str, send: Callable[[], int], count: int) -> None:
    send()  # a connection made before the clock starts
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        assert send() == 200
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{name}: {cpu / count * 1e6:.0f} us CPU, {wall / count * 1e6:.0f} us wall a request")


def main() -> None:
    (count,) = counts(__doc__, [3000])
    with subprocess.Popen(
        [sys.executable, "-m", "bench.receiver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as receiver:
        assert receiver.stdout is not None
        assert receiver.stdin is not None
        url = receiver.stdout.readline().decode().strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with httpx.Client(trust_env=False, timeout=10) as client:
            measure(
                "httpx.Client",
                lambda: client.post(url, content=BODY, headers=HEADERS).status_code,
                count,
            )
        connections = Connections()
        headers = {**HEADERS, "host": f"127.0.0.1:{port}"}
        address = ipaddress.ip_address("127.0.0.1")
        request = Request("http", "127.0.0.1", port, address, "/hook", BODY, headers)
        measure("worker.senders", lambda: connections.post(request), count)
        connections.close()
        receiver.stdin.close()


if __name__ == "__main__":
    main()
