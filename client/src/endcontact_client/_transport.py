"""A lean HTTP/1.1 transport for plain http:// on asyncio, for AsyncClient.

httpx's default transport (httpcore over anyio, h11) spends most of the client's CPU
on each small request: cancel scopes, lock and library look-ups, h11's validation.
With the importer sharing two cores with the service it feeds, that CPU is taken
from the service. This one does what the client needs and no more: keep-alive
connections, a request written in one piece, an answer read whole (Content-Length,
chunked, or up to the close). Anything else (https, a proxy from the environment)
keeps httpx's transport: AsyncClient chooses (`lean_transport_for`).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterable

import httpx

# What one answer's head may take: far more than the service's, small enough that a
# wrong server cannot fill the memory.
MAX_HEAD = 64 * 1024
_PROXY_SCHEMES = ("http", "all")


def lean_transport_for(url: str, max_connections: int) -> LeanTransport | None:
    """The lean transport for a client of `url`, or None where httpx's own is needed:
    https (TLS), or a proxy set in the environment (httpx honours those)."""
    if not url.lower().startswith("http://"):
        return None
    proxies = urllib.request.getproxies()
    if any(scheme in proxies for scheme in _PROXY_SCHEMES):
        return None
    return LeanTransport(max_connections)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: bytes in a buffer, a waiter woken on each arrival."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def usable(self) -> bool:
        """Idle and still open (a server closes idle connections after a while)."""
        return (
            not self.closed
            and not self.buffer
            and self.transport is not None
            and (not self.transport.is_closing())
        )

    async def more(self, timeout: float | None) -> None:
        """Until more bytes came, or the connection ended (then ReadError)."""
        if self.closed:
            raise httpx.ReadError(_ended(self.error))
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the answer") from None
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _ended(error: BaseException | None) -> str:
    return f"connection closed: {error}" if error else "connection closed by the server"


class LeanTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 without TLS, at most `max_connections` kept idle. The client
    above it (its semaphore) bounds the requests in flight."""

    def __init__(self, max_connections: int) -> None:
        self._max_idle = max_connections
        self._idle: list[_Connection] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        connection = self._take()
        if connection is None:
            connection = await self._connect(request.url, timeouts.get("connect"))
        try:
            response, reusable = await self._exchange(connection, request, timeouts.get("read"))
        except BaseException:
            # Cancelled or failed half-way: what is left on it is unknown.
            connection.close()
            raise
        if reusable and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return response

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def _take(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    @staticmethod
    async def _connect(url: httpx.URL, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(_Connection, url.host, url.port or 80)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {url.host} in time") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return connection

    async def _exchange(
        self, connection: _Connection, request: httpx.Request, timeout: float | None
    ) -> tuple[httpx.Response, bool]:
        assert connection.transport is not None
        body = request.content  # the client sends bodies it has whole
        connection.transport.write(_head(request) + body)
        status, reason, version, headers, length, chunked = await _read_head(connection, timeout)
        if status < 200:
            raise httpx.RemoteProtocolError(f"unexpected informational answer {status}")
        if request.method == "HEAD" or status in (204, 304):
            content = b""
            reusable = True
        elif chunked:
            content = await _read_chunked(connection, timeout)
            reusable = True
        elif length is not None:
            content = await _read_exactly(connection, length, timeout)
            reusable = True
        else:
            content = await _read_to_close(connection, timeout)
            reusable = False
        reusable = reusable and version == b"HTTP/1.1" and not _closes(headers)
        response = httpx.Response(
            status,
            headers=headers,
            # A stream, as httpx's own transports give it: content= would add headers.
            stream=httpx.ByteStream(content),
            extensions={"http_version": version, "reason_phrase": reason},
        )
        return response, reusable


def _head(request: httpx.Request) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _closes(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"connection" and b"close" in value.lower() for name, value in headers
    )


async def _read_head(
    connection: _Connection, timeout: float | None
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]], int | None, bool]:
    """Status, reason, version, headers, Content-Length (None without), chunked."""
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise httpx.RemoteProtocolError("the answer's head is too long")
        if connection.closed:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        await connection.more(timeout)
    head = bytes(buffer[:end])
    del buffer[: end + 4]
    status_line, *lines = head.split(b"\r\n")
    try:
        version, code, *rest = status_line.split(b" ", 2)
        status = int(code)
    except ValueError:
        raise httpx.RemoteProtocolError(f"not an HTTP status line: {status_line!r}") from None
    if not version.startswith(b"HTTP/1."):
        raise httpx.RemoteProtocolError(f"not an HTTP/1 answer: {status_line!r}")
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise httpx.RemoteProtocolError(f"not a header line: {line!r}")
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise httpx.RemoteProtocolError(f"bad Content-Length: {value!r}") from None
        elif lowered == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
    return status, rest[0] if rest else b"", version, headers, length, chunked


async def _read_exactly(connection: _Connection, length: int, timeout: float | None) -> bytes:
    buffer = connection.buffer
    while len(buffer) < length:
        try:
            await connection.more(timeout)
        except httpx.ReadError:
            raise httpx.RemoteProtocolError("the answer ended before its Content-Length") from None
    content = bytes(buffer[:length])
    del buffer[:length]
    return content


async def _read_line(connection: _Connection, timeout: float | None) -> bytes:
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise httpx.RemoteProtocolError("a chunk's line is too long")
        try:
            await connection.more(timeout)
        except httpx.ReadError:
            raise httpx.RemoteProtocolError("the answer ended inside a chunk") from None
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


async def _read_chunked(connection: _Connection, timeout: float | None) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await _read_line(connection, timeout)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size: {size_line!r}") from None
        if size == 0:
            while await _read_line(connection, timeout):  # trailers, then the blank line
                pass
            return b"".join(parts)
        parts.append((await _read_exactly(connection, size + 2, timeout))[:-2])


async def _read_to_close(connection: _Connection, timeout: float | None) -> bytes:
    while not connection.closed:
        await connection.more(timeout)
    content = bytes(connection.buffer)
    connection.buffer.clear()
    return content
