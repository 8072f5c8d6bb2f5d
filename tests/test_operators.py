"""What operators run and read: settings errors, Celery's own tools, Flower, the logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from api.publisher import TaskPublisher
from shared.apikeys import Scope
from shared.embedded import free_port
from shared.store import Store
from shared.tasks import QUEUE, task_args
from tests.helpers import TLS, clean_env, terminal_output, wait_until
from tests.processes import ROOT, http_ready, spawn, start_web, stop, wait_for

URL = "/api/v1/leads/end-contact"
# Databases of the session's server that no other test uses: these tests start their
# own workers, and a worker of another test must not take their tasks.
TOOLS_DB, PURGE_DB, FLOWER_DB, LOGS_DB, TERMINAL_DB = 11, 12, 13, 14, 15


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=ROOT,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def celery(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", *args]
    return run(argv, {"REDIS_URL": url})


def publish(url: str, count: int) -> list[str]:
    """`count` end-contact tasks on the queue, as the web sends them; their numbers."""
    phones = [f"+1509555{n:04d}" for n in range(1000, 1000 + count)]

    async def send() -> None:
        client = redis.asyncio.Redis.from_url(url)
        publisher = TaskPublisher(client)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        scope = Scope("operators", "tools")
        shown = "['+15*******']"
        await publisher.publish(
            [
                publisher.message(str(uuid.uuid4()), task_args(scope, phone), shown, expires)
                for phone in phones
            ]
        )
        await client.aclose()

    asyncio.run(send())
    return phones


@pytest.fixture
def worker_on(redis_server: str, tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Starts `endcontact worker --concurrency=1` on a database; returns its URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(db: int) -> str:
        url = f"{redis_server}/{db}"
        log = tmp_path / f"worker-{db}.log"
        process = spawn(["worker", "--concurrency=1"], {"REDIS_URL": url}, log)
        started.append(process)
        wait_for(lambda: " ready." in log.read_text(errors="replace"), process, log)
        return url

    yield start
    for process in started:
        stop(process)


# --- A malformed setting: one line, exit status 2, from every entry point ---------

ENTRY_POINTS = {
    "run": ["-m", "cli", "run", "--concurrency=1"],
    "web": ["-m", "cli", "web"],
    "worker": ["-m", "cli", "worker"],
    "solo worker": ["-m", "cli", "worker", "--concurrency=1"],
    "keys create": ["-m", "cli", "keys", "create", "--company", "a", "--campaign", "b"],
    "keys list": ["-m", "cli", "keys", "list"],
    "keys revoke": ["-m", "cli", "keys", "revoke", "key_x"],
    "check web": ["-m", "cli", "check", "web"],
    "check worker": ["-m", "cli", "check", "worker"],
    "uvicorn factory": ["-m", "uvicorn", "--factory", "api.app:create_app_from_env", "--port=0"],
    "celery inspect": ["-m", "celery", "-A", "worker.celery_app", "inspect", "ping"],
    "celery purge": ["-m", "celery", "-A", "worker.celery_app", "purge", "-f"],
    "celery worker": ["-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo"],
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(
    ("name", "value"), [("ENDCONTACT_RATE_LIMIT", "²"), ("ENDCONTACT_RESULT_TIMEOUT", "abc")]
)
def test_a_bad_setting_is_one_line_and_status_2(
    entry: str, name: str, value: str, tmp_path: Path
) -> None:
    # A data directory of its own: nothing may start an embedded server in it.
    env = {name: value, "ENDCONTACT_DATA_DIR": str(tmp_path / "var")}
    done = run([sys.executable, *ENTRY_POINTS[entry]], env)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"endcontact: {name} must be a ")
    assert repr(value) in lines[0]
    assert not (tmp_path / "var").exists()


# --- Celery's own tools --------------------------------------------------------------


def test_celery_tools_reach_the_workers(worker_on: Callable[[int], str], tmp_path: Path) -> None:
    url = worker_on(TOOLS_DB)
    # The worker by name: `inspect` then knows how many replies to wait for and returns
    # with the last, instead of waiting out its timeout (10 s a command).
    found = re.search(
        r"endcontact-\d+@\S+(?= ready)", (tmp_path / f"worker-{TOOLS_DB}.log").read_text()
    )
    assert found is not None
    to = ["--timeout=10", f"--destination={found.group()}"]
    ping = celery("inspect", "ping", *to, url=url)
    assert ping.returncode == 0, ping.stderr
    assert "endcontact-" in ping.stdout
    assert "pong" in ping.stdout
    for command in ("active", "stats"):
        inspected = celery("inspect", command, *to, url=url)
        assert inspected.returncode == 0, inspected.stderr
        assert "endcontact-" in inspected.stdout


def test_celery_purge_empties_the_queue(redis_server: str) -> None:
    url = f"{redis_server}/{PURGE_DB}"
    client = redis.Redis.from_url(url)
    try:
        publish(url, 3)
        assert client.llen(QUEUE) == 3
        purged = celery("purge", "-f", url=url)
        assert purged.returncode == 0, purged.stderr
        assert "Purged 3 messages" in purged.stdout
        assert client.llen(QUEUE) == 0
    finally:
        client.close()


@pytest.mark.timeout(180)
def test_flower_shows_tasks(worker_on: Callable[[int], str], tmp_path: Path) -> None:
    """compose's `monitoring` profile: Flower on our app turns the workers' task events
    on, and shows the tasks, with their arguments masked."""
    url = worker_on(FLOWER_DB)
    port = free_port()
    log = tmp_path / "flower.log"
    address = [f"--port={port}", "--address=127.0.0.1"]
    env = clean_env({"REDIS_URL": url, "FLOWER_UNAUTHENTICATED_API": "true"})
    with open(log, "wb") as out:
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower", *address],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen: dict[str, object] = {}
    sent: list[str] = []

    def shown() -> bool:
        # Tasks sent before the workers turned events on are never shown: send more.
        sent.extend(publish(url, 1))
        try:
            tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=2, verify=TLS).json()
        except (httpx.HTTPError, ValueError):
            return False
        seen.update(tasks)
        return any(t.get("state") == "SUCCESS" for t in tasks.values())

    try:
        wait_until(shown, 90, "a task in Flower", logs=lambda: log.read_text(errors="replace"))
    finally:
        stop(flower)
    task = next(t for t in seen.values() if isinstance(t, dict) and t.get("state") == "SUCCESS")
    assert task["name"] == "endcontact.end_contact"
    assert str(task["worker"]).startswith("endcontact-")
    shown_text = json.dumps(seen)
    assert not any(phone in shown_text for phone in sent)


# --- Logs: every line one JSON object -------------------------------------------------


@pytest.mark.timeout(180)
def test_every_line_of_worker_and_web_is_json(redis_server: str, tmp_path: Path) -> None:
    url = f"{redis_server}/{LOGS_DB}"
    worker_log, web_log = tmp_path / "worker.log", tmp_path / "web.log"
    worker = spawn(["worker", "--concurrency=2"], {"REDIS_URL": url}, worker_log)
    web: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: worker_log.read_text().count(" ready.") == 2, worker, worker_log)
        base, web = start_web({"REDIS_URL": url}, web_log)
        client = redis.Redis.from_url(url, decode_responses=True)
        _, secret = Store(client).create_key("operators", "logs")
        client.close()
        response = httpx.post(
            f"{base}{URL}",
            json={"phoneNumberList": ["(509) 555-1234"]},
            headers={"x-api-key": secret},
            timeout=30,
            verify=TLS,
        )
        assert response.status_code == 201
        assert response.json() == {"success": ["+15095551234"], "failure": []}
    finally:
        if web is not None:
            stop(web)
        stop(worker)

    worker_lines = records(worker_log)
    banners = [r for r in worker_lines if " starting: " in str(r["message"])]
    assert len(banners) == 2
    for banner in banners:
        # Each solo worker is one process running one task at a time, and says so.
        assert "concurrency 1 (solo)" in str(banner["message"])
        assert (banner["concurrency"], banner["pool"]) == (1, "solo")
    assert sum("Warm shutdown" in str(r["message"]) for r in worker_lines) == 2
    # Celery's warning of root, once for the two workers (CI runs as root).
    warned = [r for r in worker_lines if "SecurityWarning" in str(r["message"])]
    assert len(warned) == (1 if os.geteuid() == 0 else 0), warned
    web_lines = records(web_log)
    assert any(r.get("route") == URL and r.get("status") == 201 for r in web_lines)


def records(log: Path) -> list[dict[str, object]]:
    """Every line of `log`, each of which must be one JSON object."""
    parsed = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line in {log.name}: {line!r}")
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


# --- Logs on a terminal: one line of text per event -----------------------------------

# 2026-12-07 09:41:07.123 INFO    worker: endcontact-1234@host ready.
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARNING|ERROR) +[a-z_]+: \S")


@contextlib.contextmanager
def on_a_terminal(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m cli ARGS` with stdout and stderr on a pseudo-terminal, all it writes
    copied to `log`; stopped at the end."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)

    def copy() -> None:
        with open(log, "ab") as out:
            for chunk in terminal_output(controller):
                out.write(chunk)
                out.flush()

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        yield process
    finally:
        stop(process)
        reader.join(10)
        os.close(controller)


@pytest.mark.timeout(180)
def test_on_a_terminal_logs_are_lines_of_text(redis_server: str, tmp_path: Path) -> None:
    env = {"REDIS_URL": f"{redis_server}/{TERMINAL_DB}"}
    worker_log, web_log = tmp_path / "worker.log", tmp_path / "web.log"
    base = f"http://127.0.0.1:{free_port()}"
    with (
        on_a_terminal(["worker", "--concurrency=2"], env, worker_log) as worker,
        on_a_terminal(["web", f"--port={base.rsplit(':', 1)[1]}"], env, web_log) as web,
    ):
        wait_for(lambda: worker_log.read_text().count(" ready.") == 2, worker, worker_log)
        wait_for(lambda: http_ready(base), web, web_log)
        # The access line of that check, whatever its format.
        wait_for(lambda: "/healthz" in web_log.read_text(), web, web_log)

    worker_lines = text_lines(worker_log)
    assert sum(line.endswith(" ready.") for line in worker_lines) == 2
    warned = [line for line in worker_lines if "SecurityWarning" in line]
    assert len(warned) == (1 if os.geteuid() == 0 else 0), warned
    web_lines = text_lines(web_log)
    assert any(" access: request " in line and " status=200 " in line for line in web_lines)


def text_lines(log: Path) -> list[str]:
    """Every line of `log`, each of which must be a line of text, not JSON."""
    lines = log.read_text().splitlines()
    for line in lines:
        assert TEXT_LINE.match(line), f"not a text line in {log.name}: {line!r}"
    return lines
