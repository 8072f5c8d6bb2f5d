"""uvicorn's server, taking every connection that waits at each turn of its event loop.

libuv (uvloop's, so uvicorn's) accepts one connection per turn of the loop ("unix:
don't accept() connections in a loop", libuv 1.45). A turn of the web's loop under load
takes about 20 ms, so a burst of new connections drains from the listen queue at about
45 a second: past saturation, the clients refused at once with the same Retry-After
come back together, and wait in that queue, unseen by the app and its deadlines, for
seconds (docs/overload.md has the measurements). Here the web accepts them itself, up
to ACCEPT_MOST a turn, and hands each to the loop as an accepted socket, uvicorn's
protocol and all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

log = logging.getLogger("endcontact.cli")

# Connections accepted in one turn of the loop, at most: enough for any burst seen
# (about 330 clients refused together at 512), few enough that the turn's other work
# (the requests' replies) waits one turn of accepting only.
ACCEPT_MOST = 256
# After accept() failed (the process out of descriptors, the kernel out of memory),
# how long before it is tried again, as asyncio's own loop does: at once would spin on
# a socket that stays readable. The connections wait in the listen queue meanwhile.
RETRY_AFTER = 1.0


class Acceptor:
    """Takes the connections waiting on a listening socket whenever it is readable."""

    def __init__(self, sock: socket.socket, protocol: Callable[[], asyncio.Protocol]) -> None:
        self._sock = sock
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task[object]] = set()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_MOST):
            try:
                connection, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # gone before it was taken: take the next
            except OSError as exc:
                log.warning("cannot accept connections for %.0f s: %s", RETRY_AFTER, exc)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(RETRY_AFTER, self._resume)
                return
            connection.setblocking(False)
            task = self._loop.create_task(
                self._loop.connect_accepted_socket(self._protocol, connection)
            )
            self._pending.add(task)
            task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The client left before its connection was set up: nothing to answer.
            log.debug("connection not set up: %r", task.exception())

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Accept no more (uvicorn closes the socket after this)."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())

    async def wait_closed(self) -> None:
        """Nothing to wait for: the connections are uvicorn's, which waits for them."""


class Server(uvicorn.Server):
    """uvicorn's Server, but the connections on `sockets` are accepted by an Acceptor
    (the module's docstring says why); everything else, its lifespan, its shutdown and
    its connections' protocol, is uvicorn's own. It notes the first signal that
    stopped it (`stopped_by`)."""

    stopped_by: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stopped_by is None:
            self.stopped_by = sig
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None, "the web always hands uvicorn its listening socket"
        # No sockets: uvicorn starts the app's lifespan and serves nothing of its own.
        await super().startup(sockets=[])
        if self.should_exit:
            return  # the lifespan failed (uvicorn before 0.31), or a signal came
        config, state, app_state = self.config, self.server_state, self.lifespan.state

        def protocol() -> asyncio.Protocol:
            # As uvicorn makes each connection's (its http_protocol_class is typed as
            # asyncio.Protocol, which takes no arguments).
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state=app_state
            )

        # uvicorn stops accepting at shutdown by closing its servers, then the sockets:
        # an Acceptor has the two methods of asyncio's Server it calls (close and
        # wait_closed).
        self.servers = [Acceptor(sock, protocol) for sock in sockets]  # type: ignore[misc]
