"""Command line: run the 1NCE emulator on its own, `python -m proxy.sandbox`."""

from __future__ import annotations

import argparse
import socket
import sys

from aiohttp import web
from yarl import URL

from proxy.sandbox.app import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    create_sandbox_app,
    drift_is_valid,
)
from proxy.sandbox.catalog import CATALOG_STYLES

_MAX_PORT = 65535


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.sandbox", description="Run the 1NCE Management API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8081, help="port to listen on; 0 picks one")
    parser.add_argument(
        "--token-ttl", type=int, default=3600, help="seconds an issued token stays valid"
    )
    parser.add_argument(
        "--catalog",
        choices=CATALOG_STYLES,
        default=CATALOG_STYLES[0],
        help="irregular: the odd shapes real bodies have (nulls, a single charge object, unknown "
        "fields); strict: the same products valid against 1NCE's published Product schema",
    )
    parser.add_argument(
        "--drift",
        type=float,
        metavar="SECONDS",
        help="change the catalog every SECONDS (a fixed cycle of changes); off by default",
    )
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.port <= _MAX_PORT:
        parser.error(f"--port must be between 0 and {_MAX_PORT}")
    if arguments.token_ttl < 1:
        parser.error("--token-ttl must be at least 1")
    if arguments.drift is not None and not drift_is_valid(arguments.drift):
        parser.error("--drift must be a number of seconds > 0")
    return arguments


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until interrupted, after one line giving its URL and credentials."""
    arguments = _arguments(argv)
    app = create_sandbox_app(
        token_ttl=arguments.token_ttl, catalog_style=arguments.catalog, drift=arguments.drift
    )
    # Binding here, before serving, tells the real port when --port is 0.
    try:
        family = socket.getaddrinfo(arguments.host, arguments.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((arguments.host, arguments.port), family=family)
    except OSError as error:
        sys.exit(f"cannot listen on {arguments.host} port {arguments.port}: {error}")
    port = sock.getsockname()[1]
    url = URL.build(scheme="http", host=arguments.host, port=port)

    drift = "" if arguments.drift is None else f", catalog drift every {arguments.drift:g} s"

    def announce(_message: str) -> None:
        sys.stdout.write(
            f"1NCE sandbox on {url} (client id {SANDBOX_CLIENT_ID}, "
            f"client secret {SANDBOX_CLIENT_SECRET}, token TTL {arguments.token_ttl} s, "
            f"{arguments.catalog} catalog{drift})\n"
        )
        sys.stdout.flush()

    web.run_app(app, sock=sock, print=announce, access_log=None)


if __name__ == "__main__":
    main()
