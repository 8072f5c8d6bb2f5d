"""Embedded mode: `endcontact run` with REDIS_URL unset starts a store and a broker in
its data directory; every other command, and Celery's own, finds them there. One `run`
serves the module; the last test restarts it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from shared.apikeys import Scope
from shared.broker import WORKERS
from shared.embedded import (
    BROKER_DIR,
    PASSWORD_FILE,
    PORT_FILE,
    free_port,
    local_url,
    running_url,
    start_server,
    stop_server,
)
from shared.keyspace import ended_key
from shared.tasks import RESULT_KEY_PREFIX
from tests.helpers import TLS, URL
from tests.processes import http_ready, spawn, start_web, stop, wait_for, worker_ready
from tests.test_cli import endcontact
from tests.test_operators import run

NUMBER = "+15095551234"


class Run:
    """`endcontact run` in a data directory of its own, and a key made beside it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "var"
        self.env = {"ENDCONTACT_DATA_DIR": str(self.data)}
        self.log = directory / "run.log"
        self.base = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        port = free_port()
        self.process = spawn(["run", f"--port={port}", "--concurrency=1"], self.env, self.log)
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ready(self.base), self.process, self.log, timeout=60)

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Ctrl-C, as at a terminal: it stops the web, the worker and both servers."""
        assert self.process is not None
        return stop(self.process, sig)

    def password(self, server_dir: Path) -> str:
        return (server_dir / PASSWORD_FILE).read_text().strip()

    @property
    def server_dirs(self) -> tuple[Path, Path]:
        return self.data, self.data / BROKER_DIR


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    service = Run(tmp_path_factory.mktemp("embedded"))
    service.start()
    # `keys create` beside a running `run` uses the same embedded server.
    created = endcontact(
        "keys", "create", "--company", "acme", "--campaign", "spring", env=service.env
    )
    assert created.returncode == 0, created.stderr
    service.headers = {"x-api-key": created.stdout.splitlines()[-1]}
    response = httpx.post(
        f"{service.base}{URL}",
        json={"phoneNumberList": ["(509) 555-1234"]},
        headers=service.headers,
        verify=TLS,
    )
    assert response.json() == {"success": [NUMBER], "failure": []}
    yield service
    service.stop()


def test_the_two_servers_split_as_configured(running: Run) -> None:
    """The store fsyncs every write; the broker keeps nothing on disk; each holds its
    own part (one request made: its mark on the store, its result on the broker)."""
    store_url, broker_url = (running_url(where) for where in running.server_dirs)
    assert store_url is not None
    assert broker_url is not None
    assert store_url != broker_url
    store = redis.Redis.from_url(store_url, decode_responses=True)
    broker = redis.Redis.from_url(broker_url, decode_responses=True)
    assert store.config_get("appendonly") == {"appendonly": "yes"}
    assert store.config_get("appendfsync") == {"appendfsync": "always"}
    assert broker.config_get("appendonly") == {"appendonly": "no"}
    assert broker.config_get("save") == {"save": ""}
    marks = ended_key(Scope("acme", "spring"))
    assert (store.hlen(marks), broker.exists(marks)) == (1, 0)
    assert broker.keys(f"{RESULT_KEY_PREFIX}*")
    assert not store.keys(f"{RESULT_KEY_PREFIX}*")
    assert broker.zcard(WORKERS) == 1
    assert not store.exists(WORKERS)
    # The CLI beside a running `run` finds both.
    assert endcontact("check", "worker", env=running.env).returncode == 0
    store.close()
    broker.close()


@pytest.mark.parametrize("password", [None, "a-guess"])
def test_the_servers_refuse_a_client_without_their_password(
    running: Run, password: str | None
) -> None:
    for where in running.server_dirs:
        port = int((where / PORT_FILE).read_text())
        with redis.Redis.from_url(local_url(port, password)) as stranger:
            with pytest.raises(redis.AuthenticationError):
                stranger.hgetall(ended_key(Scope("acme", "spring")))
            with pytest.raises(redis.AuthenticationError):
                stranger.set("planted", "1")


def test_the_data_directory_is_its_owners_alone(running: Run) -> None:
    modes = {
        path: stat.S_IMODE(os.lstat(path).st_mode)
        for directory, _, files in os.walk(running.data)
        for path in [directory, *(os.path.join(directory, name) for name in files)]
    }
    assert {path: oct(mode) for path, mode in modes.items() if mode & 0o077} == {}
    assert modes[str(running.data)] == 0o700
    passwords = []
    for where in running.server_dirs:
        assert modes[str(where / PASSWORD_FILE)] == 0o600
        passwords.append(running.password(where))
    assert len(passwords[0]) >= 43  # secrets.token_urlsafe(32)
    assert passwords[0] != passwords[1]
    # Not on any command line (ps), nor in any log line (the worker's banner included).
    for secret in passwords:
        assert [line for line in _command_lines() if secret in line] == []
        assert secret not in running.log.read_text()
        for log in running.data.rglob("valkey.log"):
            assert secret not in log.read_text()


def _command_lines() -> list[str]:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone since the listing
            continue
    assert any("valkey-server" in line for line in lines)
    return lines


def test_commands_started_beside_run_find_the_servers_and_their_password(running: Run) -> None:
    listed = endcontact("keys", "list", env=running.env)
    assert listed.returncode == 0, listed.stderr
    assert "\tacme\tspring\t" in listed.stdout
    exported = endcontact("export", "--company", "acme", "--campaign", "spring", env=running.env)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines()[1].startswith(f"{NUMBER},")
    hooks = endcontact(
        "webhooks", "list", "--company", "acme", "--campaign", "spring", env=running.env
    )
    assert hooks.returncode == 0, hooks.stderr
    assert hooks.stdout.splitlines()[0].startswith("id\turl\t")

    log = running.directory / "worker.log"
    worker = spawn(["worker", "--concurrency=1"], running.env, log)
    web = None
    try:
        wait_for(lambda: worker_ready(log), worker, log)
        base, web = start_web(running.env, running.directory / "web.log")
        response = httpx.post(
            f"{base}{URL}",
            json={"phoneNumberList": ["(509) 555-1235"]},
            headers=running.headers,
            verify=TLS,
        )
        assert response.json() == {"success": ["+15095551235"], "failure": []}
        celery = run(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "inspect", "ping"],
            running.env,
        )
        assert celery.returncode == 0, celery.stderr
        assert "pong" in celery.stdout
    finally:
        for process in (web, worker):
            if process is not None:
                stop(process)
    for where in running.server_dirs:
        secret = running.password(where)
        for name in ("worker.log", "web.log"):
            assert secret not in (running.directory / name).read_text()


@pytest.mark.parametrize(
    ("password", "said"),
    [
        (None, "without the password in"),  # one started before the servers had one
        ("someone-elses", "refuses the password in"),
    ],
)
def test_a_server_at_the_port_that_lacks_the_password_is_not_used(
    tmp_path: Path, password: str | None, said: str
) -> None:
    """A data directory as an older version left it (open to all), with a server at
    its port file's address that is not ours: the command says so instead of using it."""
    data = tmp_path / "var"
    port = free_port()
    server = start_server(data, port, password=password)
    try:
        # Not on its command line, which any local user sees (ps).
        assert password is None or password not in str(server.args)
        (data / PORT_FILE).write_text(f"{port}\n")
        for path in (data, data / PORT_FILE):
            path.chmod(0o755 if path.is_dir() else 0o644)
        listed = endcontact("keys", "list", env={"ENDCONTACT_DATA_DIR": str(data)})
        assert listed.returncode == 2, listed.stdout
        assert said in listed.stderr
        assert f"127.0.0.1:{port}" in listed.stderr
        assert "Traceback" not in listed.stderr
        assert f"{data} was readable by others" in listed.stderr
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / PORT_FILE).stat().st_mode) == 0o600
    finally:
        stop_server(server)


def test_a_command_alone_starts_the_store_with_a_password_and_says_only_its_own(
    tmp_path: Path,
) -> None:
    data = tmp_path / "var"
    created = endcontact(
        "keys",
        "create",
        "--company",
        "a",
        "--campaign",
        "b",
        env={"ENDCONTACT_DATA_DIR": str(data)},
    )
    assert created.returncode == 0, created.stderr
    assert (created.stderr, len(created.stdout.splitlines())) == ("", 3)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / PASSWORD_FILE).stat().st_mode) == 0o600
    assert running_url(data) is None  # stopped with the command


def test_a_second_run_on_the_same_port_starts_and_joins_nothing(running: Run) -> None:
    """`./scripts/start` twice: the second says the port is taken, and neither starts
    nor joins anything (it used to add its workers to the first's servers, and hang)."""
    port = running.base.rsplit(":", 1)[1]
    store_url, broker_url = (running_url(where) for where in running.server_dirs)
    assert broker_url is not None
    taken = (
        f"endcontact: port {port} on 127.0.0.1 is taken (another endcontact run?): "
        f"stop that, or choose another with --port\n"
    )
    for argv in (["run", f"--port={port}", "--concurrency=1"], ["web", f"--port={port}"]):
        result = endcontact(*argv, env=running.env)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", taken)
    assert [running_url(where) for where in running.server_dirs] == [store_url, broker_url]
    with redis.Redis.from_url(broker_url) as broker:
        assert broker.zcard(WORKERS) == 1
    assert running.process is not None
    assert running.process.poll() is None


# Last in the module: it stops and restarts the module's `run`.
@pytest.mark.timeout(180)
def test_a_restart_keeps_the_password_and_the_data(running: Run) -> None:
    passwords = [running.password(where) for where in running.server_dirs]
    lookup = f"{running.base}{URL}/{NUMBER}"
    ended_at = httpx.get(lookup, headers=running.headers, verify=TLS).json()["endedAt"]

    # Stopped by a signal, its status says which, as a shell reports one it killed.
    assert running.stop(signal.SIGTERM) == 143
    assert [running_url(where) for where in running.server_dirs] == [None, None]
    assert "endcontact is running on" in running.log.read_text()

    running.start()
    assert [running.password(where) for where in running.server_dirs] == passwords
    found = httpx.get(f"{running.base}{URL}/{NUMBER}", headers=running.headers, verify=TLS)
    assert found.status_code == 200
    assert found.json()["endedAt"] == ended_at
    assert running.stop() == 130
