"""``product-proxy`` (or ``python -m proxy``): serve, or ``check`` the set-up; ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack

from pydantic import ValidationError

from proxy import __version__
from proxy.check import run_checks
from proxy.observability.logging import configure_logging
from proxy.observability.otel_env import otel_problems
from proxy.sandbox import drift_is_valid
from proxy.sandbox.catalog import CATALOG_STYLES
from proxy.server import SandboxOptions, sandbox_settings, serve, start_sandbox
from proxy.settings import Settings, describe_errors, secrets_dir_problem, uvloop_available

EXIT_BAD_SETTINGS = 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; exit status 2 with one line per bad setting."""
    parser = _parser()
    args = parser.parse_args(argv)
    sandbox = _sandbox_options(parser, args)
    settings_or_errors = load_settings(os.environ)
    if isinstance(settings_or_errors, list):
        return _bad_settings(settings_or_errors)
    settings = settings_or_errors
    if sandbox is None and (missing := settings.missing_credentials()):
        return _bad_settings(missing)
    if tracing_problems := otel_problems(os.environ):
        return _bad_settings(tracing_problems)
    if args.command == "check":
        # The report goes to stdout; the parts' own warnings (why Redis did not answer) to
        # stderr, and nothing below a warning, so the report stays readable.
        configure_logging("warning", "console", stream=sys.stderr)
        return asyncio.run(_check(settings, sandbox=sandbox))
    configure_logging(settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings, sandbox=sandbox))
    return 0


def _sandbox_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> SandboxOptions | None:
    """Return the emulator's options under ``--sandbox``, else None; exit 2 on a misuse."""
    sandbox = args.sandbox or getattr(args, "check_sandbox", False)
    for flag, value in (
        ("--sandbox-drift", args.sandbox_drift),
        ("--sandbox-catalog", args.sandbox_catalog),
    ):
        if value is not None and not sandbox:
            parser.error(f"{flag} needs --sandbox (it sets up the emulator's catalog)")
    if not sandbox:
        return None
    if args.sandbox_drift is not None and not drift_is_valid(args.sandbox_drift):
        parser.error("--sandbox-drift must be a number of seconds > 0")
    return SandboxOptions(
        drift=args.sandbox_drift, catalog_style=args.sandbox_catalog or CATALOG_STYLES[0]
    )


def load_settings(environ: Mapping[str, str]) -> Settings | list[str]:
    """Build the settings from the environment (and ``PROXY_SECRETS_DIR``), or say what is wrong.

    The secrets directory is read by pydantic-settings: one file per variable, named like it
    (``PROXY_CLIENT_SECRET``), surrounding whitespace dropped; a variable set in the
    environment wins over its file.
    """
    secrets_dir = environ.get("PROXY_SECRETS_DIR") or None
    if secrets_dir is not None and (problem := secrets_dir_problem(secrets_dir)):
        return [f"PROXY_SECRETS_DIR: {problem}"]
    try:
        return Settings(_secrets_dir=secrets_dir)
    except ValidationError as exc:
        return describe_errors(exc.errors())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="product-proxy",
        description=(
            "Caching proxy for the 1NCE product catalog. Settings: PROXY_* variables "
            "(and files in PROXY_SECRETS_DIR). With no command, it serves."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sandbox_help = "use the built-in 1NCE emulator as the upstream (no credentials needed)"
    parser.add_argument("--sandbox", action="store_true", help=sandbox_help)
    parser.add_argument(
        "--sandbox-drift",
        type=float,
        metavar="SECONDS",
        help="with --sandbox: change the emulator's catalog every SECONDS (a fixed cycle: a "
        "price, an order limit, a product added and removed again)",
    )
    parser.add_argument(
        "--sandbox-catalog",
        choices=CATALOG_STYLES,
        help="with --sandbox: irregular (the default: the odd shapes real bodies have) or strict "
        "(the same products valid against 1NCE's published Product schema, for clients "
        "generated from it)",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    check = commands.add_parser(
        "check",
        help="check the settings, the store and the upstream's token endpoint, then exit",
        description=(
            "Check the settings, reach the store (Redis) and ask the upstream for a token, "
            "once each; one line per check, no secret printed. Exit 0: all passed; "
            "1: a check failed; 2: bad settings."
        ),
    )
    # Its own name: a subcommand's default would overwrite ``product-proxy --sandbox check``.
    check.add_argument("--sandbox", dest="check_sandbox", action="store_true", help=sandbox_help)
    return parser


async def _check(settings: Settings, *, sandbox: SandboxOptions | None) -> int:
    async with AsyncExitStack() as stack:
        if sandbox is not None:
            settings = sandbox_settings(settings, await start_sandbox(stack, sandbox))
        return await run_checks(settings, sys.stdout)


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return the event loop factory for ``choice`` (None: asyncio's own)."""
    if choice == "asyncio" or not uvloop_available():
        return None
    import uvloop  # noqa: PLC0415 - optional: not built for every platform

    return uvloop.new_event_loop


def _bad_settings(lines: list[str]) -> int:
    for line in lines:
        print(f"configuration error: {line}", file=sys.stderr)  # noqa: T201 - before logging exists
    return EXIT_BAD_SETTINGS


def console_script() -> None:
    """Entry point of the ``product-proxy`` command."""
    sys.exit(main())


if __name__ == "__main__":
    console_script()
