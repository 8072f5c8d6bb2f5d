"""Webhook deliveries end to end: real receivers (HTTP servers on 127.0.0.1 in this
process), a real worker's dispatcher, a real store; signatures checked with the
`standardwebhooks` package, as a receiver would.

One file over 400 lines: its tests share one stack (`hooks`, a module fixture) whose
dispatcher may send to 127.0.0.1 and retries within seconds, and the HookStack that
drives it; the tests that kill a process start one of their own (`own`)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from bench.receiver import Answer, Received, Receiver, Trickle, always, hang, statuses, trickle
from shared.deliveries import DUE, PENDING, delivery_key, due_key, lease_key
from shared.embedded import stop_server
from shared.keyspace import ADDED, feed_name, feed_record_key
from shared.store import Store
from shared.webhook_store import Creation, Webhooks
from shared.webhooks import EVENT_TYPES, MAX_PER_CAMPAIGN, new_webhook, webhook_key
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, post_numbers, wait_until
from tests.processes import Stack, stop
from tests.test_cli import endcontact

WAIT = 30.0
WEBHOOKS = "/api/v1/webhooks"
T = TypeVar("T")


@dataclass(frozen=True)
class Hook:
    id: str
    secret: str
    caller: Caller


class HookStack(Stack):
    """A private stack whose receivers may be on 127.0.0.1 and whose retries come fast."""

    def __init__(self, directory: Path, schedule: str = "1,1,1", private: bool = True) -> None:
        super().__init__(directory)
        self.schedule = schedule
        self.private = private
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """One client for the test's calls to the web, its connection kept between the
        polls of a wait."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.base, timeout=30, verify=TLS)
        return self._http

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        super().stop()

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env,
            "ENDCONTACT_WEBHOOK_ALLOW_PRIVATE": "true" if self.private else "false",
            "ENDCONTACT_WEBHOOK_RETRY_SCHEDULE": self.schedule,
        }

    def caller(self) -> Caller:
        return new_caller(Store(self.client))

    def hook(self, caller: Caller, url: str, events: tuple[str, ...] = EVENT_TYPES) -> Hook:
        """A webhook for the caller's campaign, made through the API."""
        answer = self.http.post(
            WEBHOOKS, json={"url": url, "events": list(events)}, headers=caller.headers
        )
        assert answer.status_code == 201, answer.text
        return Hook(answer.json()["id"], answer.json()["secret"], caller)

    def stored_hook(self, caller: Caller, url: str) -> Hook:
        """A webhook stored as the API stores one, bypassing its checks of the URL."""
        made = new_webhook(caller.key.scope, url, EVENT_TYPES, caller.key.id)
        created = Webhooks(self.client).create(made, feed_name(caller.key.scope))
        assert created is Creation.CREATED
        return Hook(made.id, made.secret, caller)

    def listed(self, hook: Hook) -> dict[str, Any]:
        answer = self.http.get(WEBHOOKS, headers=hook.caller.headers)
        assert answer.status_code == 200, answer.text
        (found,) = [one for one in answer.json()["webhooks"] if one["id"] == hook.id]
        return cast("dict[str, Any]", found)

    def rotate(self, hook: Hook) -> str:
        path = f"{WEBHOOKS}/{hook.id}/rotate-secret"
        answer = self.http.post(path, headers=hook.caller.headers)
        assert answer.status_code == 200, answer.text
        return cast("str", answer.json()["secret"])

    def delete(self, hook: Hook) -> None:
        answer = self.http.delete(f"{WEBHOOKS}/{hook.id}", headers=hook.caller.headers)
        assert answer.status_code == 204, answer.text

    def attempts(self, hook: Hook) -> list[dict[str, Any]]:
        """The webhook's attempt log, oldest first, as its owner reads it."""
        path = f"{WEBHOOKS}/{hook.id}/deliveries?limit=100"
        answer = self.http.get(path, headers=hook.caller.headers)
        assert answer.status_code == 200, answer.text
        return list(reversed(answer.json()["deliveries"]))

    def feed(self, caller: Caller) -> list[dict[str, Any]]:
        answer = self.http.get(f"{URL}/events?limit=1000", headers=caller.headers)
        assert answer.status_code == 200, answer.text
        return cast("list[dict[str, Any]]", answer.json()["events"])

    def end(self, caller: Caller, phones: list[str]) -> None:
        answer = post_numbers(self.http, caller.headers, phones)
        assert answer.status_code == 201, answer.text
        assert len(answer.json()["success"]) == len(phones), answer.text


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookStack]:
    with HookStack(tmp_path_factory.mktemp("hooks")) as stack:
        yield stack.start()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[HookStack]:
    """A stack of the test's own, for one that kills processes; retries after 3 s, so a
    kill lands while one is pending."""
    with HookStack(tmp_path, schedule="3,3") as stack:
        yield stack.start()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Receivers a test starts, closed after it (hanging requests included)."""
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def receiver(made: list[Receiver], answer: Answer | None = None) -> Receiver:
    started = Receiver(answer)
    made.append(started)
    return started


def enough(found: list[T], count: int) -> list[T] | None:
    return found if len(found) >= count else None


def logged(stack: HookStack, hook: Hook, count: int) -> list[dict[str, Any]]:
    return wait_until(lambda: enough(stack.attempts(hook), count), WAIT, f"{count} logged")


def arrived(receiver: Receiver, count: int) -> list[Received]:
    return wait_until(
        lambda: enough(receiver.received, count),
        WAIT,
        f"{count} deliveries at {receiver.url}",
    )


def verified(hook: Hook, received: Received, secret: str | None = None) -> dict[str, Any]:
    """The payload, verified as a receiver verifies it (raises if it does not)."""
    body = received.body.decode()
    payload = Verifier(secret or hook.secret).verify(body, received.headers)
    return cast("dict[str, Any]", payload)


def phones(first: int, count: int) -> list[str]:
    return [f"+1509555{n:04d}" for n in range(first, first + count)]


def test_every_delivery_is_signed_and_is_the_feeds_event(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    at = receiver(receivers)
    hook = hooks.hook(caller, at.url)
    hooks.end(caller, phones(1000, 3))
    resumed = hooks.http.post(
        "/api/v1/leads/resume-contact",
        json={"phoneNumberList": phones(1000, 1)},
        headers=caller.headers,
    )
    assert resumed.status_code == 201, resumed.text
    received = arrived(at, 4)
    feed = hooks.feed(caller)
    assert len(feed) == 4
    payloads = [verified(hook, one) for one in received]
    assert sorted((p["data"] for p in payloads), key=lambda e: str(e["id"])) == sorted(
        feed, key=lambda e: str(e["id"])
    )
    for payload, one in zip(payloads, received, strict=True):
        assert payload["type"] == f"end-contact.{payload['data']['type']}"
        assert payload["timestamp"] == payload["data"]["at"]
        assert one.headers["content-type"] == "application/json"
        assert int(one.headers["webhook-timestamp"]) > 0
        assert one.headers["webhook-signature"].startswith("v1,")
    assert len({one.headers["webhook-id"] for one in received}) == 4
    wait_until(
        lambda: [entry["status"] for entry in hooks.attempts(hook)] == [200] * 4,
        WAIT,
        "four attempts logged",
    )
    assert {entry["eventId"] for entry in hooks.attempts(hook)} == {e["id"] for e in feed}


def test_a_campaign_counts_its_events_on_its_own_keys(hooks: HookStack) -> None:
    caller = hooks.caller()
    hooks.end(caller, phones(1100, 2))
    assert len(hooks.feed(caller)) == 2
    # Its events are counted in its own feed record (on its own node in a Cluster),
    # which the deliveries read for campaigns with webhooks only.
    assert hooks.client.hget(feed_record_key(feed_name(caller.key.scope)), ADDED) == "2"


def test_a_retry_carries_the_same_webhook_id_and_body(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    at = receiver(receivers, statuses(500, 500))
    hook = hooks.hook(caller, at.url)
    hooks.end(caller, phones(1200, 1))
    first, second, third = arrived(at, 3)
    assert len({one.headers["webhook-id"] for one in (first, second, third)}) == 1
    assert first.body == second.body == third.body
    for one in (first, second, third):
        verified(hook, one)
    log = logged(hooks, hook, 3)
    assert [(e["attempt"], e["status"], e["outcome"]) for e in log] == [
        (1, 500, "retry"),
        (2, 500, "retry"),
        (3, 200, "delivered"),
    ]
    assert all(isinstance(e["durationMs"], int) and e["at"].endswith("Z") for e in log)
    assert hooks.client.zscore(due_key(hook.id), log[0]["eventId"]) is None


def test_410_disables_the_webhook_and_nothing_more_goes_to_it(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    gone, other = receiver(receivers, always(410)), receiver(receivers)
    hook = hooks.hook(caller, gone.url)
    witness = hooks.hook(caller, other.url)
    hooks.end(caller, phones(1300, 1))
    arrived(gone, 1)
    wait_until(lambda: "disabledAt" in hooks.listed(hook), WAIT, "disabled")
    hooks.end(caller, phones(1301, 2))
    # Deliveries of the later changes reached the other webhook: fanned out, and none
    # for the disabled one.
    arrived(other, 3)
    wait_until(lambda: hooks.attempts(witness) and len(hooks.attempts(witness)) == 3, WAIT, "3")
    assert len(gone.received) == 1
    assert [e["outcome"] for e in hooks.attempts(hook)] == ["disabled"]


def test_a_webhook_gets_its_own_campaigns_events_only(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    mine, theirs = hooks.caller(), hooks.caller()
    at = receiver(receivers)
    hook = hooks.hook(mine, at.url)
    hooks.end(theirs, phones(1400, 3))
    hooks.end(mine, phones(1410, 1))
    (only,) = arrived(at, 1)
    assert verified(hook, only)["data"]["phoneNumber"] == phones(1410, 1)[0]
    # Their deliveries would have been scheduled with mine: none is pending.
    hooks.end(mine, phones(1411, 1))
    arrived(at, 2)
    assert [verified(hook, r)["data"]["phoneNumber"] for r in at.received] == phones(1410, 2)


def test_a_deleted_webhook_gets_nothing_more(hooks: HookStack, receivers: list[Receiver]) -> None:
    caller = hooks.caller()
    failing, other = receiver(receivers, always(500)), receiver(receivers)
    hook = hooks.hook(caller, failing.url)
    hooks.hook(caller, other.url)
    hooks.end(caller, phones(1500, 1))
    arrived(failing, 1)
    (event,) = hooks.feed(caller)
    pending = event["id"]
    wait_until(lambda: hooks.attempts(hook), WAIT, "first attempt logged")
    hooks.delete(hook)
    hooks.end(caller, phones(1501, 1))
    arrived(other, 2)
    # The retry that was pending came due and was dropped, not sent.
    due = due_key(hook.id)
    wait_until(lambda: hooks.client.zscore(due, pending) is None, WAIT, "the retry dropped")
    assert len(failing.received) == 1


def test_after_a_rotation_both_secrets_sign(hooks: HookStack, receivers: list[Receiver]) -> None:
    caller = hooks.caller()
    at = receiver(receivers)
    hook = hooks.hook(caller, at.url)
    secret = hooks.rotate(hook)
    hooks.end(caller, phones(1600, 1))
    (one,) = arrived(at, 1)
    assert len(one.headers["webhook-signature"].split(" ")) == 2
    assert verified(hook, one, secret) == verified(hook, one, hook.secret)


def test_a_delivery_is_given_up_after_the_schedule(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    at = receiver(receivers, always(503))
    hook = hooks.hook(caller, at.url)
    hooks.end(caller, phones(1700, 1))
    wait_until(
        lambda: [a for a in hooks.attempts(hook) if a["outcome"] == "gave_up"],
        WAIT,
        "given up",
    )
    log = hooks.attempts(hook)
    # The first attempt and one per step of the schedule (1,1,1).
    assert [(e["attempt"], e["status"]) for e in log] == [(n, 503) for n in range(1, 5)]
    assert [e["outcome"] for e in log] == ["retry"] * 3 + ["gave_up"]
    assert len(at.received) == 4
    assert hooks.client.zscore(due_key(hook.id), log[0]["eventId"]) is None


def test_an_attempt_where_nothing_listens_is_logged_as_connection_refused(
    hooks: HookStack,
) -> None:
    caller = hooks.caller()
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    hook = hooks.hook(caller, f"http://127.0.0.1:{port}/hook")
    hooks.end(caller, phones(1760, 1))
    (entry, *_) = wait_until(lambda: hooks.attempts(hook), WAIT, "an attempt logged")
    assert (entry["error"], entry["outcome"]) == ("connection refused", "retry")
    assert "status" not in entry


def test_a_receiver_that_hangs_delays_neither_others_nor_end_contact(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    stuck, fast = receiver(receivers, hang), receiver(receivers)
    stuck_hook = hooks.hook(caller, stuck.url)
    hooks.hook(caller, fast.url)
    # More deliveries for the stuck receiver than the worker has sender threads.
    for first in range(1800, 1850, 10):
        hooks.end(caller, phones(first, 10))
    arrived(fast, 50)
    # All of them while the stuck receiver's first attempts were still waiting for
    # their timeout: none of its attempts has ended yet.
    assert hooks.attempts(stuck_hook) == []
    assert stuck.received


def test_an_attempt_is_refused_where_the_address_is_not_public(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    with HookStack(tmp_path, private=False) as stack:
        stack.start()
        caller = stack.caller()
        at = receiver(receivers)
        # Stored as if it had passed when created: "localhost" now resolves to 127.0.0.1.
        port = httpx.URL(at.url).port
        hook = stack.stored_hook(caller, f"https://localhost:{port}/hook")
        stack.end(caller, phones(1900, 1))
        (entry, *_) = wait_until(lambda: stack.attempts(hook), WAIT, "an attempt logged")
        assert "127.0.0.1" in entry["error"]
        assert entry["outcome"] == "retry"
        assert at.received == []


def sigkill_the_worker(stack: HookStack) -> None:
    assert stack.worker is not None
    stop(stack.worker, signal.SIGKILL)
    stack.start_worker()


def restart_the_store(stack: HookStack) -> None:
    """SIGKILLed, then started again from its append-only file."""
    assert stack.redis is not None
    stack.redis.send_signal(signal.SIGKILL)
    stack.redis.wait()
    stop_server(stack.redis)
    stack.start_redis()


@pytest.mark.parametrize("fault", [sigkill_the_worker, restart_the_store])
def test_a_pending_retry_survives(
    own: HookStack, receivers: list[Receiver], fault: Callable[[HookStack], None]
) -> None:
    caller = own.caller()
    at = receiver(receivers, statuses(500))
    hook = own.hook(caller, at.url)
    own.end(caller, phones(2000, 1))
    wait_until(lambda: own.attempts(hook), WAIT, "the first attempt logged")
    # The retry is pending in the store, not in a worker's memory.
    (event,) = own.feed(caller)
    assert own.client.zscore(due_key(hook.id), event["id"]) is not None
    fault(own)
    first, second = arrived(at, 2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verified(hook, second)
    wait_until(lambda: len(own.attempts(hook)) == 2, WAIT, "the retry logged")
    assert own.attempts(hook)[-1]["outcome"] == "delivered"


def test_metrics_count_deliveries_and_show_the_pending_gauge(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    at = receiver(receivers)
    hooks.hook(caller, at.url)
    hooks.end(caller, phones(2200, 1))
    arrived(at, 1)

    def delivered() -> str | None:
        text = hooks.http.get("/metrics").text
        line = 'endcontact_webhook_deliveries_total{outcome="delivered"} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return text if found and float(found[0].split()[-1]) >= 1 else None

    text = wait_until(delivered, WAIT, "a delivery counted")
    assert "endcontact_webhook_attempt_duration_seconds_count " in text
    assert any(row.startswith("endcontact_webhook_pending ") for row in text.splitlines())


def test_the_pending_gauge_counts_a_webhook_whose_campaign_has_no_event_yet(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    # Its feed has no record yet: nothing added, nothing pending, and /metrics answers.
    hooks.hook(hooks.caller(), receiver(receivers).url)
    answer = hooks.http.get("/metrics")
    assert answer.status_code == 200
    assert any(row.startswith("endcontact_webhook_pending ") for row in answer.text.splitlines())


def test_logs_carry_no_secret_no_number_and_no_url(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    caller = hooks.caller()
    at = receiver(receivers, statuses(500))
    hook = hooks.hook(caller, f"{at.url}?token=not-for-logs")
    hooks.end(caller, phones(2300, 1))
    arrived(at, 2)
    logged(hooks, hook, 2)
    text = hooks.logs()
    assert hook.id in text  # the failed attempt is logged, by webhook id
    assert hook.secret.removeprefix("whsec_") not in text
    assert phones(2300, 1)[0] not in text
    assert "5092300" not in text
    assert "not-for-logs" not in text


def test_first_attempts_in_flight_survive_a_worker_sigkill(
    own: HookStack, receivers: list[Receiver]
) -> None:
    caller = own.caller()
    # The first request hangs: the attempt is in flight when the worker dies, and no
    # outcome of it was ever written.
    at = receiver(receivers, lambda n, received: None if n == 0 else 200)
    hook = own.hook(caller, at.url)
    own.end(caller, phones(2400, 1))
    arrived(at, 1)
    assert own.worker is not None
    stop(own.worker, signal.SIGKILL)
    assert own.attempts(hook) == []
    own.start_worker()
    first, second = arrived(at, 2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    verified(hook, second)
    log = logged(own, hook, 1)
    assert [(e["attempt"], e["outcome"]) for e in log] == [(1, "delivered")]


def test_dispatchers_share_the_webhooks_and_send_each_event_once(
    own: HookStack, receivers: list[Receiver]
) -> None:
    assert own.worker is not None
    stop(own.worker)
    own.start_worker(concurrency=3)  # three dispatchers
    callers = [own.caller(), own.caller()]
    ats = [receiver(receivers) for _ in range(4)]
    hooks = [own.hook(callers[x // 2], at.url) for x, at in enumerate(ats)]

    def holders() -> set[str] | None:
        leases = own.client.mget([lease_key(hook.id) for hook in hooks])
        found = {str(holder) for holder in leases if holder is not None}
        return found if len(found) >= 2 and None not in leases else None

    # Four webhooks, three dispatchers: at most two each, so no one follows them all.
    wait_until(holders, WAIT, "the webhooks shared")
    for x, caller in enumerate(callers):
        for request in range(3):
            own.end(caller, phones(2500 + 200 * x + 50 * request, 50))
    for at in ats:
        arrived(at, 150)
    for at, hook in zip(ats, hooks, strict=True):
        ids = [one.headers["webhook-id"] for one in at.received]
        assert len(ids) == len(set(ids)) == 150
        assert {verified(hook, one)["data"]["id"] for one in at.received} == {
            event["id"] for event in own.feed(hook.caller)
        }


def test_revoking_a_key_disables_the_webhooks_it_created(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    """A leaked key's webhooks stop at its revoke, first attempts and retries; another
    key's of the same campaign go on, and so does one kept with --keep-webhooks."""
    leaked = hooks.caller()
    scope = leaked.key.scope
    other, rotated = (new_caller(Store(hooks.client), scope.company, scope.campaign) for _ in "ab")
    at_leaked, at_other, at_rotated = (receiver(receivers) for _ in "abc")
    hook = hooks.hook(leaked, at_leaked.url)
    witness = hooks.hook(other, at_other.url)
    kept = hooks.hook(rotated, at_rotated.url)
    hooks.end(other, phones(3000, 1))
    for at in (at_leaked, at_other, at_rotated):
        arrived(at, 1)
    # A retry of the leaked key's webhook, due in a minute, as a failed attempt leaves it.
    hooks.client.hset(delivery_key(hook.id, "1-0-0"), mapping={"attempts": 1, "body": "{}"})
    hooks.client.zadd(due_key(hook.id), {"1-0-0": int(time.time() * 1000) + 60_000})
    hooks.client.zadd(DUE, {hook.id: int(time.time() * 1000) + 60_000})
    hooks.client.incr(PENDING)

    env = {"REDIS_URL": hooks.url}
    keeping = endcontact("keys", "revoke", "--keep-webhooks", rotated.key.id, env=env)
    assert keeping.returncode == 0, keeping.stderr
    assert keeping.stdout.splitlines()[1:] == [
        "Kept 1 webhook it created:",
        f"{kept.id}\t{scope.campaign}\t{at_rotated.url}",
    ]
    revoked = endcontact("keys", "revoke", leaked.key.id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.splitlines()[1:] == [
        "Disabled 1 webhook it created (nothing more is sent to them):",
        f"{hook.id}\t{scope.campaign}\t{at_leaked.url}",
    ]

    answer = httpx.get(f"{hooks.base}{WEBHOOKS}", headers=other.headers, verify=TLS)
    shown = {one["id"]: one for one in answer.json()["webhooks"]}
    assert shown[hook.id]["createdBy"] == leaked.key.id
    assert "disabledAt" in shown[hook.id]
    assert "disabledAt" not in shown[witness.id]
    assert "disabledAt" not in shown[kept.id]
    # The retry is dropped at once, not sent when due.
    wait_until(lambda: not hooks.client.exists(due_key(hook.id)), WAIT, "the retry dropped")
    assert not hooks.client.exists(delivery_key(hook.id, "1-0-0"))

    hooks.end(other, phones(3001, 2))
    arrived(at_other, 3)
    arrived(at_rotated, 3)
    wait_until(lambda: len(hooks.attempts(witness)) == 3, WAIT, "3 logged")
    assert len(at_leaked.received) == 1
    # A creation admitted before the revoke and written after it is refused too.
    late = new_webhook(scope, at_leaked.url, EVENT_TYPES, leaked.key.id)
    assert Webhooks(hooks.client).create(late, feed_name(scope)) is Creation.REVOKED
    assert not hooks.client.exists(webhook_key(late.id))


def test_campaigns_whose_receivers_hang_leave_senders_for_the_others(
    hooks: HookStack, receivers: list[Receiver]
) -> None:
    """Issue 19: six campaigns with ten webhooks each, to receivers that answer a byte
    every 2 s, hold senders until each attempt's deadline; another campaign's
    deliveries, first attempt and retry, still go out in their normal time."""
    retried: set[str] = set()

    def fail_then_trickle(n: int, received: Received) -> int | Trickle:
        first = received.headers["webhook-id"] not in retried
        retried.add(received.headers["webhook-id"])
        return 500 if first else Trickle()

    failing, slow = receiver(receivers, fail_then_trickle), receiver(receivers, trickle)
    callers = [hooks.caller() for _ in range(6)]
    made = [
        hooks.hook(caller, (failing if x < 3 else slow).url)
        for x, caller in enumerate(callers)
        for _ in range(MAX_PER_CAMPAIGN)
    ]
    try:
        # Three campaigns' 240 first attempts fail at once; their retries (a second
        # later) hang: as many as the retry senders take for them (24 here, 8 a campaign;
        # before the fix, all 32 of the pool).
        for x, caller in enumerate(callers[:3]):
            hooks.end(caller, phones(3000 + 10 * x, 8))
        wait_until(lambda: len(failing.received) >= 240 + 24, WAIT, "their retries hanging")
        # Three more campaigns' first attempts hang (at least one per webhook).
        for x, caller in enumerate(callers[3:]):
            hooks.end(caller, phones(3100 + 10 * x, 8))
        wait_until(lambda: len(slow.received) >= 30, WAIT, "their first attempts hanging")

        fast = receiver(receivers, statuses(500))
        other = hooks.caller()
        hooks.hook(other, fast.url)
        hooks.end(other, phones(3200, 1))
        # Undisturbed, a first attempt arrives some 20 ms after its change, and its retry
        # after the schedule's 1 s and the claim's poll (0.25 s). The issue asks for
        # within 1 s of that; 3 s here, for a loaded CI machine (before the fix neither
        # came within 30 s).
        wait_until(lambda: fast.received, 3.0, "the other campaign's first attempt")
        wait_until(lambda: len(fast.received) >= 2, 1.25 + 3.0, "the other campaign's retry")
    finally:
        for hook in made:
            hooks.delete(hook)


def test_a_delivery_is_never_attempted_twice_at_once(
    own: HookStack, receivers: list[Receiver]
) -> None:
    """A stopping worker's attempts to a receiver that trickles last until their
    deadline; the worker that takes its webhook over sends the same deliveries again
    (at least once), but only once those attempts ended."""
    at = receiver(receivers, trickle)
    caller = own.caller()
    hook = own.hook(caller, at.url)
    wait_until(lambda: own.client.get(lease_key(hook.id)), WAIT, "the webhook followed")
    first = own.worker
    assert first is not None
    own.end(caller, phones(2600, 2))
    arrived(at, 2)
    first.send_signal(signal.SIGTERM)
    own.start_worker()

    def sent_again() -> bool:
        ids = [one.headers["webhook-id"] for one in at.received]
        return len(ids) > len(set(ids))

    wait_until(sent_again, WAIT, "the next worker sending them again")
    assert at.most_at_once == 1
    stop(first)
