"""A local Redis Sentinel cluster for failover tests: one master, one replica, three sentinels.

Everything runs on 127.0.0.1 with the ``redis-server`` binary the other tests use, each node in
its own temporary directory (sentinels rewrite their config file, so it must be writable).
Data nodes and sentinels alike are asked through redis-py.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from tests.support.net import HOST, free_ports
from tests.support.redis import (
    RedisNode,
    node_client,
    node_command,
    redis_server_binary,
    server_argv,
)

_POLL_SECONDS = 0.1
_SENTINELS = 3


class SentinelCluster:
    """A master, a replica of it and three sentinels (quorum 2) monitoring ``master_name``."""

    def __init__(self, master_name: str = "mymaster") -> None:
        self.master_name = master_name
        self._root = Path(tempfile.mkdtemp(prefix="proxy-test-sentinel-"))
        master_port, replica_port, *sentinel_ports = free_ports(2 + _SENTINELS)
        self._master = RedisNode(master_port, self._root / "master", name="master")
        self._replica = RedisNode(replica_port, self._root / "replica", name="replica")
        self._sentinels = [
            RedisNode(port, self._root / f"sentinel-{index}", name="sentinel")
            for index, port in enumerate(sentinel_ports)
        ]

    @property
    def master_port(self) -> int:
        """The port of the node that starts as master (it may not be master any more)."""
        return self._master.port

    @property
    def replica_port(self) -> int:
        """The port of the node that starts as replica."""
        return self._replica.port

    @property
    def _data(self) -> dict[int, RedisNode]:
        return {node.port: node for node in (self._master, self._replica)}

    # -- addresses ------------------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self._sentinels]

    @property
    def sentinels_setting(self) -> str:
        """The sentinels as ``host:port,host:port,...``, the form a setting takes them in."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    # -- start and stop -------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start every node; return once replication is up and every sentinel sees the others."""
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        # One at a time: each node's argv names the master's port, final once it has started.
        def left() -> float:
            return max(deadline - time.monotonic(), 1.0)

        self._master.launch(partial(self._data_argv, self._master), timeout=left())
        self._replica.launch(
            lambda port: [
                *self._data_argv(self._replica, port),
                *("--replicaof", HOST, str(self.master_port)),
            ],
            timeout=left(),
        )
        for sentinel in self._sentinels:
            sentinel.launch(partial(self._sentinel_argv, sentinel), timeout=left())
        self._wait(deadline, "the replica's link to the master is up", self._replica_linked)
        self._wait(deadline, "every sentinel sees the whole cluster", self._sentinels_settled)

    @staticmethod
    def _data_argv(node: RedisNode, port: int) -> list[str]:
        return server_argv(node.dir, "--port", str(port))

    def _sentinel_argv(self, node: RedisNode, port: int) -> list[str]:
        # A sentinel rewrites its config file: a new one for every start.
        config = node.dir / "sentinel.conf"
        config.write_text(self._sentinel_config(node, port))
        return [redis_server_binary(), str(config), "--sentinel"]

    def _sentinel_config(self, node: RedisNode, port: int) -> str:
        name = self.master_name
        return "\n".join(
            [
                f"port {port}",
                f"bind {HOST}",
                f"dir {node.dir}",
                "sentinel resolve-hostnames no",
                f"sentinel monitor {name} {HOST} {self.master_port} 2",
                f"sentinel down-after-milliseconds {name} 1000",
                f"sentinel failover-timeout {name} 5000",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )

    def stop(self) -> None:
        """SIGKILL and reap every node, then remove the temporary directories."""
        for node in [*self._sentinels, self._master, self._replica]:
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

    # -- commands -------------------------------------------------------------------------------

    def command(self, port: int, *args: Any) -> Any:
        """Run one command on the node (or sentinel) at ``port``; return redis-py's reply."""
        return node_command(port, *args)

    def _answer(self, port: int, *args: Any) -> Any:
        """Like :meth:`command`, but None when the node cannot be reached or refuses."""
        try:
            return self.command(port, *args)
        except redis.RedisError:
            return None

    def _replica_linked(self) -> bool:
        try:
            with node_client(self.replica_port) as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return bool(info.get("master_link_status") == "up")

    def _sentinels_settled(self) -> bool:
        for node in self._sentinels:
            try:
                with node_client(node.port) as client:
                    masters = client.sentinel_masters()
            except redis.RedisError:
                return False
            state = masters.get(self.master_name) if isinstance(masters, dict) else None
            if not (
                state is not None
                and state["is_master"]
                and state["num-slaves"] == 1
                and state["num-other-sentinels"] == _SENTINELS - 1
            ):
                return False
        return True

    def _wait(self, deadline: float, what: str, condition: Callable[[], bool]) -> None:
        while not condition():
            dead = [
                node
                for node in [*self._data.values(), *self._sentinels]
                if node.process and not node.alive
            ]
            if dead:
                node = dead[0]
                raise RuntimeError(
                    f"redis {node.name} on port {node.port} exited while waiting until {what};"
                    f" log:\n{node.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting until {what}")
            time.sleep(_POLL_SECONDS)

    # -- failover -------------------------------------------------------------------------------

    def _reported_masters(self) -> list[int]:
        """Ask each reachable sentinel for the master's port (unreachable ones are skipped)."""
        ports = []
        for node in self._sentinels:
            try:
                with node_client(node.port) as client:
                    address = client.sentinel_get_master_addr_by_name(
                        self.master_name, return_responses=True
                    )
            except redis.RedisError:
                continue
            if isinstance(address, tuple):
                ports.append(address[1])
        return ports

    def current_master_port(self) -> int:
        """Return the master's port according to the first sentinel that answers."""
        reported = self._reported_masters()
        if not reported:
            raise RuntimeError("no sentinel answered get-master-addr-by-name")
        return reported[0]

    def kill_master(self) -> int:
        """SIGKILL the current master's process and reap it; return its port."""
        port = self.current_master_port()
        self._data[port].kill()
        return port

    def freeze_master(self) -> int:
        """SIGSTOP the current master (it accepts connections, never answers); return its port."""
        port = self.current_master_port()
        self._data[port].pause()
        return port

    def is_master(self, port: int) -> bool:
        """Whether the node at ``port`` answers ``ROLE`` as a master."""
        role = self._answer(port, "ROLE")
        return isinstance(role, list) and bool(role) and role[0] == b"master"

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until every reachable sentinel names one new master that answers as master."""
        deadline = time.monotonic() + timeout
        while True:
            reported = set(self._reported_masters())
            if len(reported) == 1:
                (port,) = reported
                if port != old_port and self.is_master(port):
                    return port
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"-- sentinel {n.port}:\n{n.log_tail(15)}" for n in self._sentinels
                )
                raise TimeoutError(
                    f"no failover from port {old_port} within {timeout} s"
                    f" (sentinels report {sorted(reported)}); logs:\n{logs}"
                )
            time.sleep(_POLL_SECONDS)
