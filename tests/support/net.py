"""Loopback addresses for tests: servers on ports nobody else can hold, and a plain HTTP probe."""

from __future__ import annotations

import errno
import http.client
import socket

from aiohttp import web

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback ports that nothing listens on right now.

    Only for what must be named before it runs (a child process's port, an address nobody
    answers on): another process may take the port before it is used, so whatever binds it
    retries on another one when it finds it taken (``address_in_use``). An in-process server
    binds port 0 instead (:func:`serve`).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """Return a loopback port that nothing listens on right now (see :func:`free_ports`)."""
    return free_ports(1)[0]


def address_in_use(error: OSError) -> bool:
    """Whether binding failed because the port is taken."""
    return error.errno == errno.EADDRINUSE


async def serve(runner: web.AppRunner, port: int = 0) -> int:
    """Serve a set-up ``runner`` on loopback ``port`` and return the port it listens on.

    Port 0 lets the kernel pick a free port as it binds, so no other process can be given it
    in the meantime; a given port is for a restart on the port the first start got.
    """
    await web.TCPSite(runner, HOST, port).start()
    bound = runner.addresses[-1]
    return int(bound[1])


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """GET ``path`` on loopback ``port`` (no client proxies, no retries); None if unreachable."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return None
    else:
        return response.status
    finally:
        connection.close()
