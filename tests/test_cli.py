"""The `endcontact` command as an operator uses it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import redis

from shared.apikeys import digest
from shared.embedded import free_port, start_server, stop_server
from shared.keyspace import feed_name, key_record
from shared.store import Store
from shared.webhooks import key_webhooks_key, webhook_key
from tests.conftest import new_caller
from tests.helpers import TLS, URL, clean_env, wait_until
from tests.processes import ROOT, http_ready, spawn, start_web, stop, wait_for


def endcontact(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_create_list_revoke(redis_url: str, web: str) -> None:
    env = {"REDIS_URL": redis_url}
    created = endcontact(
        "keys",
        "create",
        "--company",
        "Acme: Inc",
        "--campaign",
        "spring",
        "--label",
        "crm",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("ec_")
    assert len(secret) >= 40

    listed = endcontact("keys", "list", env=env)
    assert listed.returncode == 0
    assert secret not in listed.stdout
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == ["id", "label", "company", "campaign", "createdAt", "revokedAt"]
    line = next(row for row in rows if "\tcrm\t" in row)
    key_id, label, company, campaign, created_at, revoked = line.split("\t")
    assert key_id.startswith("key_")
    assert (label, company, campaign, revoked) == ("crm", "Acme: Inc", "spring", "-")
    assert key_id in created.stdout
    # --json: the same keys, the same fields, null where the table says "-".
    as_json = endcontact("keys", "list", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    keys = json.loads(as_json.stdout)
    assert len(keys) == len(rows)
    assert next(key for key in keys if key["id"] == key_id) == {
        "id": key_id,
        "label": "crm",
        "company": "Acme: Inc",
        "campaign": "spring",
        "createdAt": created_at,
        "revokedAt": None,
    }

    headers = {"x-api-key": secret}
    body = {"phoneNumberList": ["(509) 555-1234"]}
    assert httpx.post(f"{web}{URL}", json=body, headers=headers, verify=TLS).status_code == 201

    revoked_run = endcontact("keys", "revoke", key_id, env=env)
    assert revoked_run.returncode == 0
    assert httpx.post(f"{web}{URL}", json=body, headers=headers, verify=TLS).status_code == 401
    relisted = endcontact("keys", "list", env=env).stdout
    assert next(r for r in relisted.splitlines() if r.startswith(key_id)).split("\t")[5] != "-"


def test_webhooks_list_and_delete(redis_url: str, web: str, store: Store) -> None:
    env = {"REDIS_URL": redis_url}
    owner = new_caller(store, "Acme: Inc")
    scope = owner.key.scope
    api = f"{web}/api/v1/webhooks"
    made = [
        httpx.post(
            api, json={"url": f"https://1.2.3.4/{path}"}, headers=owner.headers, verify=TLS
        ).json()
        for path in ("a", "b")
    ]
    first, old = sorted(made, key=lambda hook: (hook["createdAt"], hook["id"]))
    # As a webhook created before the creating key was kept.
    with redis.Redis.from_url(redis_url) as raw:
        raw.hdel(webhook_key(old["id"]), "created_by")
    where = ["--company", scope.company, "--campaign", scope.campaign]

    table = endcontact("webhooks", "list", *where, env=env)
    assert table.returncode == 0, table.stderr
    assert [row.split("\t") for row in table.stdout.splitlines()] == [
        ["id", "url", "events", "createdBy", "createdAt", "disabledAt"],
        [first["id"], first["url"], "ended,resumed", owner.key.id, first["createdAt"], "-"],
        [old["id"], old["url"], "ended,resumed", "-", old["createdAt"], "-"],
    ]
    as_json = endcontact("webhooks", "list", "--json", *where, env=env)
    assert as_json.returncode == 0, as_json.stderr
    listed = httpx.get(api, headers=owner.headers, verify=TLS)
    assert as_json.stdout == listed.text + "\n"
    assert listed.json()["webhooks"][1]["createdBy"] is None

    elsewhere = ["--company", scope.company, "--campaign", "another"]
    for missing in (
        endcontact("webhooks", "delete", *elsewhere, first["id"], env=env),
        endcontact("webhooks", "delete", *where, "wh_0000000000000000", env=env),
    ):
        assert missing.returncode == 1
        assert missing.stderr.startswith("endcontact: no webhook 'wh_")
    deleted = endcontact("webhooks", "delete", *where, first["id"], env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == (
        f"Deleted {first['id']} ({first['url']}) of company 'Acme: Inc', "
        f"campaign {scope.campaign!r}.\n"
    )
    # What the API's DELETE does: gone from the campaign and from its key's webhooks.
    assert [
        hook["id"] for hook in httpx.get(api, headers=owner.headers, verify=TLS).json()["webhooks"]
    ] == [old["id"]]
    with redis.Redis.from_url(redis_url, decode_responses=True) as raw:
        assert first["id"] not in raw.smembers(key_webhooks_key(feed_name(scope), owner.key.id))
        assert not raw.exists(webhook_key(first["id"]))
    assert endcontact("webhooks", "delete", *where, first["id"], env=env).returncode == 1


def test_keys_list_leaves_out_an_unreadable_record_and_lists_the_rest(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    made = [
        endcontact("keys", "create", "--company", "Broken", "--campaign", c, env=env)
        for c in ("a", "b")
    ]
    assert all(one.returncode == 0 for one in made), [one.stderr for one in made]
    broken, kept = (one.stdout.strip().splitlines()[-1] for one in made)
    with redis.Redis.from_url(redis_url) as raw:
        raw.hdel(key_record(digest(broken)), "company")
    listed = endcontact("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    campaigns = {row.split("\t")[3] for row in listed.stdout.splitlines() if "\tBroken\t" in row}
    assert campaigns == {"b"}
    assert "unreadable key record left out of the list" in listed.stderr
    assert kept.startswith("ec_")


def test_keys_revoke_unknown_id_fails(redis_url: str) -> None:
    result = endcontact("keys", "revoke", "key_nope", env={"REDIS_URL": redis_url})
    assert result.returncode == 1
    assert "no key" in result.stderr


def test_keys_revoke_given_a_secret_says_what_it_takes_and_never_shows_it(
    redis_url: str, store: Store
) -> None:
    secret = new_caller(store).secret
    result = endcontact("keys", "revoke", secret, env={"REDIS_URL": redis_url})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "endcontact: that is a key's secret; revoke takes its id, key_…, "
        "see `endcontact keys list`\n"
    )


def test_keys_create_refuses_empty_names(redis_url: str) -> None:
    result = endcontact(
        "keys", "create", "--company", " ", "--campaign", "x", env={"REDIS_URL": redis_url}
    )
    assert result.returncode == 2
    assert "company" in result.stderr


def test_bad_setting_is_a_clear_error() -> None:
    result = endcontact("keys", "list", env={"ENDCONTACT_RESULT_TIMEOUT": "soon"})
    assert result.returncode == 2
    assert "ENDCONTACT_RESULT_TIMEOUT" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_a_clear_error() -> None:
    result = endcontact("keys", "list", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.returncode == 1
    assert "Redis did not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_checks_fail_without_what_they_check(
    broker_server: str, servers: dict[str, str], web: str
) -> None:
    # The session's workers beat into the broker's database 0 from this host; none
    # beats into database 8.
    assert endcontact("check", "worker", env=servers).returncode == 0
    lonely = endcontact(
        "check", "worker", env={**servers, "ENDCONTACT_BROKER_URL": f"{broker_server}/8"}
    )
    assert lonely.returncode == 1
    assert "no live worker" in lonely.stderr
    assert endcontact("check", "web", "--url", web, env={}).returncode == 0
    nobody = f"http://127.0.0.1:{free_port()}"
    assert endcontact("check", "web", "--url", nobody, env={}).returncode == 1


def test_version_and_an_option_that_cannot_work() -> None:
    shown = endcontact("--version", env={})
    assert (shown.returncode, shown.stdout) == (0, f"endcontact {version('endcontact')}\n")
    # Refused before anything starts: no worker at all would have run, silently.
    nowhere = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    refused = endcontact("worker", "--concurrency", "0", env=nowhere)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        "endcontact worker: argument --concurrency: must be a whole number from 1 to 1024, "
        "got '0' (see endcontact worker --help)\n"
    )


def test_run_checks_its_servers_before_it_says_it_runs(redis_url: str) -> None:
    """One line naming the server that does not answer, without its password; nothing
    said to be running."""
    closed, port = free_port(), f"--port={free_port()}"
    store_down = endcontact(
        "run", port, env={"REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed}/0"}
    )
    broker_down = endcontact(
        "run",
        port,
        env={"REDIS_URL": redis_url, "ENDCONTACT_BROKER_URL": f"redis://127.0.0.1:{closed}/0"},
    )
    for result, said in [
        (store_down, f"the store (REDIS_URL) at redis://:**@127.0.0.1:{closed}/0"),
        (broker_down, f"the broker (ENDCONTACT_BROKER_URL) at redis://127.0.0.1:{closed}/0"),
    ]:
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.startswith(f"endcontact: {said} does not answer: ")
        assert len(result.stderr.splitlines()) == 1
        assert "hunter2" not in result.stderr


def test_web_and_worker_without_their_server_retry_saying_where_and_are_not_ready(
    tmp_path: Path,
) -> None:
    """What compose runs waits for its servers instead of exiting: each attempt a
    warning naming the address (never the password), and /readyz 503 meanwhile."""
    closed = free_port()
    env = {"REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed}/0"}
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    worker = spawn(["worker", "--concurrency=1"], env, worker_log)
    base, web = start_web(env, web_log)
    waiting = (
        f"waiting for the store (REDIS_URL) at redis://:**@127.0.0.1:{closed}/0, trying again "
        f"every 2 s: ConnectionError: Error 111 connecting to 127.0.0.1:{closed}. "
        "Connection refused."
    )
    try:
        wait_until(
            lambda: web_log.read_text().count(waiting) >= 2, 30, "the web's warnings", watch=[web]
        )
        ready = httpx.get(f"{base}/readyz", timeout=10, verify=TLS)
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "unavailable", "redis": "down", "broker": "down"},
        )
        wait_until(
            lambda: f"Cannot connect to redis://:**@127.0.0.1:{closed}/0" in worker_log.read_text(),
            30,
            "the worker's warning",
            watch=[worker],
        )
    finally:
        for process in (web, worker):
            stop(process)
    for log in (web_log, worker_log):
        assert "hunter2" not in log.read_text()


def test_a_web_started_before_its_store_says_so_until_it_answers(
    broker_server: str, tmp_path: Path
) -> None:
    """Compose may start the web before its store (the broker up, as a server of its
    own): idle, with no request to fail, it still names the store at each attempt, and
    says when it answers. It used to say nothing until a request came."""
    closed = free_port()
    env = {
        "REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed}/0",
        "ENDCONTACT_BROKER_URL": f"{broker_server}/9",
    }
    log = tmp_path / "web.log"
    _, web = start_web(env, log)
    store = f"the store (REDIS_URL) at redis://:**@127.0.0.1:{closed}/0"
    try:
        wait_until(
            lambda: log.read_text().count(f"waiting for {store}, trying again every 2 s: ") >= 2,
            30,
            "the web's warnings",
            watch=[web],
        )
        server = start_server(tmp_path / "store", closed, password="hunter2")
        try:
            wait_until(lambda: f"{store} answers" in log.read_text(), 30, "the line", watch=[web])
        finally:
            stop_server(server)
    finally:
        stop(web)
    said = log.read_text()
    assert "waiting for the broker" not in said
    assert "hunter2" not in said


@pytest.mark.parametrize(
    ("argv", "sig"),
    [
        (["web"], signal.SIGINT),
        (["web", "--workers=2"], signal.SIGINT),
        (["web", "--workers=2"], signal.SIGTERM),
        (["worker", "--concurrency=1"], signal.SIGINT),
        (["worker", "--concurrency=2"], signal.SIGINT),
    ],
    ids=["web-ctrl-c", "web-processes-ctrl-c", "web-processes-sigterm", "solo-ctrl-c", "ctrl-c"],
)
def test_web_and_worker_exit_with_the_signal_that_stopped_them(
    argv: list[str], sig: signal.Signals, redis_url: str, broker_server: str, tmp_path: Path
) -> None:
    """130 after Ctrl-C, 143 after SIGTERM, as `run` (test_embedded) and as a shell
    reports a process it killed, each way web and worker run (SIGTERM of one web process
    and of a solo worker: test_faults). A broker database of its own: no session task
    goes to these workers."""
    env = {"REDIS_URL": redis_url, "ENDCONTACT_BROKER_URL": f"{broker_server}/10"}
    log = tmp_path / "command.log"
    port = free_port()
    web = argv[0] == "web"
    process = spawn([*argv, f"--port={port}"] if web else argv, env, log)
    workers = 0 if web else int(argv[-1].rsplit("=", 1)[1])

    def ready() -> bool:
        if web:
            return http_ready(f"http://127.0.0.1:{port}")
        return log.read_text().count(" ready.") == workers

    try:
        wait_for(ready, process, log)
    finally:
        status = stop(process, sig)
    assert status == 128 + sig, log.read_text()


def test_an_import_that_finished_keeps_its_result_whatever_signal_follows(
    web: str, store: Store, tmp_path: Path
) -> None:
    """A SIGTERM once the summary is out (the process still exiting) does not make a
    finished import exit 143."""
    source = tmp_path / "numbers.csv"
    source.write_text("phone\n(509) 555-1234\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "import", str(source), f"--url={web}"],
        cwd=ROOT,
        env=clean_env({"ENDCONTACT_API_KEY": new_caller(store).secret}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        summary = process.stdout.readline().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, summary
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
    assert summary.startswith("ended 1, invalid 0, failed 0 of 1 rows")
