"""compose.yaml for real: the image built, `docker compose up --wait` with three web and two
worker replicas, and what an operator does to it, through the published port and the
`docker compose` commands (docs/operating.md, "docker compose").

Needs a Docker engine with compose v2 and the base images: `scripts/docker-host up` makes
them where it can (.ci/run does). Without an engine these tests are skipped, unless
ENDCONTACT_TEST_DOCKER=required (CI), where that is a failure.

The compose file is the project's own, unchanged; tests/compose.test.yaml only adds what a
test needs (a webhook receiver on the compose network, and the development-only setting
that lets webhooks go to it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from shared.embedded import free_port
from tests.helpers import URL, assert_problem, lookup_path, numbers, post_numbers, wait_until

ROOT = Path(__file__).parent.parent
# Its full path, as every command the tests start.
DOCKER = shutil.which("docker") or "/usr/bin/docker"
FILES = ("compose.yaml", "tests/compose.test.yaml")
# Cold, the image build is most of this (about 50 s here); warm, about 20 s.
UP_TIMEOUT = 300
pytestmark = pytest.mark.timeout(600)


def _engine() -> str | None:
    """Why Docker cannot be used here, or None if it can."""
    try:
        info = subprocess.run([DOCKER, "info"], capture_output=True, timeout=20)
        if info.returncode != 0:
            return "no Docker engine answers (scripts/docker-host up starts one)"
        compose = subprocess.run([DOCKER, "compose", "version"], capture_output=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker: {exc}"
    if compose.returncode != 0:
        return "no docker compose v2 (scripts/docker-host up installs it)"
    return None


@dataclass
class Compose:
    """`docker compose` for one project of the test's, and its published port."""

    project: str
    env: dict[str, str]
    base: str
    files: tuple[str, ...] = FILES

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [arg for name in self.files for arg in ("-f", name)]
        done = subprocess.run(
            # No escape codes in what is parsed (ps, config); logs are read per container
            # (logs()), where compose's own prefixing still wrote some.
            [DOCKER, "compose", "--ansi", "never", "-p", self.project, *files, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
            )
        return done

    def up(self) -> None:
        self(
            "up", "--detach", "--build", "--wait", "--scale", "web=3", "--scale", "worker=2",
            timeout=UP_TIMEOUT,
        )  # fmt: skip

    def containers(self, service: str) -> list[str]:
        return self("ps", "--quiet", service).stdout.split()

    @staticmethod
    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A plain `docker` command, for one container (exec, inspect, stop, start)."""
        return subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, check=check, timeout=60
        )

    def inspect(self, container: str, template: str) -> str:
        return self.docker("inspect", "--format", template, container).stdout.strip()

    def logs(self, service: str) -> dict[str, str]:
        """Each of the service's containers' own log, by container: no prefix to parse
        (compose 2.26 wrote "\x1b[2K" before some prefixed lines, even with --ansi
        never, so one replica read as two)."""
        logs = {}
        for container in self.containers(service):
            done = self.docker("logs", container)
            logs[container] = done.stdout + done.stderr
        return logs

    def healthy(self, service: str, count: int) -> bool:
        ids = self.containers(service)
        states = [self.inspect(c, "{{.State.Health.Status}}") for c in ids]
        return len(ids) == count and all(state == "healthy" for state in states)

    def create_key(self) -> str:
        """A key for a new campaign, made as the README says; the secret is the last line."""
        campaign = f"campaign-{uuid.uuid4().hex[:8]}"
        made = self(
            "run", "--rm", "-T", "web",
            "endcontact", "keys", "create", "--company", "acme", "--campaign", campaign,
        )  # fmt: skip
        return made.stdout.strip().splitlines()[-1]

    def serves(self, key: str) -> bool:
        """A request through the proxy is a 201 with every number a success."""
        try:
            answer = post_numbers(self.base, {"x-api-key": key}, numbers(9000, 5))
        except httpx.HTTPError:
            return False
        return answer.status_code == 201 and answer.json()["failure"] == []


def needs_engine() -> None:
    """Skip where no engine answers; fail instead in CI (ENDCONTACT_TEST_DOCKER=required)."""
    reason = _engine()
    if reason is not None:
        if os.environ.get("ENDCONTACT_TEST_DOCKER") == "required":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    needs_engine()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_PASSWORD": secrets.token_hex(16),
        # Published on loopback only: nothing of the test is reachable from elsewhere.
        "ENDCONTACT_PORT": f"127.0.0.1:{port}",
        # The load below is a few clients sending as fast as they are answered, far past
        # one key's 600 a minute; the rate limit has tests of its own.
        "ENDCONTACT_RATE_LIMIT": "0",
    }
    stack = Compose(f"endcontact-test-{os.getpid()}", env, f"http://127.0.0.1:{port}")
    try:
        stack.up()
        yield stack
    finally:
        stack("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


@pytest.fixture(scope="module")
def key(compose: Compose) -> str:
    return compose.create_key()


@dataclass
class Load:
    """Clients sending end-contact requests through the proxy until stopped; every
    answer kept, so a test can say how many were sent and which failed."""

    base: str
    key: str
    clients: int = 4
    answers: list[tuple[int, list[str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _send(self, first: int) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    answer = post_numbers(http, {"x-api-key": self.key}, numbers(first, 10))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                body = answer.json() if answer.status_code == 201 else {}
                self.answers.append((answer.status_code, body.get("failure", [])))

    def __enter__(self) -> Load:
        for index in range(self.clients):
            thread = threading.Thread(target=self._send, args=(100 + index * 10,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def sent(self) -> int:
        return len(self.answers) + len(self.errors)

    def wait_for_more(self, count: int) -> None:
        target = self.sent() + count
        wait_until(lambda: self.sent() >= target, 60, f"{count} more requests answered")

    def not_201(self) -> list[object]:
        return [*self.errors, *(status for status, _ in self.answers if status != 201)]

    def failed_numbers(self) -> int:
        return sum(len(failure) for _, failure in self.answers)


def test_the_contract_through_the_proxy(compose: Compose, key: str) -> None:
    headers = {"x-api-key": key}
    with httpx.Client(base_url=compose.base, timeout=30) as http:
        ended = post_numbers(http, headers, ["(509) 555-0101", "+1 202 555 0143", "5095550102"])
        assert ended.status_code == 201
        assert ended.json() == {
            "success": ["+15095550101", "+12025550143", "+15095550102"],
            "failure": [],
        }
        assert_problem(post_numbers(http, headers, ["(509) 555-0103", "not a number"]), 400)
        assert http.get(lookup_path("(509) 555-0103"), headers=headers).status_code == 404
        assert post_numbers(http, {}, ["(509) 555-0104"]).status_code == 401
        assert (
            post_numbers(http, {"x-api-key": "ec_" + "x" * 43}, ["5095550104"]).status_code == 401
        )

        found = http.get(lookup_path("(509) 555-0101"), headers=headers)
        assert found.status_code == 200
        assert found.json()["phoneNumber"] == "+15095550101"
        checked = http.post(
            f"{URL}/check",
            json={"phoneNumberList": ["5095550101", "5095550109"]},
            headers=headers,
        )
        assert checked.status_code == 200
        assert [e["phoneNumber"] for e in checked.json()["ended"]] == ["+15095550101"]
        assert checked.json()["notEnded"] == ["+15095550109"]
        feed = http.get(f"{URL}/events", headers=headers)
        assert feed.status_code == 200
        # In the order the workers wrote them, which is not always the request's.
        assert sorted(e["phoneNumber"] for e in feed.json()["events"]) == [
            "+12025550143",
            "+15095550101",
            "+15095550102",
        ]


def test_requests_are_spread_over_the_three_web_replicas(compose: Compose, key: str) -> None:
    ids = [uuid.uuid4().hex for _ in range(30)]
    for rid in ids:
        # A connection per request, as separate clients would: the proxy picks a replica.
        answer = httpx.post(
            f"{compose.base}{URL}",
            json={"phoneNumberList": ["5095550110"]},
            headers={"x-api-key": key, "x-request-id": rid},
            timeout=30,
        )
        assert answer.status_code == 201
        assert answer.headers["x-request-id"] == rid
    served_by: dict[str, set[str]] = {}
    for replica, log in compose.logs("web").items():
        for line in log.splitlines():
            if line.startswith("{"):
                rid = json.loads(line).get("request_id")
                if rid in ids:
                    served_by.setdefault(replica, set()).add(rid)
    assert len(served_by) == 3, served_by.keys()
    assert set().union(*served_by.values()) == set(ids)


def test_metrics_are_not_on_the_published_port(compose: Compose) -> None:
    for path in ("/metrics", "/metrics/", "/metrics?x=1"):
        answer = httpx.get(f"{compose.base}{path}", timeout=10)
        assert answer.status_code == 404
        assert "endcontact_" not in answer.text
    # On the compose network, where Prometheus runs, any web replica serves them.
    scraped = compose(
        "exec", "-T", "web", "python3", "-c",
        "import urllib.request; print(urllib.request.urlopen('http://web:8000/metrics').read().decode())",
    )  # fmt: skip
    assert "endcontact_http_requests_total" in scraped.stdout


def test_every_container_is_unprivileged_and_read_only(compose: Compose) -> None:
    services = compose("config", "--services").stdout.split()
    running = {s: compose.containers(s) for s in services}
    assert {s for s, ids in running.items() if ids} >= {"redis", "broker", "web", "worker", "proxy"}
    for service, ids in running.items():
        for container in ids:
            assert compose.inspect(container, "{{.HostConfig.ReadonlyRootfs}}") == "true", service
            user = compose.inspect(container, "{{.Config.User}}")
            assert user.split(":")[0] not in ("", "0", "root"), (service, user)
            # What runs, not what is configured: the uid of the container's first process.
            status = compose.docker("exec", container, "cat", "/proc/1/status").stdout
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            assert uid != "0", service
            wrote = compose.docker("exec", container, "touch", "/probe", check=False)
            assert wrote.returncode != 0, service


def test_a_killed_worker_container_is_restarted_and_costs_no_request(
    compose: Compose, key: str
) -> None:
    victim = compose.containers("worker")[0]
    restarts = int(compose.inspect(victim, "{{.RestartCount}}"))
    with Load(compose.base, key) as load:
        load.wait_for_more(20)
        # Every process of the container but its init (which the kernel spares): the
        # supervisor and both solo workers, with tasks in hand.
        compose.docker("exec", victim, "sh", "-c", "kill -9 -1", check=False)
        wait_until(
            lambda: int(compose.inspect(victim, "{{.RestartCount}}")) > restarts,
            60,
            "the worker container restarted by its policy",
        )
        wait_until(lambda: compose.healthy("worker", 2), 90, "both workers healthy again")
        load.wait_for_more(20)
    assert load.not_201() == []
    # Failures are allowed while a worker is gone (retried by the client); afterwards none.
    assert compose.serves(key)
    done = post_numbers(compose.base, {"x-api-key": key}, numbers(7000, 50))
    assert done.status_code == 201
    assert done.json()["failure"] == []


def test_a_rolling_restart_of_one_web_replica_loses_no_request(compose: Compose, key: str) -> None:
    victim = compose.containers("web")[0]
    with Load(compose.base, key) as load:
        load.wait_for_more(20)
        before = load.sent()
        # What `docker compose up` does to a replica it replaces: SIGTERM, then start.
        compose.docker("stop", "--time", "20", victim)
        during_stop = load.sent() - before
        compose.docker("start", victim)
        wait_until(lambda: compose.healthy("web", 3), 90, "the replica healthy again")
        load.wait_for_more(50)
    print(f"rolling restart: {load.sent()} requests ({during_stop} while stopping), "
          f"{len(load.not_201())} not 201, {load.failed_numbers()} numbers failed")  # fmt: skip
    assert load.not_201() == []
    assert load.failed_numbers() == 0
    # It drained rather than dropped: its log says so, and it answered its share.
    assert '"draining"' in compose("logs", "--no-color", "web").stdout


def test_a_webhook_to_a_receiver_on_the_compose_network_is_delivered_signed(
    compose: Compose, key: str
) -> None:
    headers = {"x-api-key": key}
    made = httpx.post(
        f"{compose.base}/api/v1/webhooks",
        json={"url": "http://receiver:9000/hook"},
        headers=headers,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert post_numbers(compose.base, headers, ["(509) 555-0199"]).status_code == 201
    receiver = compose("port", "receiver", "9000").stdout.strip()

    def delivery() -> dict[str, object] | None:
        got = httpx.get(f"http://{receiver}/received", timeout=10).json()
        return next((d for d in got if "+15095550199" in d["body"]), None)

    got = wait_until(delivery, 60, "the delivery at the receiver")
    payload = Verifier(secret).verify(str(got["body"]), dict(got["headers"]))  # type: ignore[call-overload]
    assert payload["type"] == "end-contact.ended"
    assert payload["data"]["phoneNumber"] == "+15095550199"


def test_restarts_and_down_up_keep_every_mark_key_and_webhook(compose: Compose, key: str) -> None:
    headers = {"x-api-key": key}
    marked = post_numbers(compose.base, headers, numbers(8000, 50))
    assert marked.status_code == 201
    assert marked.json()["failure"] == []
    hooks = httpx.get(f"{compose.base}/api/v1/webhooks", headers=headers, timeout=30).json()

    def reads() -> tuple[httpx.Response, httpx.Response] | None:
        """The check and the webhook list, once both answer 200 (a connection each, so
        the replicas take turns)."""
        checked = httpx.post(
            f"{compose.base}{URL}/check",
            json={"phoneNumberList": numbers(8000, 50)},
            headers=headers,
            timeout=30,
        )
        listed = httpx.get(f"{compose.base}/api/v1/webhooks", headers=headers, timeout=30)
        return (checked, listed) if checked.status_code == listed.status_code == 200 else None

    def everything_kept() -> None:
        # Every replica recovers by itself: a few rounds in a row answer.
        for _ in range(6):
            checked, listed = wait_until(reads, 120, "the reads answering again")
            assert checked.json()["notEnded"] == []
            assert listed.json() == hooks

    for service in ("redis", "broker"):
        compose("restart", service)
        wait_until(lambda: compose.serves(key), 120, f"serving again after restarting {service}")
        everything_kept()

    compose("down", "--timeout", "20")
    started = time.monotonic()
    compose.up()
    print(f"up after down (warm): {time.monotonic() - started:.1f} s")
    wait_until(lambda: compose.serves(key), 120, "serving again after down and up")
    everything_kept()
