"""What `run` and `web` make sure of before they start or join anything: the port is
theirs (bound here, then handed to uvicorn) and, for `run`, the servers answer."""

from __future__ import annotations

import errno
import socket

import redis

from shared.connection import sync_client
from shared.settings import Settings
from shared.waiting import servers


class Unavailable(RuntimeError):
    """What the command needs is not there; the message says what, in one line."""


# uvicorn's default: connections wait there until the web accepts them.
BACKLOG = 2048


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, as uvicorn makes one (SO_REUSEADDR: a port whose
    last connections linger in TIME_WAIT is free). Taking the port is the test: a check
    that let go of it could lose it to another process before the web took it. And
    listening, not only bound: on Linux two sockets with SO_REUSEADDR may both be bound
    to a port that neither listens on yet, as `run`'s would be while its servers start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(
                f"port {port} on {host} is taken (another endcontact run?): stop that, "
                f"or choose another with --port"
            ) from None
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def check_servers(settings: Settings) -> None:
    """The store, and the broker when it is another server, answer; Unavailable names
    the first that does not, by its URL without the password."""
    for server in servers(settings):
        client = sync_client(server.settings, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            raise Unavailable(f"{server} does not answer: {exc}") from None
        finally:
            client.close()
