"""Real processes for tests: the 1NCE emulator and proxy replicas.

Every child writes stdout and stderr to a temporary log file (never a pipe that could fill up and
block it). Once a child is reaped, its log is read into memory and the file is removed, so
``log_text()`` still works after ``stop()``. Plain classes only: fixtures live in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from tests.support.net import HOST, free_port, free_ports, http_status
from tests.support.settings import REPO_ROOT, clean_env

_POLL_SECONDS = 0.05
# A child that fails to bind because another test took its port in the meantime gets a new one.
_BIND_ATTEMPTS = 3
_ADDRESS_IN_USE = ("address already in use", "errno 98")


def run_proxy(
    env: Mapping[str, str], *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m proxy ARGS`` to its end, in a clean environment plus ``env``."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "proxy", *args],
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


class ChildStartError(RuntimeError):
    """A child process exited or did not become ready in time; the message carries its log."""


class _Child:
    """One child process with its output in a temporary log file; restartable after it ends."""

    name = "child"

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: str | None = None
        self._past_log = ""

    # -- what subclasses define ---------------------------------------------------------------

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {**clean_env(), "PYTHONUNBUFFERED": "1"}

    def _ready(self) -> bool:
        raise NotImplementedError

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the child and wait until it is ready; on failure it is reaped and this raises."""
        self._spawn()
        self._wait_ready(timeout)

    def _spawn(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} on port {self.port} is already running")
        self._reap()
        descriptor, self._log_path = tempfile.mkstemp(
            prefix=f"proxy-test-{self.name}-", suffix=".log"
        )
        with os.fdopen(descriptor, "wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                self._argv(),
                env=self._env(),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self, timeout: float) -> None:
        attempts = 1
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                text = self._current_log()
                if attempts < _BIND_ATTEMPTS and any(s in text.lower() for s in _ADDRESS_IN_USE):
                    attempts += 1
                    self.port = free_port()
                    self._spawn()
                    continue
                self._reap()
                raise ChildStartError(
                    f"{self.name} exited with {self._process.returncode} before it was ready;"
                    f" log:\n{self.log_text()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ChildStartError(
                    f"{self.name} on port {self.port} not ready after {timeout} s; log:\n"
                    f"{self.log_text()}"
                )
            time.sleep(_POLL_SECONDS)

    def kill(self) -> None:
        """SIGKILL the child (if it still runs) and reap it."""
        if self.alive and self._process is not None:
            self._process.kill()
        self._reap()

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, return the exit code (SIGKILL and -9 if it hangs)."""
        process = self._process
        if process is None:
            raise RuntimeError(f"{self.name} was never started")
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()
        return process.returncode

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; always reaps. Safe to call twice."""
        if self._process is not None:
            self.terminate(timeout)

    def _reap(self) -> None:
        """Wait for an ended (or killed) child and move its log into memory."""
        if self._process is not None:
            self._process.wait(timeout=10)
        if self._log_path is not None:
            self._past_log += self._current_log()
            with contextlib.suppress(OSError):
                Path(self._log_path).unlink()
            self._log_path = None

    # -- output ---------------------------------------------------------------------------------

    def _current_log(self) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as log:  # noqa: PTH123 - plain read of a temp file
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        """Everything the child wrote so far (all runs, if it was restarted)."""
        return self._past_log + self._current_log()

    def log_records(self) -> list[dict[str, Any]]:
        """Parse the log lines that are JSON objects, in order; skip the other lines."""
        records = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

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


class SandboxProcess(_Child):
    """``python -m proxy.sandbox`` on a free loopback port, with async control-API helpers."""

    name = "sandbox"

    def __init__(
        self, port: int | None = None, *, token_ttl: int | None = None, catalog: str | None = None
    ) -> None:
        super().__init__(port)
        self.token_ttl = token_ttl
        self.catalog = catalog

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "proxy.sandbox", "--host", HOST, "--port", str(self.port)]
        if self.token_ttl is not None:
            argv += ["--token-ttl", str(self.token_ttl)]
        if self.catalog is not None:
            argv += ["--catalog", self.catalog]
        return argv

    def _ready(self) -> bool:
        return http_status(self.port, "/_sandbox/stats") == 200

    async def _control(self, method: str, path: str, body: object = None) -> Any:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.request(method, f"{self.url}{path}", json=body) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"{method} {path} answered {response.status}: {text}")
            return json.loads(text)

    async def stats(self) -> dict[str, Any]:
        """Counters, tokens and faults, as ``GET /_sandbox/stats`` reports them."""
        stats: dict[str, Any] = await self._control("GET", "/_sandbox/stats")
        return stats

    async def set_faults(self, **faults: object) -> dict[str, Any]:
        """Replace all faults (omitted ones go back to default); return the faults now active."""
        active: dict[str, Any] = await self._control("POST", "/_sandbox/faults", faults)
        return active

    async def reset(self) -> None:
        """Back to a new emulator: no faults, zero counters, no tokens, default catalog."""
        await self._control("POST", "/_sandbox/reset")

    async def revoke(self) -> int:
        """Invalidate every token issued so far; return how many there were."""
        answer: dict[str, Any] = await self._control("POST", "/_sandbox/revoke")
        return int(answer["revoked"])

    async def set_catalog(self, catalog: list[dict[str, Any]]) -> None:
        """Replace the catalog the emulator serves."""
        await self._control("PUT", "/_sandbox/catalog", catalog)


class ProxyProcess(_Child):
    """``python -m proxy`` with ``clean_env()`` plus ``env``, on loopback and a free port.

    Its stdout (JSON log lines) and stderr go to one temporary file per process.
    """

    name = "proxy"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        management: bool = False,
    ) -> None:
        """Prepare the process; ``management`` gives it a ``PROXY_MANAGEMENT_PORT`` too."""
        super().__init__(port)
        self.env = dict(env or {})
        self.args = list(args)
        self.management_port = free_port() if management else None

    @property
    def management_url(self) -> str:
        """Where the management port answers (the API port's URL when there is none)."""
        return f"http://{HOST}:{self.management_port or self.port}"

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "proxy", *self.args]

    def _env(self) -> dict[str, str]:
        env = {**super()._env(), **self.env, "PROXY_HOST": HOST, "PROXY_PORT": str(self.port)}
        if self.management_port is not None:
            env["PROXY_MANAGEMENT_PORT"] = str(self.management_port)
        return env

    def _ready(self) -> bool:
        # With a management port, /healthz answers only there.
        return http_status(self.management_port or self.port, "/healthz") == 200

    def start(self, timeout: float = 15.0) -> None:
        """Spawn and return once ``/healthz`` answers 200 (the log is in the error otherwise)."""
        super().start(timeout)


class ProxyFleet:
    """``size`` proxy replicas sharing one environment (and so one Redis, one upstream)."""

    def __init__(self, env: Mapping[str, str], size: int = 3, *, args: Sequence[str] = ()) -> None:
        ports = free_ports(size)
        self.replicas = [ProxyProcess(env, port=port, args=args) for port in ports]

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def start(self, timeout: float = 15.0) -> None:
        """Spawn every replica first, then wait for each; on any failure stop them all."""
        try:
            for replica in self.replicas:
                replica._spawn()
            deadline = time.monotonic() + timeout
            for replica in self.replicas:
                replica._wait_ready(max(0.5, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every replica still running (SIGKILL after ``timeout`` s) and reap them all."""
        running = [replica for replica in self.replicas if replica.alive]
        for replica in running:
            if replica._process is not None:
                replica._process.terminate()
        deadline = time.monotonic() + timeout
        for replica in self.replicas:
            if replica._process is not None and replica.alive:
                try:
                    replica._process.wait(timeout=max(0.01, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    replica._process.kill()
            replica._reap()

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
