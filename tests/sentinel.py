"""A local Redis Sentinel cluster for failover tests: one master, one replica, three sentinels.

Everything runs on 127.0.0.1 with the ``redis-server`` binary the other tests use, each node in
its own temporary directory (sentinels rewrite their config file, so it must be writable).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self, TypeAlias

from tests.processes import HOST, free_ports
from tests.support import redis_server_binary

_POLL_SECONDS = 0.1
_SENTINELS = 3


class RespError(Exception):
    """An error reply (``-ERR ...``) from a Redis node."""


RespValue: TypeAlias = "bytes | int | list[RespValue] | None"


class _Incomplete(Exception):
    """More bytes are needed to finish parsing a reply."""


def _encode(args: tuple[str, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _parse(data: bytes, pos: int = 0) -> tuple[RespValue, int]:
    """Parse one RESP2 reply starting at ``pos``; return it and the position after it."""
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, after = data[pos : pos + 1], data[pos + 1 : end], end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        raise RespError(line.decode(errors="replace"))
    if kind == b":":
        return int(line), after
    if kind == b"$":
        return _parse_bulk(data, int(line), after)
    if kind == b"*":
        return _parse_array(data, int(line), after)
    raise RespError(f"unexpected reply {data[pos : pos + 40]!r}")


def _parse_bulk(data: bytes, size: int, pos: int) -> tuple[RespValue, int]:
    if size < 0:
        return None, pos
    if len(data) < pos + size + 2:
        raise _Incomplete
    return data[pos : pos + size], pos + size + 2


def _parse_array(data: bytes, count: int, pos: int) -> tuple[RespValue, int]:
    if count < 0:
        return None, pos
    items: list[RespValue] = []
    for _ in range(count):
        item, pos = _parse(data, pos)
        items.append(item)
    return items, pos


def _roundtrip(port: int, args: tuple[str, ...], timeout: float) -> tuple[bytes, RespValue]:
    """Send one command over a new connection; return the raw reply and its parsed value."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        data = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"port {port} closed the connection mid-reply")
            data += chunk
            try:
                value, _ = _parse(data)
            except _Incomplete:
                continue
            return data, value


class _Node:
    """One ``redis-server`` process (data node or sentinel) with its own directory."""

    def __init__(self, role: str, port: int, root: Path) -> None:
        self.role = role
        self.port = port
        self.dir = root / f"{role}-{port}"
        self.dir.mkdir()
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, the tests' redis-server
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class SentinelCluster:
    """A master, a replica of it and three sentinels (quorum 2) monitoring ``master_name``."""

    def __init__(self, master_name: str = "mymaster") -> None:
        self.master_name = master_name
        self._root = Path(tempfile.mkdtemp(prefix="proxy-test-sentinel-"))
        master_port, replica_port, *sentinel_ports = free_ports(2 + _SENTINELS)
        self.master_port = master_port
        """The port of the node that starts as master (it may not be master any more)."""
        self.replica_port = replica_port
        """The port of the node that starts as replica."""
        self._data = {
            master_port: _Node("master", master_port, self._root),
            replica_port: _Node("replica", replica_port, self._root),
        }
        self._sentinels = [_Node("sentinel", port, self._root) for port in sentinel_ports]

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
        master = self._data[self.master_port]
        master.spawn(self._data_argv(master))
        self._wait(deadline, "the master answers PING", lambda: self._pings(self.master_port))
        replica = self._data[self.replica_port]
        replica.spawn([*self._data_argv(replica), "--replicaof", HOST, str(self.master_port)])
        for sentinel in self._sentinels:
            config = sentinel.dir / "sentinel.conf"
            config.write_text(self._sentinel_config(sentinel))
            sentinel.spawn([redis_server_binary(), str(config), "--sentinel"])
        self._wait(deadline, "the replica's link to the master is up", self._replica_linked)
        self._wait(deadline, "every sentinel sees the whole cluster", self._sentinels_settled)

    def _data_argv(self, node: _Node) -> list[str]:
        return [
            redis_server_binary(),
            "--port",
            str(node.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(node.dir),
            "--logfile",
            str(node.log),
        ]

    def _sentinel_config(self, node: _Node) -> str:
        name = self.master_name
        return "\n".join(
            [
                f"port {node.port}",
                f"bind {HOST}",
                f"dir {node.dir}",
                f"logfile {node.log}",
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
        for node in [*self._sentinels, *self._data.values()]:
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

    def command(self, port: int, *args: str) -> bytes:
        """Run one command on the node at ``port``; return the raw RESP reply."""
        raw, _ = _roundtrip(port, args, timeout=2)
        return raw

    def query(self, port: int, *args: str) -> RespValue:
        """Run one command on the node at ``port``; return the parsed reply (RespError on -ERR)."""
        _, value = _roundtrip(port, args, timeout=2)
        return value

    def _pings(self, port: int) -> bool:
        try:
            return self.query(port, "PING") == b"PONG"
        except (OSError, RespError):
            return False

    def _replica_linked(self) -> bool:
        try:
            info = self.query(self.replica_port, "INFO", "replication")
        except (OSError, RespError):
            return False
        return isinstance(info, bytes) and b"master_link_status:up" in info

    def _sentinels_settled(self) -> bool:
        for node in self._sentinels:
            try:
                reply = self.query(node.port, "SENTINEL", "MASTER", self.master_name)
            except (OSError, RespError):
                return False
            fields = _pairs(reply)
            if not (
                "master" in fields.get("flags", "").split(",")
                and fields.get("num-slaves") == "1"
                and fields.get("num-other-sentinels") == str(_SENTINELS - 1)
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
                    f"redis {node.role} on port {node.port} exited while waiting until {what};"
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
                reply = self.query(
                    node.port, "SENTINEL", "get-master-addr-by-name", self.master_name
                )
            except (OSError, RespError):
                continue
            if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
                ports.append(int(reply[1]))
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

    def is_master(self, port: int) -> bool:
        """Whether the node at ``port`` answers ``ROLE`` as a master."""
        try:
            role = self.query(port, "ROLE")
        except (OSError, RespError):
            return False
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


def _pairs(reply: RespValue) -> dict[str, str]:
    """Turn a flat ``[field, value, field, value, ...]`` reply into a mapping of strings."""
    if not isinstance(reply, list):
        return {}
    texts = [
        item.decode(errors="replace") if isinstance(item, bytes) else str(item) for item in reply
    ]
    return dict(zip(texts[::2], texts[1::2], strict=False))
