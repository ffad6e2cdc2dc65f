"""``python -m proxy [--sandbox]``: build settings, set up logging, serve."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from pydantic import ValidationError

from proxy.observability.logging import configure_logging
from proxy.server import serve
from proxy.settings import Settings, describe_errors, uvloop_available


def main(argv: list[str] | None = None) -> int:
    """Run the service; exit status 2 with one line per bad setting."""
    parser = argparse.ArgumentParser(
        prog="python -m proxy",
        description="Caching proxy for the 1NCE product catalog. Settings: PROXY_* variables.",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="start the built-in 1NCE emulator and use it as the upstream (no credentials)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        return _bad_settings(describe_errors(exc.errors()))
    if not args.sandbox and (missing := settings.missing_credentials()):
        return _bad_settings(missing)
    configure_logging(settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings, sandbox=args.sandbox))
    return 0


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return the event loop factory for ``choice`` (None: asyncio's own)."""
    if choice == "asyncio" or not uvloop_available():
        return None
    import uvloop  # noqa: PLC0415 - optional: not built for every platform

    return uvloop.new_event_loop


def _bad_settings(lines: list[str]) -> int:
    for line in lines:
        print(f"configuration error: {line}", file=sys.stderr)  # noqa: T201 - before logging exists
    return 2


if __name__ == "__main__":
    sys.exit(main())
