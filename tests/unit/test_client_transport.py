"""The client's lean HTTP/1.1 transport against a real local server that answers as
each test scripts it: bodies by length, chunked and to the close, keep-alive kept and
given up, and httpx's errors for what goes wrong (which the client retries)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from endcontact_client._transport import LeanTransport, lean_transport_for

# What the server does with the n-th request (from 0): bytes to write, then close
# the connection when the flag says so; None: close without a word; "hang": nothing.
Reply = Callable[[int, bytes], tuple[bytes, bool] | str | None]
DEADLINE = 10.0


def ok(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"content-type: application/json", *extra]
    head.append(b"content-length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class Server:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                n = len(self.requests)
                self.requests.append(request)
                answer = self.reply(n, request)
                if answer == "hang":
                    await asyncio.Event().wait()
                if answer is None or isinstance(answer, str):
                    return
                data, close = answer
                writer.write(data)
                await writer.drain()
                if close:
                    return
        finally:
            writer.close()


def run(reply: Reply, test: Callable[[Server, httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Server(reply) as server:
            transport = LeanTransport(4)
            async with httpx.AsyncClient(
                base_url=server.url, transport=transport, timeout=DEADLINE
            ) as client:
                return await test(server, client)

    return asyncio.run(main())


def test_answers_by_length_on_one_kept_connection() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> list[Any]:
        first = await client.post("/a?x=1", json={"n": 1}, headers={"x-api-key": "k"})
        second = await client.get("/b")
        return [first.status_code, first.json(), second.json(), server.connections]

    replies = lambda n, request: (ok(b'{"n":%d}' % n), False)  # noqa: E731
    assert run(replies, test) == [200, {"n": 0}, {"n": 1}, 1]


def test_the_request_goes_as_httpx_built_it() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> bytes:
        await client.post("/p/q%20r?s=t", json={"a": "é"}, headers={"x-api-key": "k"})
        return server.requests[0]

    request = run(lambda n, r: (ok(b"{}"), False), test)
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /p/q%20r?s=t HTTP/1.1"
    assert b"x-api-key: k" in lines
    assert b"content-type: application/json" in [line.lower() for line in lines]
    assert body == '{"a":"é"}'.encode()


def test_a_chunked_answer_with_trailers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\n[1,2\r\n3;ext=1\r\n,3]\r\n0\r\ntrailer: x\r\n\r\n"
    )

    async def test(server: Server, client: httpx.AsyncClient) -> list[Any]:
        first = await client.get("/")
        second = await client.get("/")
        return [first.json(), second.json(), server.connections]

    assert run(lambda n, r: (chunked, False), test) == [[1, 2, 3], [1, 2, 3], 1]


def test_an_answer_without_length_ends_at_the_close_and_is_not_reused() -> None:
    bare = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"

    async def test(server: Server, client: httpx.AsyncClient) -> list[Any]:
        first = await client.get("/")
        second = await client.get("/")
        return [first.text, second.text, server.connections]

    assert run(lambda n, r: (bare, True), test) == ["all of it", "all of it", 2]


def test_connection_close_and_http_1_0_are_not_reused() -> None:
    answers = [
        ok(b"1", b"connection: close"),
        ok(b"2").replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        ok(b"3"),
    ]

    async def test(server: Server, client: httpx.AsyncClient) -> list[Any]:
        texts = [(await client.get("/")).text for _ in range(3)]
        return [texts, server.connections]

    assert run(lambda n, r: (answers[n], n < 2), test) == [["1", "2", "3"], 3]


def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> list[Any]:
        first = await client.get("/")
        transport = client._transport
        assert isinstance(transport, LeanTransport)
        # The server closed it after answering: the next request must not go on it.
        async with asyncio.timeout(DEADLINE):
            while not all(c.closed for c in transport._idle):
                await asyncio.sleep(0.01)
        second = await client.get("/")
        return [first.text, second.text, server.connections]

    assert run(lambda n, r: (ok(b"x"), True), test) == ["x", "x", 2]


def test_no_answer_is_a_remote_protocol_error() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> None:
        await client.get("/")

    with pytest.raises(httpx.RemoteProtocolError):
        run(lambda n, r: None, test)


def test_a_body_cut_short_is_a_remote_protocol_error() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> None:
        await client.get("/")

    with pytest.raises(httpx.RemoteProtocolError):
        run(lambda n, r: (ok(b"0123456789")[:-3], True), test)


def test_a_garbled_answer_is_a_remote_protocol_error() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> None:
        await client.get("/")

    with pytest.raises(httpx.RemoteProtocolError):
        run(lambda n, r: (b"<html>nope</html>\r\n\r\n", True), test)


def test_silence_past_the_read_timeout_is_a_read_timeout() -> None:
    async def main() -> None:
        async with (
            Server(lambda n, r: "hang") as server,
            httpx.AsyncClient(
                base_url=server.url, transport=LeanTransport(1), timeout=0.2
            ) as client,
        ):
            await client.get("/")

    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(main())


def test_nobody_listening_is_a_connect_error() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with httpx.AsyncClient(transport=LeanTransport(1)) as client:
            await client.get(f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(main())


def test_a_cancelled_request_leaves_no_connection_to_reuse() -> None:
    async def test(server: Server, client: httpx.AsyncClient) -> list[Any]:
        hung = asyncio.ensure_future(client.get("/"))
        async with asyncio.timeout(DEADLINE):
            while not server.requests:
                await asyncio.sleep(0.01)
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung
        second = await client.get("/")
        return [second.text, server.connections]

    replies = lambda n, r: "hang" if n == 0 else (ok(b"y"), False)  # noqa: E731
    assert run(replies, test) == ["y", 2]


def test_only_plain_http_without_a_proxy_gets_the_lean_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(lean_transport_for("http://127.0.0.1:8000", 4), LeanTransport)
    assert lean_transport_for("https://api.example.com", 4) is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert lean_transport_for("http://127.0.0.1:8000", 4) is None
