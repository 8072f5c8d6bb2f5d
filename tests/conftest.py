from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from api.app import create_app
from shared.apikeys import ApiKey
from shared.embedded import BROKER_ARGS, free_port, start_server, stop_server
from shared.settings import Settings
from shared.store import Store
from tests.helpers import TLS
from tests.processes import Stack, spawn, start_web, stop, wait_for, worker_ready
from tests.valkey_cluster import ValkeyCluster

UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The in-process unit tests first: a slip shows in seconds, before any server,
    worker or web is started for the tests after them. Then the files with the most
    tests, pytest-xdist's own guess at the longest (scripts/test hands out files in this
    order, two at a time): in name order the run took 500 s against 433 s so, a long
    file being handed out last. (A stable sort: a file's tests keep their order.)"""
    tests = Counter(item.path for item in items)
    items.sort(key=lambda item: (not item.path.is_relative_to(UNIT), -tests[item.path]))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real valkey-server on a free port; yields its base URL (no database number)."""
    port = free_port()
    process = start_server(tmp_path_factory.mktemp("valkey"), port)
    yield f"redis://127.0.0.1:{port}"
    stop_server(process)


@pytest.fixture(scope="session")
def broker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second valkey-server, set as the embedded broker is (no append-only file)."""
    port = free_port()
    process = start_server(tmp_path_factory.mktemp("broker"), port, extra_args=BROKER_ARGS)
    yield f"redis://127.0.0.1:{port}"
    stop_server(process)


@pytest.fixture(scope="module")
def valkey_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A six-node Valkey Cluster (three primaries, a replica each) for a test module:
    about 2 s to start and create (of which 1 s is valkey-cli's own wait for the nodes
    to join, and most of the rest a new primary's 2 s before it says cluster_state:ok)."""
    # As compose.cluster.yaml: a failed primary stops its own slots only.
    config = {"cluster-require-full-coverage": "no"}
    with ValkeyCluster(tmp_path_factory.mktemp("cluster"), config=config) as cluster:
        yield cluster


@pytest.fixture
def valkey_cluster(valkey_cluster_module: ValkeyCluster) -> ValkeyCluster:
    """The module's cluster, whole: a node an earlier test killed or stopped is back and
    in sync (which nodes are primaries may have changed: ask, never assume)."""
    valkey_cluster_module.heal()
    return valkey_cluster_module


@pytest.fixture(scope="session")
def redis_url(redis_server: str) -> str:
    """Database 0: the one the session's web and worker use."""
    return f"{redis_server}/0"


@pytest.fixture(scope="session")
def broker_url(broker_server: str) -> str:
    """The session's broker: queue, results, heartbeats and rate limits."""
    return f"{broker_server}/0"


@pytest.fixture(scope="session")
def servers(redis_url: str, broker_url: str) -> dict[str, str]:
    """The environment that points a process at the session's store and broker."""
    return {"REDIS_URL": redis_url, "ENDCONTACT_BROKER_URL": broker_url}


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def worker(servers: dict[str, str], logs: Path) -> Iterator[None]:
    log = logs / "worker.log"
    process = spawn(["worker", "--concurrency=2"], servers, log)
    wait_for(lambda: worker_ready(log), process, log)
    yield
    stop(process)


@pytest.fixture(scope="session")
def web(servers: dict[str, str], worker: None, logs: Path) -> Iterator[str]:
    """The base URL of a web process with a worker behind it."""
    base, process = start_web(servers, logs / "web.log")
    yield base
    stop(process)


@pytest.fixture
def web_client(web: str) -> Iterator[httpx.Client]:
    """A client of the session's web process, which has a worker behind it."""
    with httpx.Client(base_url=web, timeout=30, verify=TLS) as http:
        yield http


@contextlib.contextmanager
def serving(env: Mapping[str, str]) -> Iterator[TestClient]:
    """The web app in this process on the real servers `env` names, through Starlette's
    TestClient: the lifespan of `endcontact web` opens its connections, result listener
    and flusher, on the event loop TestClient runs in a thread. No uvicorn, no worker:
    for what the web answers by itself. Redirects are not followed, as by httpx.Client."""
    app = create_app(Settings.from_env(env))
    with TestClient(app, follow_redirects=False) as http:
        yield http


@pytest.fixture(scope="session")
def client(servers: dict[str, str]) -> Iterator[TestClient]:
    """The web app in this process on the session's store and broker, with no worker:
    validation, keys, errors and reads, without a web process to start."""
    with serving(servers) as http:
        yield http


@pytest.fixture(scope="session")
def store(redis_url: str) -> Iterator[Store]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield Store(client)
    client.close()


@dataclass(frozen=True)
class Caller:
    secret: str
    key: ApiKey

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.secret}


def new_caller(store: Store, company: str | None = None, campaign: str | None = None) -> Caller:
    """A key for a company and campaign of its own, so tests never share marks."""
    key, secret = store.create_key(
        company or f"company-{uuid.uuid4().hex[:8]}",
        campaign or f"campaign-{uuid.uuid4().hex[:8]}",
    )
    return Caller(secret, key)


@pytest.fixture
def caller(store: Store) -> Caller:
    return new_caller(store)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A private store, broker, worker and web, for tests that kill processes or count
    exactly."""
    with Stack(tmp_path, timeout=2.0) as stack:
        yield stack.start()


@pytest.fixture(scope="session")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose events leave the feed after 4.32 s (0.00005 days), with no rate
    limit: for the feed's retention and expired cursors, each test in a campaign of its
    own (its workers trim the feeds, so the session's cannot be used)."""
    settings = {"ENDCONTACT_EVENTS_RETENTION_DAYS": "0.00005", "ENDCONTACT_RATE_LIMIT": "0"}
    with Stack(tmp_path_factory.mktemp("short-lived"), settings=settings) as stack:
        yield stack.start()
