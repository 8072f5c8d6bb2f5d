"""A pooled connection the server reset is made anew, not a RuntimeError
(shared.connection): under uvloop, the web's loop, a write to a transport the loop
closed raises one, past every `except redis.RedisError` (a 500 when the broker was
killed with requests in flight, which resets their connections)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from shared.connection import async_client
from shared.settings import Settings

LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "uvloop": uvloop.run,
    "asyncio": asyncio.run,
}


class Peer:
    """A TCP peer that answers +OK to every command and, when told, resets every
    connection it holds (SO_LINGER 0: RST, as a killed server's kernel sends)."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while line := await reader.readline():
            if line.startswith(b"*"):
                writer.write(b"+OK\r\n")

    def reset(self) -> None:
        for writer in self.writers:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.writers.clear()


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("socket_timeout", [None, 5.0])
def test_a_connection_the_server_reset_is_made_anew(
    loop: str, socket_timeout: float | None
) -> None:
    async def scenario() -> None:
        peer = Peer()
        server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{port}"})
        client = async_client(settings, socket_timeout=socket_timeout)
        try:
            assert await client.set("k", "v")  # the pool now holds one connection
            (connection,) = client.connection_pool._available_connections
            peer.reset()
            deadline = time.monotonic() + 10
            # Until this loop has seen the reset.
            while not connection._writer.transport.is_closing():  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the reset was never seen"
                await asyncio.sleep(0.01)
            assert await client.set("k", "v")
        finally:
            await client.aclose()
            peer.reset()
            server.close()
            await server.wait_closed()

    LOOPS[loop](scenario())
