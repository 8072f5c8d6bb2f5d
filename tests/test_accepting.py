"""The web takes every connection waiting on its socket at one turn of its event loop
(cli.accepting), not one a turn as libuv does under uvloop: a herd of clients that
come back together is answered by the app and its deadlines, not left in the listen
queue. Counted in turns of the loop, not timed."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
import uvloop

from cli.accepting import ACCEPT_MOST, Server
from cli.preflight import listen

CLIENTS = 100
# Turns of the loop allowed: one to accept, the next ones for each connection's task to
# set it up (uvloop calls connection_made a turn later). libuv would take one a turn.
TURNS = 10


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def taken_in_turns(clients: int, turns: int) -> tuple[int, list[bytes]]:
    """How many of `clients` connections, made while the loop was held, the web has
    taken after `turns` turns of its loop; then each one's answer to a request."""
    server = Server(uvicorn.Config(app, lifespan="off", log_config=None))
    listener = listen("127.0.0.1", 0)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0)
    port = listener.getsockname()[1]
    # Blocking connects: the loop does not turn meanwhile, so every connection waits in
    # the listen queue, its handshake done by the kernel.
    waiting = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
    try:
        for _ in range(turns):
            await asyncio.sleep(0)
        taken = len(server.server_state.connections)
        answers = []
        for client in waiting:
            client.sendall(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        for client in waiting:
            loop = asyncio.get_running_loop()
            answers.append(await asyncio.wait_for(loop.sock_recv(client, 1024), 10))
    finally:
        for client in waiting:
            client.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
    return taken, answers


def test_every_waiting_connection_is_taken_in_a_few_turns() -> None:
    result: list[tuple[int, list[bytes]]] = []

    async def main() -> None:
        result.append(await taken_in_turns(CLIENTS, TURNS))

    uvloop.run(main())
    taken, answers = result[0]
    assert taken == CLIENTS
    assert all(answer.startswith(b"HTTP/1.1 204 ") for answer in answers)


def test_past_the_most_a_turn_the_rest_are_taken_at_the_next() -> None:
    result: list[tuple[int, list[bytes]]] = []

    async def main() -> None:
        result.append(await taken_in_turns(ACCEPT_MOST + 10, TURNS))

    uvloop.run(main())
    taken, answers = result[0]
    assert taken == ACCEPT_MOST + 10
    assert len(answers) == ACCEPT_MOST + 10
