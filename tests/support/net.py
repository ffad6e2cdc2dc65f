"""Loopback addresses for tests: free ports, and a plain HTTP probe."""

from __future__ import annotations

import http.client
import socket

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback ports that nothing listens on right now."""
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
    """Return a loopback port that nothing listens on right now."""
    return free_ports(1)[0]


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
