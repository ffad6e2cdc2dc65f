"""Benchmark the proxy against what a user could pick instead, in one run on one machine.

Usage (after ``./scripts/test`` or ``./scripts/demo`` made ``.venv``)::

    .venv/bin/python scripts/bench.py                 # everything (about 6 minutes)
    .venv/bin/python scripts/bench.py --quick         # shorter runs, no 1M-request RSS check

What it prints, all measured now, on loopback, with ``wrk`` as the load generator:

1. Warm-cache ``GET /v1/products`` and ``GET /api/v1/products``: requests per second and
   p50/p99 latency at fixed concurrency for
   - the proxy (one process, default settings: metrics on, default access log),
   - a minimal aiohttp app returning the same bytes from memory (the stack's limit),
   - nginx with ``proxy_cache`` in front of the sandbox (``/v1/products`` only; when nginx
     is installed),
   and the ratios proxy/minimal and proxy/nginx, plus the proxy's RSS before and after.
2. Three replicas sharing one Redis: upstream products requests for a cold stampede of 1000
   requests, and for steady load with a short TTL, against the ideal.
3. The proxy's RSS over one million requests.
4. User-space CPU instructions per warm request under callgrind, proxy against minimal; with
   ``--otel``, also the proxy with the ``otel`` extra blocked from import ("absent") against
   the proxy with it installed but off (no ``OTEL_*`` variables), and their ratio.

Needs ``wrk`` (Debian package) and ``redis-server``; nginx is optional; part 4 needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLIENT_ID = "sandbox-client"
PATHS = ("/v1/products", "/api/v1/products")
CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the emulator's published demo credential

MINIMAL_APP = """
import sys
from aiohttp import web

def main() -> None:
    port = int(sys.argv[1])
    products, api = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()

    async def v1(request: web.Request) -> web.Response:
        return web.Response(body=products, content_type="application/json")

    async def simplified(request: web.Request) -> web.Response:
        return web.Response(body=api, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/products", v1)
    app.router.add_get("/api/v1/products", simplified)
    loop = None
    if sys.argv[4] == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)

main()
"""

# The proxy as ``python -m proxy`` runs it, but unable to import OpenTelemetry, as where the
# otel extra is not installed (other packages that look for it, redis-py, also do without).
OTEL_ABSENT = """
import sys
sys.modules["opentelemetry"] = None
from proxy.__main__ import main
sys.exit(main(sys.argv[1:]))
"""

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=catalog:1m max_size=10m inactive=10m;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/products {{
            proxy_pass {upstream}/v1/products;
            proxy_set_header Authorization "Bearer {token}";
            proxy_cache catalog;
            proxy_cache_valid 200 5m;
            proxy_cache_lock on;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            add_header Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Load:
    """One wrk run: throughput and latency."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def free_port() -> int:
    """Return a loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, within: float = 20.0) -> None:
    """Return once ``url`` answers 200."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {within} s")


def get(url: str, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` and return the body."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        body: bytes = response.read()
        return body


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


_NOT_INHERITED = ("PROXY_", "OTEL_")


@contextmanager
def process(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` for the duration of the block; always stopped and reaped.

    The caller's own ``PROXY_*`` settings never reach it, nor its ``OTEL_*`` (no tracing).
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    full_env.update(env or {})
    child = subprocess.Popen(  # noqa: S603 - our own interpreter, nginx or redis-server
        list(argv), env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wrk(url: str, *, seconds: float, connections: int) -> Load:
    """Run wrk (one thread) against ``url``; parse its summary."""
    out = subprocess.run(  # noqa: S603 - wrk from PATH with our own arguments
        [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(_found(r"Requests/sec:\s+([\d.]+)", out))
    requests = int(_found(r"(\d+) requests in", out))
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Load(rps, _millis(out, "50%"), _millis(out, "99%"), requests, errors)


def _found(pattern: str, out: str) -> str:
    """Return the first group of ``pattern`` in wrk's output; fail loudly without it."""
    match = re.search(pattern, out)
    if match is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{out}")
    return match.group(1)


def _millis(out: str, percentile: str) -> float:
    match = re.search(rf"{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        return math.nan
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def sandbox_stats(url: str) -> dict[str, object]:
    """Return the emulator's counters."""
    stats: dict[str, object] = json.loads(get(f"{url}/_sandbox/stats"))
    return stats


def sandbox_faults(url: str, **faults: object) -> None:
    """Set the emulator's faults (all others off)."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{url}/_sandbox/faults",
        data=json.dumps(faults).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 - loopback


def start_sandbox(stack: ExitStack) -> str:
    """Start ``python -m proxy.sandbox`` on a free port; return its URL."""
    port = free_port()
    stack.enter_context(process([PYTHON, "-m", "proxy.sandbox", "--port", str(port)]))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/_sandbox/stats")
    return url


def proxy_env(upstream: str, port: int, **extra: str) -> dict[str, str]:
    """Environment for a proxy in front of the sandbox: default settings otherwise."""
    env = {
        "PROXY_UPSTREAM_URL": upstream,
        "PROXY_CLIENT_ID": CLIENT_ID,
        "PROXY_CLIENT_SECRET": CLIENT_SECRET,
        "PROXY_HOST": "127.0.0.1",
        "PROXY_PORT": str(port),
    }
    env.update(extra)
    return env


def uses_uvloop() -> bool:
    """Whether the proxy runs on uvloop here (the minimal app then does too, for fairness)."""
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def section_throughput(args: argparse.Namespace) -> None:
    """Part 1: proxy vs minimal aiohttp vs nginx, in alternating rounds."""
    print(
        f"\n== 1. warm-cache throughput: wrk -t1 -c{args.connections} -d{args.seconds:g}s, "
        f"loopback, {args.rounds} alternating rounds, median shown"
    )
    with ExitStack() as stack:
        upstream = start_sandbox(stack)
        port = free_port()
        proxy = stack.enter_context(process([PYTHON, "-m", "proxy"], proxy_env(upstream, port)))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        products = get(f"{base}/v1/products")
        simplified = get(f"{base}/api/v1/products")
        rss_before = rss_kib(proxy.pid)

        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        (workdir / "minimal.py").write_text(MINIMAL_APP)
        (workdir / "products.json").write_bytes(products)
        (workdir / "api.json").write_bytes(simplified)
        minimal_port = free_port()
        loop = "uvloop" if uses_uvloop() else "asyncio"
        minimal_argv = [
            PYTHON,
            str(workdir / "minimal.py"),
            str(minimal_port),
            str(workdir / "products.json"),
            str(workdir / "api.json"),
            loop,
        ]
        stack.enter_context(process(minimal_argv))
        minimal = f"http://127.0.0.1:{minimal_port}"
        wait_http(f"{minimal}/v1/products")

        nginx_url = start_nginx(stack, workdir, upstream) if shutil.which("nginx") else None

        runs: dict[tuple[str, str], list[Load]] = {}
        for path in PATHS:
            targets = [("proxy", base), ("minimal aiohttp", minimal)]
            if nginx_url and path == "/v1/products":
                targets.append(("nginx proxy_cache", nginx_url))
            for _, url in targets:
                wrk(f"{url}{path}", seconds=2, connections=args.connections)  # warm-up
            # Rounds alternate between the servers, so a slow spell of the machine (other
            # tenants, CPU frequency) hits each of them rather than one.
            for _ in range(args.rounds):
                for name, url in targets:
                    load = wrk(f"{url}{path}", seconds=args.seconds, connections=args.connections)
                    runs.setdefault((path, name), []).append(load)
        rss_after = rss_kib(proxy.pid)

    print(f"   event loop: {loop}; nginx: {'1 worker' if nginx_url else 'not installed'}")
    header = f"{'path':<18} {'server':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(f"   {header}   req/s of each round")
    median = {key: _median(loads) for key, loads in runs.items()}
    for (path, name), load in median.items():
        each = " ".join(f"{run.rps:.0f}" for run in runs[path, name])
        errors = sum(run.errors for run in runs[path, name])
        print(
            f"   {path:<18} {name:<18} {load.rps:>9.0f} {load.p50_ms:>8.2f} {load.p99_ms:>8.2f} "
            f"{errors:>7}   {each}"
        )
    for path in PATHS:
        proxy_rps = median[path, "proxy"].rps
        rounds = [
            f"{mine.rps / theirs.rps:.2f}"
            for mine, theirs in zip(runs[path, "proxy"], runs[path, "minimal aiohttp"], strict=True)
        ]
        line = (
            f"   {path}: proxy/minimal = {proxy_rps / median[path, 'minimal aiohttp'].rps:.2f}"
            f" (rounds: {', '.join(rounds)})"
        )
        if (path, "nginx proxy_cache") in median:
            line += f", proxy/nginx = {proxy_rps / median[path, 'nginx proxy_cache'].rps:.2f}"
        print(line)
    print(f"   proxy RSS: {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after")


def _median(loads: list[Load]) -> Load:
    """Return the run with the median throughput (the lower middle one of an even count)."""
    ordered = sorted(loads, key=lambda load: load.rps)
    return ordered[(len(ordered) - 1) // 2]


def start_nginx(stack: ExitStack, workdir: Path, upstream: str) -> str:
    """Start nginx with proxy_cache in front of the sandbox; return its URL.

    Its token is fetched once here: nginx cannot do OAuth itself (that is part of what the
    proxy adds).
    """
    token_request = urllib.request.Request(  # noqa: S310 - loopback
        f"{upstream}/oauth/token",
        data=b'{"grant_type":"client_credentials"}',
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic "
            + __import__("base64").b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(token_request, timeout=5) as response:  # noqa: S310 - loopback
        token = json.loads(response.read())["access_token"]
    port = free_port()
    nginx_dir = workdir / "nginx"
    nginx_dir.mkdir()
    # nginx's workers drop root for nobody; they must reach their cache and temp folders.
    workdir.chmod(0o755)
    nginx_dir.chmod(0o777)
    conf = nginx_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=nginx_dir, port=port, upstream=upstream, token=token))
    stack.enter_context(
        process([shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(nginx_dir)])
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/products")
    return url


def section_replicas(args: argparse.Namespace) -> None:
    """Part 2: three replicas, one Redis: upstream requests against the ideal."""
    redis = shutil.which("redis-server")
    if redis is None:
        print("\n== 2. replicas: skipped (no redis-server on PATH)")
        return
    ttl = args.ttl
    print(f"\n== 2. three replicas, one Redis (PROXY_CACHE_TTL={ttl:g})")
    with ExitStack() as stack:
        upstream = start_sandbox(stack)
        redis_port = free_port()
        redis_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-redis-"))
        stack.enter_context(
            process(
                [
                    redis,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    redis_dir,
                ]
            )
        )
        time.sleep(0.3)
        ports = [free_port() for _ in range(3)]
        for port in ports:
            env = proxy_env(
                upstream,
                port,
                PROXY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                PROXY_CACHE_TTL=f"{ttl:g}",
            )
            stack.enter_context(process([PYTHON, "-m", "proxy"], env))
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            wait_http(f"{url}/healthz")

        sandbox_faults(upstream, products_latency=1.5)
        statuses = asyncio.run(stampede(urls, args.stampede))
        stats = sandbox_stats(upstream)
        print(
            f"   cold stampede: {args.stampede} concurrent requests over 3 replicas -> "
            f"{statuses.get(200, 0)} x 200; upstream products requests: "
            f"{stats['products_requests']} (ideal 1), "
            f"token requests: {stats['token_requests']} (ideal 1)"
        )

        sandbox_faults(upstream, products_latency=0.05)
        before = int(str(sandbox_stats(upstream)["products_requests"]))
        started = time.monotonic()
        procs = [
            subprocess.Popen(  # noqa: S603 - wrk from PATH
                [
                    shutil.which("wrk") or "wrk",
                    "-t1",
                    "-c8",
                    f"-d{args.steady:g}s",
                    f"{url}/v1/products",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for url in urls
        ]
        outputs = [proc.communicate()[0] for proc in procs]
        elapsed = time.monotonic() - started
        fetched = int(str(sandbox_stats(upstream)["products_requests"])) - before
        served = sum(int(_found(r"(\d+) requests in", out)) for out in outputs)
        # A period starts when a refresh lands, a little after the previous one expired (the
        # next request notices, the fetch takes its time), so one fewer than the count of
        # whole TTLs is also ideal.
        periods = math.floor(elapsed / ttl)
        print(
            f"   steady load: {elapsed:.0f} s, {served} requests over 3 replicas -> "
            f"upstream products requests: {fetched} "
            f"(ideal: one per TTL period, {periods} in {elapsed:.0f} s, plus at most one; "
            f"{'within' if fetched <= periods + 1 else 'ABOVE'} it)"
        )


async def stampede(urls: list[str], count: int) -> dict[int, int]:
    """``count`` concurrent GETs round robin; statuses counted."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as s:

        async def one(index: int) -> int:
            async with s.get(f"{urls[index % len(urls)]}/v1/products") as response:
                await response.read()
                return response.status

        results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    counted: dict[int, int] = {}
    for result in results:
        key = result if isinstance(result, int) else 0
        counted[key] = counted.get(key, 0) + 1
    return counted


def section_rss(args: argparse.Namespace) -> None:
    """Part 3: RSS over a million requests."""
    if args.rss_requests <= 0:
        return
    print(
        f"\n== 3. proxy RSS over {args.rss_requests:,} requests (/v1/products and /api/v1/products)"
    )
    with ExitStack() as stack:
        upstream = start_sandbox(stack)
        port = free_port()
        proxy = stack.enter_context(process([PYTHON, "-m", "proxy"], proxy_env(upstream, port)))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        get(f"{base}/v1/products")
        wrk(f"{base}/v1/products", seconds=3, connections=args.connections)
        start_rss = rss_kib(proxy.pid)
        done, samples = 0, []
        while done < args.rss_requests:
            for path in ("/v1/products", "/api/v1/products"):
                done += wrk(f"{base}{path}", seconds=10, connections=args.connections).requests
            samples.append((done, rss_kib(proxy.pid)))
        end_rss = rss_kib(proxy.pid)
    trail = ", ".join(f"{n // 1000}k: {r / 1024:.1f}" for n, r in samples)
    print(f"   RSS after warm-up {start_rss / 1024:.1f} MiB; samples (requests: MiB) {trail}")
    print(f"   growth: {(end_rss - start_rss) / 1024:+.1f} MiB over {done:,} requests")


# Holds N event streams open from a child process: reads each one's first event, says
# "ready", then idles (reading nothing more) until its stdin closes.
_STREAM_HOLDER = """
import asyncio, sys, aiohttp
async def main(url, count):
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one():
            response = await session.get(url)
            assert response.status == 200, response.status
            while (await response.content.readline()).strip() != b"event: catalog":
                pass
            return response
        streams = await asyncio.gather(*(one() for _ in range(count)))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for response in streams:
            response.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@contextmanager
def held_streams(base: str, count: int) -> Iterator[None]:
    """Keep ``count`` idle /api/v1/events streams open for the block."""
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter and inline script
        [PYTHON, "-c", _STREAM_HOLDER, f"{base}/api/v1/events", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None  # noqa: S101 - piped above
        if holder.stdout.readline().strip() != b"ready":
            raise RuntimeError("the stream holder did not open its streams")
        yield
    finally:
        assert holder.stdin is not None  # noqa: S101 - piped above
        holder.stdin.close()
        holder.wait(timeout=30)


def open_streams(base: str) -> int:
    """Return the proxy's own count of open event streams."""
    for line in get(f"{base}/metrics").decode().splitlines():
        if line.startswith("product_proxy_event_streams "):
            return int(float(line.split()[1]))
    return 0


def section_streams(args: argparse.Namespace) -> None:
    """Part 5: memory per idle event stream, and warm throughput with them open."""
    count = args.streams
    print(
        f"\n== 5. {count} idle /api/v1/events streams: RSS, and warm /v1/products throughput "
        f"(wrk -t1 -c{args.connections} -d{args.seconds:g}s) without and with them, "
        f"{args.rounds} alternating rounds, median shown"
    )
    with ExitStack() as stack:
        upstream = start_sandbox(stack)
        port = free_port()
        env = proxy_env(upstream, port, PROXY_MAX_STREAMS=str(count))
        proxy = stack.enter_context(process([PYTHON, "-m", "proxy"], env))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        get(f"{base}/v1/products")
        wrk(f"{base}/v1/products", seconds=3, connections=args.connections)
        without: list[Load] = []
        beside: list[Load] = []
        growth: list[int] = []
        for _ in range(args.rounds):
            without.append(
                wrk(f"{base}/v1/products", seconds=args.seconds, connections=args.connections)
            )
            before = rss_kib(proxy.pid)
            with held_streams(base, count):
                growth.append(rss_kib(proxy.pid) - before)
                opened = open_streams(base)
                beside.append(
                    wrk(f"{base}/v1/products", seconds=args.seconds, connections=args.connections)
                )
            if opened != count:
                raise RuntimeError(f"{opened} streams open, not {count}")
    alone, loaded = _median(without), _median(beside)
    rounds = ", ".join(f"{kib / 1024:.1f}" for kib in growth)
    # The first round's growth is the cost: later rounds reuse the memory the first one
    # took (CPython keeps freed memory for reuse rather than returning it).
    print(f"   RSS growth on opening {count} streams: {growth[0] / 1024:.1f} MiB, ", end="")
    print(f"{growth[0] / count:.1f} KiB a stream (each round: {rounds} MiB)")
    for name, load in (("without streams", alone), (f"with {count} open", loaded)):
        print(
            f"   {name}: {load.rps:,.0f} req/s, "
            f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, errors {load.errors}"
        )
    print(f"   ratio with/without: {loaded.rps / alone.rps:.3f}")


def section_instructions(args: argparse.Namespace) -> None:
    """Part 4: CPU instructions per warm request under callgrind, proxy against minimal.

    Requests per second move with whatever else the machine does; instructions counted by
    callgrind do not (user space only: the kernel's share, the same for both, is left out).
    """
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("\n== 4. instructions: skipped (valgrind not installed: apt-get install valgrind)")
        return
    requests = args.instruction_requests
    print(f"\n== 4. user-space instructions per warm request (callgrind, {requests} requests)")
    with ExitStack() as stack:
        upstream = start_sandbox(stack)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cg-")))
        proxy = [PYTHON, "-m", "proxy"]
        port = free_port()
        with process(proxy, proxy_env(upstream, port)):
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            (workdir / "products.json").write_bytes(get(f"{base}/v1/products"))
            (workdir / "api.json").write_bytes(get(f"{base}/api/v1/products"))
        (workdir / "minimal.py").write_text(MINIMAL_APP)
        minimal_port = free_port()
        minimal = [
            PYTHON,
            str(workdir / "minimal.py"),
            str(minimal_port),
            str(workdir / "products.json"),
            str(workdir / "api.json"),
            "uvloop" if uses_uvloop() else "asyncio",
        ]
        counts: dict[tuple[str, str], int] = {}
        for path in PATHS:
            counts[path, "proxy"] = _instructions(
                workdir,
                proxy,
                env=proxy_env(upstream, port),
                port=port,
                path=path,
                requests=requests,
            )
            counts[path, "minimal"] = _instructions(
                workdir, minimal, env={}, port=minimal_port, path=path, requests=requests
            )
        if args.otel and otel_installed():
            for path in PATHS:
                # Installed but off is the proxy just measured (process() passes no OTEL_*).
                counts[path, "otel off"] = counts[path, "proxy"]
                counts[path, "otel absent"] = _instructions(
                    workdir,
                    [PYTHON, "-c", OTEL_ABSENT],
                    env=proxy_env(upstream, port),
                    port=port,
                    path=path,
                    requests=requests,
                )
    for path in PATHS:
        mine, theirs = counts[path, "proxy"], counts[path, "minimal"]
        print(
            f"   {path:<18} proxy {mine:>9,}  minimal aiohttp {theirs:>9,}  "
            f"minimal/proxy = {theirs / mine:.2f}"
        )
    if not args.otel:
        return
    if not otel_installed():
        print("   otel: skipped (the otel extra is not installed: pip install '.[otel]')")
        return
    for path in PATHS:
        absent, off = counts[path, "otel absent"], counts[path, "otel off"]
        print(
            f"   {path:<18} otel absent {absent:>9,}  installed, off {off:>9,}  "
            f"off/absent = {off / absent:.3f}"
        )


def otel_installed() -> bool:
    """Whether this interpreter has the OpenTelemetry SDK (the proxy's otel extra)."""
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def _instructions(
    workdir: Path,
    argv: list[str],
    *,
    env: dict[str, str],
    port: int,
    path: str,
    requests: int,
) -> int:
    """Run ``argv`` under callgrind; return instructions per warm GET of ``path``."""
    out = workdir / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    with process([*valgrind, *argv], env) as child:
        wait_http(f"http://127.0.0.1:{port}{path}", within=180)
        _requests(port, path, 300)  # warm: caches filled, code paths taken
        control = shutil.which("callgrind_control") or "callgrind_control"
        subprocess.run([control, "-z", str(child.pid)], capture_output=True, check=True)  # noqa: S603
        _requests(port, path, requests)
        subprocess.run([control, "-d", str(child.pid)], capture_output=True, check=True)  # noqa: S603
        dump = Path(f"{out}.{child.pid}.1")
        deadline = time.monotonic() + 30
        while (totals := _totals(dump)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"callgrind wrote no totals to {dump}")
            time.sleep(0.2)
    return totals // requests


def _totals(dump: Path) -> int | None:
    """Return the instruction total of a callgrind dump, None while it is not written."""
    if not dump.exists():
        return None
    found = re.search(r"^(?:totals|summary): (\d+)", dump.read_text(), re.MULTILINE)
    return int(found.group(1)) if found else None


def _requests(port: int, path: str, count: int) -> None:
    """Send ``count`` GETs over four keep-alive connections, one at a time; all must be 200."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(4)]
    try:
        for index in range(count):
            connection = connections[index % len(connections)]
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
    finally:
        for connection in connections:
            connection.close()


def main() -> None:
    """Run the parts the flags ask for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, no RSS soak")
    parser.add_argument("--seconds", type=float, default=10, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--stampede", type=int, default=1000, help="cold stampede size")
    parser.add_argument("--ttl", type=float, default=5, help="TTL for the steady-load part")
    parser.add_argument("--steady", type=float, default=60, help="seconds of steady load")
    parser.add_argument("--rss-requests", type=int, default=1_000_000)
    parser.add_argument("--instruction-requests", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=1000, help="idle event streams (part 5)")
    parser.add_argument(
        "--only", choices=["throughput", "replicas", "rss", "instructions", "streams"]
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="in part 4, also the proxy without the otel extra against it installed but off",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.steady, args.rss_requests = 5, 1, 20, 0
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (Debian: apt-get install wrk)")
    print(f"machine: {os.cpu_count()} cores, {platform_line()}")
    if args.only in (None, "throughput"):
        section_throughput(args)
    if args.only in (None, "replicas"):
        section_replicas(args)
    if args.only in (None, "rss"):
        section_rss(args)
    if args.only == "instructions" or (args.only is None and not args.quick):
        section_instructions(args)
    if args.only in (None, "streams"):
        section_streams(args)


def platform_line() -> str:
    """Python, CPU model and memory, for the record."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    mem = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "0",
    )
    return f"{cpu}, {int(mem) / 1024 / 1024:.0f} GiB, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    main()
