"""A local Redis Cluster for tests: three masters with one replica each, on 127.0.0.1.

Each node is a ``redis-server`` process (the binary the other tests use) in its own temporary
directory; ``redis-cli --cluster create`` joins them. Failover is tuned to take a few seconds:
a node is taken as failed after ``NODE_TIMEOUT_MS``, and a replica always stands for election
however long ago it last heard its master (validity factor 0).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import redis
from redis.crc import key_slot

from tests.support.net import HOST
from tests.support.redis import RedisNode, node_command, redis_server_binary, server_argv

MASTERS = 3
NODE_TIMEOUT_MS = 1000
SLOTS = 16384
# A node's cluster bus listens on its port + 10000. Client ports are drawn below the
# ephemeral range (32768 up) and so are their bus ports, so neither races an outgoing socket.
_BUS_OFFSET = 10000
_PORT_LOW = 20000
_PORT_HIGH = 32767 - _BUS_OFFSET
_POLL_SECONDS = 0.05


def redis_cli_binary() -> str | None:
    """``redis-cli`` from PATH, else the one beside the tests' ``redis-server``; None if neither."""
    found = shutil.which("redis-cli")
    if found:
        return found
    beside = Path(redis_server_binary()).with_name("redis-cli")
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports that are free, and whose bus ports are free too."""
    ports: list[int] = []
    for _ in range(1000):
        port = _PORT_LOW + secrets.randbelow(_PORT_HIGH - _PORT_LOW)
        taken = {*ports, *(p + _BUS_OFFSET for p in ports)}
        if {port, port + _BUS_OFFSET} & taken:
            continue
        if _bindable(port) and _bindable(port + _BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"no {count} free port pairs between {_PORT_LOW} and {_PORT_HIGH}")


def running_cluster(
    *, password: str | None = None, full_coverage: bool = True
) -> Iterator[LocalCluster]:
    """Yield a started :class:`LocalCluster` (a fixture's body); skip the test without redis-cli.

    Every node is killed afterwards.
    """
    if redis_cli_binary() is None:
        pytest.skip("redis-cli not found (Debian: redis-tools), needed to form a Redis Cluster")
    cluster = LocalCluster(password=password, full_coverage=full_coverage)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class LocalCluster:
    """Three masters and three replicas on loopback, optionally password-protected.

    ``full_coverage`` is the nodes' ``cluster-require-full-coverage``: with it (Redis's
    default) every slot answers CLUSTERDOWN while any slot has no master.
    """

    def __init__(self, *, password: str | None = None, full_coverage: bool = True) -> None:
        """Prepare the nodes (nothing runs until :meth:`start`)."""
        self.password = password
        self.full_coverage = full_coverage
        self._root = Path(tempfile.mkdtemp(prefix="proxy-test-cluster-"))
        self.nodes = [
            RedisNode(port, self._root / str(port), password=password)
            for port in free_cluster_ports(MASTERS * 2)
        ]

    # -- addresses ------------------------------------------------------------------------------

    @property
    def nodes_setting(self) -> str:
        """Every node as ``host:port,host:port,...``, the form PROXY_REDIS_CLUSTER_NODES takes."""
        return ",".join(node.address for node in self.nodes)

    def node(self, port: int) -> RedisNode:
        """The node listening on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    # -- start and stop -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, form the cluster, and return once it is whole and replicated."""
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        cli = redis_cli_binary()
        if cli is None:
            raise RuntimeError("redis-cli is needed to form a cluster")
        for node in self.nodes:
            node.launch(
                partial(self._argv, node),
                timeout=max(deadline - time.monotonic(), 1.0),
                new_port=lambda: free_cluster_ports(1)[0],
            )
        env = {**os.environ, "REDISCLI_AUTH": self.password} if self.password else None
        created = subprocess.run(  # noqa: S603 - fixed argv
            [
                cli,
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            env=env,
            capture_output=True,
            timeout=max(deadline - time.monotonic(), 1.0),
            check=False,
        )
        if created.returncode != 0:
            output = (created.stdout + created.stderr).decode(errors="replace")
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
        self._wait(deadline, "every node sees the whole cluster", self._settled)
        self._wait(deadline, "every replica is in sync", self._replicated)

    def _argv(self, node: RedisNode, port: int) -> list[str]:
        argv = server_argv(
            node.dir,
            *("--port", str(port)),
            *("--cluster-enabled", "yes"),
            *("--cluster-config-file", str(node.dir / f"nodes-{port}.conf")),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--cluster-replica-validity-factor", "0"),
            # A replica's first sync starts at once (the default waits 5 s for more replicas).
            *("--repl-diskless-sync-delay", "0"),
            *("--cluster-require-full-coverage", "yes" if self.full_coverage else "no"),
        )
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        return argv

    def stop(self) -> None:
        """SIGKILL and reap every node, then remove the temporary directories. Safe twice."""
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- talking to nodes -----------------------------------------------------------------------

    def command(self, node: RedisNode, *args: Any) -> Any:
        """Run one command on ``node`` and return redis-py's answer."""
        return node_command(node.port, *args, password=self.password)

    def subscribers(self, channel: str) -> dict[int, int]:
        """How many clients listen to ``channel`` on each answering node's port (none: left out)."""
        counts: dict[int, int] = {}
        for node in self.nodes:
            if node.answering:
                count = int(self.command(node, "PUBSUB", "NUMSUB", channel)[1])
                if count:
                    counts[node.port] = count
        return counts

    def _answers(self, node: RedisNode, *args: Any) -> Any:
        """Like :meth:`command`, but None when the node cannot be reached or refuses."""
        try:
            return self.command(node, *args)
        except redis.RedisError:
            return None

    def info(self, node: RedisNode) -> dict[str, str]:
        """``CLUSTER INFO`` of ``node`` as a mapping (empty when unreachable)."""
        raw = self._answers(node, "CLUSTER", "INFO")
        if isinstance(raw, bytes):
            raw = raw.decode()
        if isinstance(raw, dict):
            return {str(key): str(value) for key, value in raw.items()}
        if not isinstance(raw, str):
            return {}
        return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)

    def _settled(self) -> bool:
        return all(self._healthy(node) for node in self.nodes if node.answering)

    def _healthy(self, node: RedisNode) -> bool:
        info = self.info(node)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_ok") == str(SLOTS)
            and info.get("cluster_known_nodes") == str(len(self.nodes))
        )

    def _replicated(self) -> bool:
        for node in self.nodes:
            role = self._answers(node, "ROLE")
            if not isinstance(role, list) or not role:
                return False
            if role[0] == b"slave" and role[3] != b"connected":
                return False
        return True

    # -- slots and failover ---------------------------------------------------------------------

    @staticmethod
    def slot(key: str) -> int:
        """The hash slot of ``key`` (its hash tag, if it has one)."""
        return int(key_slot(key.encode()))

    def master_for_slot(self, slot: int) -> RedisNode:
        """The node that serves ``slot`` as master, according to the first answering node."""
        for node in self.nodes:
            if not node.answering:
                continue
            ranges = self._answers(node, "CLUSTER", "SLOTS")
            if not isinstance(ranges, list):
                continue
            for start, end, master, *_replicas in ranges:
                if start <= slot <= end:
                    return self.node(int(master[1]))
        raise RuntimeError(f"no live node says who serves slot {slot}")

    def master_for_key(self, key: str) -> RedisNode:
        """The node that serves ``key``'s slot as master."""
        return self.master_for_slot(self.slot(key))

    def kill(self, node: RedisNode) -> None:
        """SIGKILL ``node`` and reap it; it stays down."""
        node.kill()

    def wait_failover(
        self, slot: int, timeout: float = 30.0, *, exclude: RedisNode | None = None
    ) -> RedisNode:
        """Return the node that serves ``slot`` once it is a master again, not ``exclude``.

        It waits until an answering node serves the slot as master and every answering node
        says ``ok``.
        """
        deadline = time.monotonic() + timeout
        promoted: list[RedisNode] = []

        def served() -> bool:
            promoted.clear()
            if not self._settled_after_failure():
                return False
            master = self.master_for_slot(slot)
            if master is exclude or not master.answering:
                return False
            role = self._answers(master, "ROLE")
            if isinstance(role, list) and role and role[0] == b"master":
                promoted.append(master)
                return True
            return False

        self._wait(deadline, f"a live master serves slot {slot}", served)
        return promoted[0]

    def _settled_after_failure(self) -> bool:
        for node in self.nodes:
            if not node.answering:
                continue
            info = self.info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
        return True

    def _wait(self, deadline: float, what: str, condition: Callable[[], bool]) -> None:
        while not condition():
            dead = [node for node in self.nodes if node.process is not None and not node.alive]
            # A node killed on purpose is expected; one that exited by itself is a failure.
            exited = [node for node in dead if node.process and node.process.returncode != -9]
            if exited:
                node = exited[0]
                raise RuntimeError(
                    f"redis node {node.port} exited while waiting until {what}; log:\n"
                    f"{node.log_tail()}"
                )
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"-- {n.port}:\n{n.log_tail(8)}" for n in self.nodes if n.answering
                )
                raise TimeoutError(f"timed out waiting until {what}; logs:\n{logs}")
            time.sleep(_POLL_SECONDS)
