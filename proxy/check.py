"""``product-proxy check``: what an operator runs first when something is wrong.

It checks, once each and in order, what the service needs to start serving: the settings
(already parsed by the caller), the shared store, and the upstream's token endpoint. Each
check prints one line; no secret is ever printed. Nothing is written to the store and no
catalog is fetched: the token is asked for on a private, in-memory backplane.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

from proxy import __version__
from proxy.backplane.connect import connect
from proxy.backplane.keys import KeySpace
from proxy.backplane.memory import MemoryBackplane
from proxy.observability.metrics import Metrics
from proxy.settings import Settings
from proxy.upstream.errors import UpstreamAuthError, UpstreamError
from proxy.upstream.factory import build_upstream
from proxy.upstream.options import UpstreamOptions
from proxy.upstream.session import open_session

EXIT_OK = 0
EXIT_FAILED = 1


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check: its name, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str


async def run_checks(settings: Settings, out: TextIO) -> int:
    """Run every check, print a line for each to ``out``; return the exit status."""
    print(f"product-proxy {__version__} check", file=out)
    findings = [_settings_finding(settings)]
    _print(findings[-1], out)
    findings.append(await _store_finding(settings))
    _print(findings[-1], out)
    findings.append(await _token_finding(settings))
    _print(findings[-1], out)
    failed = [finding.name for finding in findings if not finding.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=out)
        return EXIT_FAILED
    print("all checks passed", file=out)
    return EXIT_OK


def _print(finding: Finding, out: TextIO) -> None:
    status = "ok" if finding.ok else "FAIL"
    print(f"{finding.name:<9} {status:<4}  {finding.detail}", file=out)


def _settings_finding(settings: Settings) -> Finding:
    if settings.api_keys_file:
        api = f"API keys from {settings.api_keys_file}"
    elif settings.api_keys:
        api = f"{len(settings.api_keys)} API key(s)"
    else:
        api = "API open (no keys)"
    admin = "admin on" if settings.admin_token is not None else "admin off"
    return Finding(
        "settings",
        ok=True,
        detail=f"upstream {settings.upstream_url}; store {store_kind(settings)}; {api}; {admin}",
    )


def store_kind(settings: Settings) -> str:
    """Name the store the settings choose, with where it is but never a password."""
    if settings.redis_cluster_nodes:
        tls = " over TLS" if settings.redis_tls else ""
        return f"Redis Cluster via {', '.join(settings.redis_cluster_nodes)}{tls}"
    if settings.redis_sentinels:
        return (
            f"Redis via Sentinels {', '.join(settings.redis_sentinels)} "
            f"(master {settings.redis_sentinel_master})"
        )
    if settings.redis_url is not None:
        parts = urlsplit(settings.redis_url.get_secret_value())
        where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        return f"Redis at {parts.scheme}://{where}"
    return "memory (no Redis set; replicas share nothing)"


async def _store_finding(settings: Settings) -> Finding:
    backplane = connect(settings, channel="product-proxy-check", metrics=Metrics())
    if backplane.state == "memory":
        return Finding("store", ok=True, detail="none to reach (in-process memory)")
    started = time.perf_counter()
    try:
        answered = await backplane.ping()
    finally:
        await backplane.close()
    if not answered:
        return Finding(
            "store",
            ok=False,
            detail=(
                f"no answer from {store_kind(settings)} within {settings.redis_timeout:g}s "
                "(the redis_failed line on stderr says why)"
            ),
        )
    return Finding("store", ok=True, detail=f"PING answered in {_ms(started)}")


async def _token_finding(settings: Settings) -> Finding:
    try:
        options = UpstreamOptions.from_settings(settings)
    except ValueError:
        return Finding("token", ok=False, detail="PROXY_CLIENT_ID and PROXY_CLIENT_SECRET unset")
    token_url = options.token_url
    started = time.perf_counter()
    async with open_session(settings) as session:
        # A private store: the check must not replace or announce the deployment's shared token.
        upstream = build_upstream(
            session,
            options,
            backplane=MemoryBackplane(),
            keys=KeySpace("check", settings.account_hash),
            owner="check",
            metrics=Metrics(),
        )
        try:
            await upstream.tokens.get()
        except UpstreamAuthError as exc:
            return Finding(
                "token",
                ok=False,
                detail=f"{exc} at {token_url}: check PROXY_CLIENT_ID and PROXY_CLIENT_SECRET",
            )
        except UpstreamError as exc:
            return Finding("token", ok=False, detail=f"{exc} ({token_url})")
        finally:
            await upstream.close()
    return Finding("token", ok=True, detail=f"issued by {token_url} in {_ms(started)}")


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"
