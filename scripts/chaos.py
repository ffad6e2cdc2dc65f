"""Chaos soak: three replicas, a Redis and the sandbox under load while faults come and go.

Usage, from the repository root::

    .venv/bin/python scripts/chaos.py --minutes 20 --seed 7

A seeded schedule injects, one upstream fault at a time and one infrastructure fault at a
time (the two tracks overlap): upstream 5xx, hangs, refused connections, 429 with short and
huge Retry-After, redirects, malformed and oversized bodies, token revocation, token endpoint
errors; Redis killed and restarted, Redis frozen (SIGSTOP/SIGCONT), a replica SIGKILLed and
restarted, junk on the pub/sub channel. The catalog changes now and then, last at the start of
the last upstream fault. Each fault is printed when it starts and ends.

The replicas reach the sandbox through a relay in this process, which timestamps every
upstream request and names the replica that sent it (by socket owner), and which can refuse
connections. Checked, and printed as a table at the end:

- every answer is a 200 with a real catalog (fresh or stale) or a JSON 502/503/504: no 500,
  no connection error from a replica that is alive, no replica exiting by itself;
- no upstream call inside a Retry-After window the caller's replica knew of, and none from
  any replica while the store was up (calls to the endpoint that answered the 429);
- upstream products calls stay within one per cache TTL period (plus one per quiet stretch)
  outside faults, and within a bound per second of each fault window;
- after the last fault (and its Retry-After window) ends, with no caller traffic, every
  replica is ready and a GET returns the newest catalog within 60 s;
- no secret (client secret, Basic credential, any issued token) in any replica log, in this
  script's output, or sent to a redirect target;
- RSS growth per replica under 10 MiB (from warm-up, or from its restart).

Exit status 0 when every invariant held, 1 when any broke, 2 when the soak itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email.utils
import hashlib
import itertools
import json
import math
import random
import re
import signal
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import redis

# The script runs as `python scripts/chaos.py`; the test harness lives in the repository.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.backplane.keys import KeySpace
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, default_catalog
from tests.support.net import HOST, free_ports
from tests.support.processes import ChildStartError, ProxyFleet, ProxyProcess, SandboxProcess
from tests.support.redis import RedisServer
from tests.support.settings import make_settings

T = TypeVar("T")

MIB = 1024 * 1024
REPLICAS = 3
# Short enough that a two-minute run sees many refreshes and every Retry-After window end.
CACHE_TTL = 3.0
RETRY_AFTER_MAX = 10.0
UPSTREAM_TIMEOUT = 2.0
LOCK_TIMEOUT = 4.0
UPSTREAM_RETRIES = 2
UPSTREAM_MAX_BYTES = 2 * MIB
# Tokens expire during a long run, so renewals happen besides revocations.
TOKEN_TTL = 90
GZIP_BOMB_BYTES = 128 * MIB
HUGE_RETRY_AFTER = 10**7

WARM_UP = 5.0
RECOVERY = 60.0
END_MARGIN = 3.0
REQUEST_TIMEOUT = 30.0
PROBE_INTERVAL = 2.0
RSS_LIMIT = 10 * MIB
RSS_SETTLE = 4.0
# A replica counts as down from its SIGKILL until this long after it is ready again.
RESTART_GRACE = 1.0
# After Redis is back, a replica may take this long to use it again (breaker pause, probes).
STORE_GRACE = 5.0
# A call this close to a fault being switched on or off may have met either state.
EDGE = 0.05
# Another replica learns of a 429 only once the first has stored it.
SHARE_SLACK = 0.5
SAME_SLACK = 0.1
END_SLACK = 1.0
# Calls just after a fault ends still belong to it (retries and backoff finishing).
FAULT_TAIL = 1.0
LONG_RUN = 300.0
EXAMPLES = 10

PATHS = ("/v1/products", "/api/v1/products")
UPSTREAM = "upstream"
INFRA = "infra"
PRODUCTS = "products"
TOKEN = "token"  # noqa: S105 - the token endpoint's name, not a token
_RATE_SWITCH = {PRODUCTS: "rate_limit_retry_after", TOKEN: "token_rate_limit_retry_after"}
# The header of every token the sandbox issues: base64url of {"alg":"RS256","typ":"JWT"}.
JWT_HEADER = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"

JUNK: tuple[bytes, ...] = (
    b"\xff\xfe\xfd",
    b"catalog\xff",
    b"",
    b"\x00",
    b"no-such-topic",
    "k\u0430talog".encode(),
    b'{"topic": "catalog"}',
    bytes(range(256)),
    b"token " * 2000,
    b"x" * MIB,
)


# -- time and output ----------------------------------------------------------------------------


class Clock:
    """Seconds since the soak began (monotonic), and the wall time of such a moment."""

    def __init__(self) -> None:
        """Start counting now."""
        self._origin = time.monotonic()
        self._wall_origin = time.time()

    def now(self) -> float:
        """Seconds since the soak began."""
        return time.monotonic() - self._origin

    def wall(self, moment: float) -> float:
        """Return the wall-clock time (epoch seconds) of ``moment``."""
        return self._wall_origin + moment

    async def sleep_until(self, moment: float) -> None:
        """Sleep until ``moment`` (at once if it has passed)."""
        await asyncio.sleep(max(moment - self.now(), 0.0))


class Console:
    """Prints lines (timestamped or not) as they happen and keeps them, to check for secrets."""

    def __init__(self, clock: Clock) -> None:
        """Print nothing yet."""
        self._clock = clock
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        """Print one line stamped with the soak's clock."""
        self.plain(f"[{self._clock.now():7.1f} s] {text}")

    def plain(self, text: str = "") -> None:
        """Print one line as it is."""
        self.lines.append(text)
        print(text, flush=True)


@dataclass(frozen=True)
class Span:
    """A stretch of the soak's time, in seconds since it began."""

    start: float
    end: float

    @property
    def length(self) -> float:
        """Seconds covered."""
        return max(self.end - self.start, 0.0)

    def covers(self, moment: float) -> bool:
        """Whether ``moment`` falls inside."""
        return self.start <= moment <= self.end

    def overlaps(self, start: float, end: float) -> bool:
        """Whether ``[start, end]`` shares any moment with this span."""
        return start <= self.end and self.start <= end


def merged(spans: Iterable[Span]) -> list[Span]:
    """Return the union of ``spans`` as sorted, disjoint spans."""
    result: list[Span] = []
    for span in sorted(spans, key=lambda item: item.start):
        if result and span.start <= result[-1].end:
            result[-1] = Span(result[-1].start, max(result[-1].end, span.end))
        else:
            result.append(span)
    return result


def gaps(spans: Sequence[Span], within: Span) -> list[Span]:
    """Return the parts of ``within`` that no span of the disjoint, sorted ``spans`` covers."""
    result: list[Span] = []
    cursor = within.start
    for span in spans:
        if span.start > cursor:
            result.append(Span(cursor, min(span.start, within.end)))
        cursor = max(cursor, span.end)
    if cursor < within.end:
        result.append(Span(cursor, within.end))
    return [span for span in result if span.length > 0]


# -- the relay between the replicas and the sandbox ---------------------------------------------


@dataclass(frozen=True)
class Call:
    """One upstream request as the relay saw it arrive."""

    at: float
    endpoint: str
    pid: int | None


@dataclass(frozen=True)
class TrapHit:
    """One request that reached the redirect target, with its head as received."""

    at: float
    head: bytes


_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_MAX_HEAD = 64 * 1024
_TRAP_ANSWER = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class RequestFramer:
    """Splits what a client sends into requests (head, Content-Length body) and names them."""

    def __init__(self) -> None:
        """Expect a request head first."""
        self._head = b""
        self._body_left = 0

    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes; return the endpoint of each request whose head they complete."""
        found: list[str] = []
        while data:
            if self._body_left:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                data = data[taken:]
                continue
            self._head += data
            data = b""
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                # No HTTP client sends a head this long; stop parsing rather than grow.
                self._head = self._head[-_MAX_HEAD:]
                break
            head, data = self._head[:end], self._head[end + 4 :]
            self._head = b""
            found.append(_endpoint(head))
            length = _CONTENT_LENGTH.search(head)
            self._body_left = int(length.group(1)) if length else 0
        return found


def _endpoint(head: bytes) -> str:
    method, _, rest = head.partition(b" ")
    path = rest.partition(b" ")[0]
    if path.startswith(b"/v1/products"):
        return PRODUCTS
    if method == b"POST" and path.startswith(b"/oauth/token"):
        return TOKEN
    return "other"


def _proc_port(address: str) -> int:
    return int(address.rpartition(":")[2], 16)


def connection_owner(local_port: int, remote_port: int, pids: Iterable[int]) -> int | None:
    """Return which of ``pids`` owns the TCP socket ``local_port`` -> ``remote_port``, if any."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    inode = None
    for line in table:
        columns = line.split()
        if len(columns) > 9 and (_proc_port(columns[1]), _proc_port(columns[2])) == (
            local_port,
            remote_port,
        ):
            inode = columns[9]
            break
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(descriptor.readlink()) == target:
                        return pid
    return None


@dataclass(eq=False)
class _Link:
    """One relayed connection: both ends, and requests sent that have no answer yet."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pending: int = 0

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()


class Relay:
    """A TCP relay in front of the sandbox, on its own thread and event loop.

    It records every request it forwards (time, endpoint, sending process), can refuse
    connections (listener closed, open connections reset) and accept them again on the same
    port, and runs a trap: a redirect target that records what reaches it.
    """

    def __init__(self, target_port: int, pids: Callable[[], list[int]], clock: Clock) -> None:
        """Prepare a relay to ``target_port``; ``pids`` names the processes that may connect."""
        self._target = target_port
        self._pids = pids
        self._clock = clock
        self.port, self.trap_port = free_ports(2)
        self.calls: list[Call] = []
        self.trap_hits: list[TrapHit] = []
        # Requests cut off by a refusal before any answer: they may not have reached the sandbox.
        self.cut_off = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._trap: asyncio.Server | None = None
        self._links: set[_Link] = set()

    @property
    def url(self) -> str:
        """The base URL the replicas use as their upstream."""
        return f"http://{HOST}:{self.port}"

    @property
    def trap_url(self) -> str:
        """Where redirect faults send the replicas."""
        return f"http://{HOST}:{self.trap_port}/elsewhere"

    def start(self) -> None:
        """Start the thread, the relay and the trap."""
        self._thread.start()
        self._run(self._listen())
        self._run(self._open_trap())

    def stop(self) -> None:
        """Close everything and end the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def refuse(self) -> None:
        """Stop listening and reset every open connection: connecting now is refused."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._refuse(), self._loop))

    async def accept(self) -> None:
        """Listen again on the same port."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._listen(), self._loop))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        for _ in range(50):
            try:
                self._server = await asyncio.start_server(
                    self._relay, HOST, self.port, reuse_address=True
                )
            except OSError:
                await asyncio.sleep(0.1)
            else:
                return
        raise RuntimeError(f"the relay cannot listen on port {self.port} again")

    async def _refuse(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            self.cut_off += link.pending
            link.abort()
        self._links.clear()

    async def _shutdown(self) -> None:
        await self._refuse()
        if self._trap is not None:
            self._trap.close()

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        peer = client.get_extra_info("peername")
        pid = connection_owner(peer[1], self.port, self._pids()) if peer else None
        try:
            upstream_reader, upstream = await asyncio.open_connection(HOST, self._target)
        except OSError:
            client.transport.abort()
            return
        link = _Link(client, upstream)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._requests(client_reader, link, pid),
                self._answers(upstream_reader, link),
                return_exceptions=True,
            )
        finally:
            self._links.discard(link)
            link.abort()

    async def _requests(self, reader: asyncio.StreamReader, link: _Link, pid: int | None) -> None:
        framer = RequestFramer()
        try:
            while data := await reader.read(65536):
                for endpoint in framer.feed(data):
                    self.calls.append(Call(self._clock.now(), endpoint, pid))
                    link.pending += 1
                link.upstream.write(data)
                await link.upstream.drain()
        finally:
            # Whole-connection close: HTTP/1.1 clients never rely on a half-close.
            link.upstream.close()

    async def _answers(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while data := await reader.read(65536):
                link.pending = 0
                link.client.write(data)
                await link.client.drain()
        finally:
            link.client.close()

    async def _open_trap(self) -> None:
        self._trap = await asyncio.start_server(self._trapped, HOST, self.trap_port)

    async def _trapped(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        with contextlib.suppress(
            OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
        ):
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        self.trap_hits.append(TrapHit(self._clock.now(), head))
        with contextlib.suppress(OSError):
            writer.write(_TRAP_ANSWER)
            await writer.drain()
        writer.close()


# -- the schedule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """A 429 fault: which endpoint answers it, and the Retry-After it announces."""

    endpoint: str
    seconds: int
    as_date: bool = False


def _no_switches(_rng: random.Random) -> dict[str, object]:
    return {}


@dataclass(frozen=True)
class Fault:
    """One fault in the schedule: what, when (seconds after the load starts) and how long."""

    kind: str
    category: str
    track: str
    start: float
    duration: float
    switches: Mapping[str, object] = field(default_factory=dict)
    revoke: bool = False
    rate_limit: RateLimit | None = None
    replica: int = 0

    def describe(self) -> str:
        """Say what the fault does, for the log."""
        parts = [f"{name}={value}" for name, value in self.switches.items()]
        if self.rate_limit is not None:
            limit = self.rate_limit
            form = "HTTP-date" if limit.as_date else "seconds"
            parts.append(f"{limit.endpoint} 429, Retry-After {limit.seconds} s as {form}")
        if self.revoke:
            parts.append("tokens revoked")
        if self.kind == "replica_killed":
            parts.append(f"replica-{self.replica}")
        extra = f" ({', '.join(parts)})" if parts else ""
        return f"{self.kind}{extra} for {self.duration:.1f} s"


@dataclass(frozen=True)
class Kind:
    """A kind of fault the schedule can pick, and how to draw its parameters."""

    name: str
    category: str
    track: str
    switches: Callable[[random.Random], dict[str, object]] = _no_switches
    revoke: bool = False
    rate_limit: Callable[[random.Random], RateLimit] | None = None
    durations: tuple[float, float] = (2.0, 5.0)

    def needs(self) -> frozenset[str]:
        """Return the sandbox fault switches this kind uses."""
        names = set(self.switches(random.Random(0)))  # noqa: S311 - a sample, not a secret
        if self.rate_limit is not None:
            limit = self.rate_limit(random.Random(0))  # noqa: S311 - a sample, not a secret
            names.add(_RATE_SWITCH[limit.endpoint])
            if limit.as_date:
                names.add("retry_after_header")
        return frozenset(names)

    def make(self, rng: random.Random, start: float, duration: float, replicas: int) -> Fault:
        """Draw one fault of this kind."""
        return Fault(
            kind=self.name,
            category=self.category,
            track=self.track,
            start=round(start, 2),
            duration=round(duration, 2),
            switches=self.switches(rng),
            revoke=self.revoke,
            rate_limit=None if self.rate_limit is None else self.rate_limit(rng),
            replica=rng.randrange(replicas),
        )


def fault_kinds(trap_url: str) -> tuple[Kind, ...]:
    """Every fault the soak knows, grouped by the issue's categories."""

    def switch(name: str, draw: Callable[[random.Random], object]) -> Callable[..., Any]:
        return lambda rng: {name: draw(rng)}

    def limit(endpoint: str, low: int, high: int, *, as_date: bool = False) -> Callable[..., Any]:
        return lambda rng: RateLimit(endpoint, rng.randint(low, high), as_date=as_date)

    oversized = 4 * UPSTREAM_MAX_BYTES
    tokens = "token endpoint errors"
    return (
        Kind("products_5xx", "upstream 5xx", UPSTREAM,
             switch("products_status", lambda rng: rng.choice((500, 502, 503, 504)))),
        Kind("products_hang", "hangs", UPSTREAM, switch("hang", lambda _: True)),
        Kind("products_slow", "hangs", UPSTREAM,
             switch("products_latency", lambda rng: round(rng.uniform(0.5, 3.0), 2))),
        Kind("refused", "refused connections", UPSTREAM),
        Kind("rate_limit_short", "429, short Retry-After", UPSTREAM,
             rate_limit=limit(PRODUCTS, 2, 5)),
        Kind("rate_limit_date", "429, short Retry-After", UPSTREAM,
             rate_limit=limit(PRODUCTS, 3, 6, as_date=True)),
        Kind("rate_limit_huge", "429, huge Retry-After", UPSTREAM,
             rate_limit=limit(PRODUCTS, HUGE_RETRY_AFTER, HUGE_RETRY_AFTER)),
        Kind("redirect", "redirects", UPSTREAM, switch("redirect_to", lambda _: trap_url)),
        Kind("malformed_body", "malformed bodies", UPSTREAM,
             switch("malformed_body", lambda _: True)),
        Kind("wrong_shape", "malformed bodies", UPSTREAM, switch("wrong_shape", lambda _: True)),
        Kind("oversized_body", "oversized bodies", UPSTREAM,
             switch("oversized_body", lambda _: oversized)),
        Kind("gzip_bomb", "oversized bodies", UPSTREAM,
             switch("gzip_bomb", lambda _: GZIP_BOMB_BYTES)),
        Kind("token_revoked", "token revocation", UPSTREAM, revoke=True),
        Kind("tokens_rejected", "token revocation", UPSTREAM,
             switch("reject_all_tokens", lambda _: True)),
        Kind("token_5xx", tokens, UPSTREAM,
             switch("token_status", lambda rng: rng.choice((500, 502, 503))), revoke=True),
        Kind("token_bad_credentials", tokens, UPSTREAM,
             switch("token_status", lambda _: 400), revoke=True),
        Kind("token_hang", tokens, UPSTREAM, switch("token_hang", lambda _: True), revoke=True),
        Kind("token_slow", tokens, UPSTREAM,
             switch("token_latency", lambda rng: round(rng.uniform(1.0, 3.0), 2)), revoke=True),
        Kind("token_rate_limit_short", tokens, UPSTREAM, revoke=True,
             rate_limit=limit(TOKEN, 2, 5)),
        Kind("token_rate_limit_huge", tokens, UPSTREAM, revoke=True,
             rate_limit=limit(TOKEN, HUGE_RETRY_AFTER, HUGE_RETRY_AFTER)),
        Kind("token_redirect", tokens, UPSTREAM,
             switch("token_redirect_to", lambda _: trap_url), revoke=True),
        Kind("token_oversized", tokens, UPSTREAM,
             switch("token_oversized_body", lambda _: oversized), revoke=True),
        Kind("redis_killed", "Redis killed", INFRA, durations=(2.0, 6.0)),
        Kind("redis_frozen", "Redis frozen", INFRA, durations=(1.0, 4.0)),
        Kind("replica_killed", "replica SIGKILLed", INFRA, durations=(1.0, 4.0)),
        Kind("pubsub_junk", "junk on pub/sub", INFRA, durations=(1.0, 2.0)),
    )  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """The faults and catalog changes of one soak, in seconds after the load starts."""

    faults: tuple[Fault, ...]
    catalog_changes: tuple[float, ...]
    unsupported: tuple[str, ...]


def plan(
    seed: int, span: Span, kinds: Sequence[Kind], switches: frozenset[str], replicas: int
) -> Schedule:
    """Draw the schedule for ``seed`` over ``span``, from the kinds the sandbox can inject."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    usable = [kind for kind in kinds if kind.needs() <= switches]
    unsupported = tuple(
        f"{kind.name} (needs {', '.join(sorted(kind.needs() - switches))})"
        for kind in kinds
        if kind not in usable
    )
    upstream = _track(rng, [k for k in usable if k.track == UPSTREAM], span, (0.5, 2.0), replicas)
    infra = _track(rng, [k for k in usable if k.track == INFRA], span, (2.0, 6.0), replicas)
    changes: list[float] = []
    moment = span.start + rng.uniform(3.0, 8.0)
    while moment < span.end:
        changes.append(round(moment, 2))
        moment += rng.uniform(8.0, 20.0)
    if upstream:
        # The newest catalog appears as the last upstream fault begins: recovery must fetch it.
        changes.append(round(upstream[-1].start + 0.2, 2))
    faults = sorted(upstream + infra, key=lambda fault: fault.start)
    return Schedule(tuple(faults), tuple(sorted(changes)), unsupported)


def _track(
    rng: random.Random,
    kinds: Sequence[Kind],
    span: Span,
    pauses: tuple[float, float],
    replicas: int,
) -> list[Fault]:
    """One fault at a time: categories in shuffled rounds, a random kind of each."""
    categories: dict[str, list[Kind]] = {}
    for kind in kinds:
        categories.setdefault(kind.category, []).append(kind)
    faults: list[Fault] = []
    order: list[str] = []
    moment = span.start + rng.uniform(*pauses)
    while categories:
        if not order:
            order = sorted(categories)
            rng.shuffle(order)
        kind = rng.choice(categories[order.pop()])
        low, high = kind.durations
        duration = rng.uniform(low, high)
        if span.length >= LONG_RUN and rng.random() < 0.1:
            duration = rng.uniform(high, high * 5)
        if moment + duration > span.end:
            break
        fault = kind.make(rng, moment, duration, replicas)
        faults.append(fault)
        moment += duration + rng.uniform(*pauses)
        if fault.rate_limit is not None:
            # Faults inside a Retry-After window would meet no upstream call at all.
            moment += min(fault.rate_limit.seconds, RETRY_AFTER_MAX)
    return faults


# -- the deployment -----------------------------------------------------------------------------


def catalog_version(version: int) -> list[dict[str, Any]]:
    """Return the sandbox's catalog, revision ``version`` (0 is the default one)."""
    catalog = default_catalog()
    if version:
        catalog[0]["product"] = f"{catalog[0]['product']} (revision {version})"
    return catalog


def canonical(value: object) -> str:
    """Return a digest of a JSON value that ignores key order and spacing."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def rss_bytes(pid: int) -> int | None:
    """Return the resident set size of ``pid``, or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def proxy_env(upstream_url: str, redis_url: str) -> dict[str, str]:
    """Return the settings every replica runs with."""
    return {
        "PROXY_UPSTREAM_URL": upstream_url,
        "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
        "PROXY_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "PROXY_REDIS_URL": redis_url,
        "PROXY_CACHE_TTL": str(CACHE_TTL),
        "PROXY_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
        "PROXY_UPSTREAM_RETRIES": str(UPSTREAM_RETRIES),
        "PROXY_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        "PROXY_RETRY_AFTER_MAX": str(RETRY_AFTER_MAX),
        "PROXY_UPSTREAM_MAX_BYTES": str(UPSTREAM_MAX_BYTES),
        "PROXY_WARMUP": "true",
        "PROXY_LOG_LEVEL": "info",
        "PROXY_LOG_FORMAT": "json",
    }


class Deployment:
    """Redis, the sandbox, the relay and the replicas, and what happened to each over time."""

    def __init__(self, clock: Clock, console: Console, replicas: int) -> None:
        """Prepare the parts; :meth:`start` starts them."""
        self.clock = clock
        self.console = console
        self.redis = RedisServer()
        self.sandbox = SandboxProcess(token_ttl=TOKEN_TTL)
        self.relay: Relay | None = None
        self.fleet: ProxyFleet | None = None
        self.size = replicas
        self.live: set[int] = set()
        self.down: dict[int, list[Span]] = {index: [] for index in range(replicas)}
        self._down_since: dict[int, float] = {}
        self.exits: list[str] = []
        self.store_down: list[Span] = []
        self._store_down_since: float | None = None
        self.started_at: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self.restarts = 0
        self.versions: dict[str, int] = {}
        self.newest = 0
        self.changed_at = 0.0
        self.channel = ""

    @property
    def replicas(self) -> list[ProxyProcess]:
        """The replica processes."""
        return [] if self.fleet is None else list(self.fleet.replicas)

    def pid_of(self, index: int) -> int | None:
        """Return the process id of replica ``index`` (its latest run)."""
        try:
            pid: int = self.replicas[index].pid
        except (RuntimeError, IndexError):
            return None
        return pid

    def pids(self) -> list[int]:
        """Every replica's latest process id."""
        return [pid for index in range(self.size) if (pid := self.pid_of(index)) is not None]

    def name_of(self, pid: int | None) -> str:
        """Return ``replica-N`` for a process id of any of its runs."""
        return self._names.get(pid or 0, "an unknown process")

    def _started(self, index: int) -> None:
        pid = self.pid_of(index) or 0
        self._names[pid] = f"replica-{index}"
        self.started_at[pid] = self.clock.now()

    def start(self) -> None:
        """Start Redis, the sandbox, the relay and the replicas; wait until all are ready."""
        self.redis.start()
        self.sandbox.start()
        self.relay = Relay(self.sandbox.port, self.pids, self.clock)
        self.relay.start()
        settings = make_settings(self.relay.url)
        self.channel = KeySpace(settings.key_prefix, settings.account_hash).events
        self.register(catalog_version(0))
        self.fleet = ProxyFleet(proxy_env(self.relay.url, self.redis.url), self.size)
        self.fleet.start()
        for index in range(self.size):
            self.live.add(index)
            self._started(index)

    def stop(self) -> None:
        """Stop everything that runs (replicas first, so their logs end cleanly)."""
        if self.fleet is not None:
            self.fleet.stop()
        if self.relay is not None:
            self.relay.stop()
        self.sandbox.stop()
        self.redis.resume()
        self.redis.cleanup()

    def register(self, catalog: list[dict[str, Any]]) -> int:
        """Remember a catalog version before the sandbox serves it; return its number."""
        digest = canonical(catalog)
        self.versions.setdefault(digest, len(self.versions))
        return self.versions[digest]

    async def change_catalog(self) -> None:
        """Give the sandbox the next catalog revision."""
        version = self.newest + 1
        catalog = catalog_version(version)
        self.register(catalog)
        await self.sandbox.set_catalog(catalog)
        self.newest = version
        self.changed_at = self.clock.now()
        self.console.say(f"catalog revision {version} published")

    # -- Redis ----------------------------------------------------------------------------------

    def store_lost(self) -> None:
        """Note that Redis stops answering now."""
        self._store_down_since = self.clock.now()

    def store_back(self) -> None:
        """Note that Redis answers again now (the span runs on for the replicas to notice)."""
        if self._store_down_since is not None:
            end = self.clock.now() + STORE_GRACE
            self.store_down.append(Span(self._store_down_since, end))
            self._store_down_since = None

    async def publish_junk(self, seconds: float) -> int:
        """Publish junk on the replicas' pub/sub channel for ``seconds``; return how many."""
        client = redis.Redis(host=HOST, port=self.redis.port, socket_timeout=1)
        sent = 0
        try:
            pause = seconds / len(JUNK)
            for payload in JUNK:
                with contextlib.suppress(redis.RedisError):
                    await asyncio.to_thread(client.publish, self.channel, payload)
                    sent += 1
                await asyncio.sleep(pause)
        finally:
            client.close()
        return sent

    # -- replicas -------------------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index``; it counts as down from now."""
        self.live.discard(index)
        self._down_since[index] = self.clock.now()
        self.replicas[index].kill()

    async def restart(self, index: int) -> None:
        """Start replica ``index`` again on its port and wait until it serves."""
        try:
            await asyncio.to_thread(self.replicas[index].start)
        except ChildStartError as error:
            last = str(error).strip().splitlines()[-3:]
            self.exits.append(f"replica-{index} failed to restart: {' | '.join(last)}")
            self.console.say(f"replica-{index} FAILED to restart")
            return
        now = self.clock.now()
        self.down[index].append(Span(self._down_since.pop(index), now + RESTART_GRACE))
        self._started(index)
        self.restarts += 1
        self.live.add(index)

    def check_exits(self) -> None:
        """Notice replicas that ended without being killed; they leave the rotation."""
        for index in sorted(self.live):
            replica = self.replicas[index]
            if not replica.alive:
                self.live.discard(index)
                tail = " | ".join(replica.log_text().strip().splitlines()[-3:])
                self.exits.append(
                    f"replica-{index} exited by itself at +{self.clock.now():.1f} s: {tail}"
                )
                self.console.say(f"replica-{index} EXITED by itself")

    def was_down(self, index: int, start: float, end: float) -> bool:
        """Whether replica ``index`` was killed (or restarting) at any moment of the span."""
        if index in self._down_since and end >= self._down_since[index]:
            return True
        return any(span.overlaps(start, end) for span in self.down[index])


# -- fault injection ----------------------------------------------------------------------------


@dataclass
class Applied:
    """A fault as it happened: when it was switched on, in effect, cleared and over."""

    fault: Fault
    start: float
    effective: float = math.inf
    cleared: float = math.inf
    end: float = math.inf
    retry_until_wall: float | None = None


class Injector:
    """Applies a schedule to the deployment, one coroutine per track."""

    def __init__(self, deployment: Deployment, load_start: float) -> None:
        """Inject into ``deployment``; schedule times count from ``load_start``."""
        self._dep = deployment
        self._clock = deployment.clock
        self._console = deployment.console
        self._load_start = load_start
        self.applied: list[Applied] = []

    async def run(self, schedule: Schedule, deadline: float) -> None:
        """Run every track to its end; no fault starts after ``deadline``."""
        upstream = [fault for fault in schedule.faults if fault.track == UPSTREAM]
        infra = [fault for fault in schedule.faults if fault.track == INFRA]
        await asyncio.gather(
            self._track(upstream, deadline),
            self._track(infra, deadline),
            self._changes(schedule.catalog_changes, deadline),
        )

    async def _track(self, faults: Sequence[Fault], deadline: float) -> None:
        for fault in faults:
            await self._clock.sleep_until(self._load_start + fault.start)
            if self._clock.now() + fault.duration > deadline:
                self._console.say(f"skipped {fault.kind}: the run is behind its schedule")
                continue
            await self._inject(fault)

    async def _changes(self, moments: Sequence[float], deadline: float) -> None:
        for moment in moments:
            await self._clock.sleep_until(self._load_start + moment)
            if self._clock.now() < deadline:
                await self._dep.change_catalog()

    async def _inject(self, fault: Fault) -> None:
        record = Applied(fault, start=self._clock.now())
        self.applied.append(record)
        self._console.say(f"fault  {fault.describe()}")
        try:
            if fault.track == UPSTREAM:
                await self._upstream(fault, record)
            else:
                await self._infra(fault, record)
        finally:
            record.end = self._clock.now()
            self._console.say(f"ended  {fault.kind} after {record.end - record.start:.1f} s")

    async def _upstream(self, fault: Fault, record: Applied) -> None:
        dep = self._dep
        relay = dep.relay
        if relay is None:
            raise RuntimeError("the deployment has not started")
        if fault.kind == "refused":
            await relay.refuse()
        else:
            switches = dict(fault.switches)
            limit = fault.rate_limit
            if limit is not None:
                switches[_RATE_SWITCH[limit.endpoint]] = limit.seconds
                if limit.as_date:
                    record.retry_until_wall = float(math.ceil(time.time() + limit.seconds))
                    header = email.utils.formatdate(record.retry_until_wall, usegmt=True)
                    switches["retry_after_header"] = header
            await dep.sandbox.set_faults(**switches)
            if fault.revoke:
                await dep.sandbox.revoke()
        record.effective = self._clock.now()
        try:
            await asyncio.sleep(fault.duration)
        finally:
            record.cleared = self._clock.now()
            if fault.kind == "refused":
                await relay.accept()
            else:
                await dep.sandbox.set_faults()

    async def _infra(self, fault: Fault, record: Applied) -> None:
        dep = self._dep
        if fault.kind == "redis_killed":
            dep.store_lost()
            await asyncio.to_thread(dep.redis.stop)
            await self._hold(fault, record)
            await asyncio.to_thread(dep.redis.start)
            dep.store_back()
        elif fault.kind == "redis_frozen":
            dep.store_lost()
            dep.redis.pause()
            await self._hold(fault, record)
            dep.redis.resume()
            dep.store_back()
        elif fault.kind == "replica_killed":
            index = self._victim(fault.replica)
            if index is None:
                self._console.say("no live replica to kill")
                return
            dep.kill(index)
            await self._hold(fault, record)
            await dep.restart(index)
        elif fault.kind == "pubsub_junk":
            record.effective = self._clock.now()
            sent = await dep.publish_junk(fault.duration)
            record.cleared = self._clock.now()
            self._console.say(f"       {sent} junk messages published on the events channel")

    async def _hold(self, fault: Fault, record: Applied) -> None:
        record.effective = self._clock.now()
        await asyncio.sleep(fault.duration)
        record.cleared = self._clock.now()

    def _victim(self, preferred: int) -> int | None:
        live = sorted(self._dep.live)
        if preferred in live:
            return preferred
        return live[0] if live else None


# -- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One answer read whole; status 0 is a connection error, -1 no answer in time."""

    status: int
    content_type: str = ""
    cache_status: str = ""
    body: bytes = b""
    error: str = ""


async def fetch(session: aiohttp.ClientSession, url: str) -> Answer:
    """GET ``url``; failures become an Answer too."""
    try:
        async with session.get(url) as response:
            body = await response.read()
            headers = response.headers
            return Answer(
                response.status,
                headers.get("Content-Type", ""),
                headers.get("Cache-Status", ""),
                body,
            )
    except TimeoutError:
        return Answer(-1, error="no answer in time")
    except (aiohttp.ClientError, OSError) as error:
        return Answer(0, error=f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Failure:
    """A request that got no HTTP answer, to judge once replica downtimes are known."""

    replica: int
    start: float
    end: float
    error: str


class Tally:
    """Every answer classified as it arrives; the problems kept with examples."""

    def __init__(self, deployment: Deployment) -> None:
        """Judge catalog bodies against the versions ``deployment`` published."""
        self._dep = deployment
        self.counts: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.examples: list[str] = []
        self.failures: list[Failure] = []
        self._bodies: dict[bytes, bool] = {}

    @property
    def total(self) -> int:
        """Answers (and failures) counted."""
        return sum(self.counts.values())

    def record(self, replica: int, path: str, start: float, end: float, answer: Answer) -> None:
        """Classify one answer from replica ``replica`` to a GET of ``path``."""
        status = answer.status
        if status == 0:
            self.counts["no connection"] += 1
            self.failures.append(Failure(replica, start, end, answer.error))
        elif status == 200:
            kind = _cache_kind(answer.cache_status)
            self.counts[f"200 {kind}"] += 1
            if not self._real_body(path, answer.body):
                self.problem(f"200 without a catalog the upstream served on {path}", end, replica)
        elif status in {502, 503, 504}:
            self.counts[str(status)] += 1
            if not _json_error(answer):
                self.problem(f"{status} that is not a JSON error", end, replica)
        else:
            label = "no answer in 30 s" if status == -1 else f"HTTP {status}"
            self.counts[label] += 1
            self.problem(label, end, replica, answer.body[:120].decode(errors="replace"))

    def problem(self, what: str, at: float, replica: int, detail: str = "") -> None:
        """Count a broken answer, keeping the first few as examples."""
        self.problems[what] += 1
        if len(self.examples) < EXAMPLES:
            suffix = f": {detail}" if detail else ""
            self.examples.append(f"+{at:.1f} s replica-{replica}: {what}{suffix}")

    def _real_body(self, path: str, body: bytes) -> bool:
        key = hashlib.sha1(body).digest()  # noqa: S324 - a cache key, not a signature
        known = self._bodies.get(key)
        if known is None:
            try:
                value = json.loads(body)
            except ValueError:
                known = False
            else:
                if path == "/v1/products":
                    known = canonical(value) in self._dep.versions
                else:
                    known = isinstance(value, dict | list) and bool(value)
            self._bodies[key] = known
        return known


def _cache_kind(cache_status: str) -> str:
    if "fwd=stale" in cache_status:
        return "stale"
    if "fwd=miss" in cache_status:
        return "miss"
    return "hit" if "hit" in cache_status else "other"


def _json_error(answer: Answer) -> bool:
    if not answer.content_type.startswith("application/json"):
        return False
    try:
        value = json.loads(answer.body)
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("error"), dict)


class Load:
    """Steady GETs from a few workers, round robin over the live replicas and both paths."""

    def __init__(self, deployment: Deployment, tally: Tally, rate: float, workers: int) -> None:
        """Send about ``rate`` requests per second from ``workers`` workers."""
        self._dep = deployment
        self._tally = tally
        self._period = workers / rate
        self._workers = workers
        self._turns = itertools.count()
        self.stop = asyncio.Event()

    async def run(self, max_requests: int) -> None:
        """Send until :attr:`stop` is set or ``max_requests`` went out."""
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(
                *(self._worker(session, number, max_requests) for number in range(self._workers))
            )

    async def _worker(self, session: aiohttp.ClientSession, number: int, limit: int) -> None:
        clock = self._dep.clock
        next_at = clock.now() + self._period * number / self._workers
        while not self.stop.is_set():
            await clock.sleep_until(next_at)
            next_at = max(next_at + self._period, clock.now())
            live = sorted(self._dep.live)
            turn = next(self._turns)
            if turn >= limit:
                return
            if not live:
                continue
            index = live[turn % len(live)]
            path = PATHS[(turn // len(live)) % len(PATHS)]
            start = clock.now()
            answer = await fetch(session, f"{self._dep.replicas[index].url}{path}")
            self._tally.record(index, path, start, clock.now(), answer)


class Watch:
    """Background observation: replica exits, RSS, and readiness probes as a kubelet sends them."""

    def __init__(self, deployment: Deployment) -> None:
        """Watch ``deployment``."""
        self._dep = deployment
        self.rss_first: dict[int, int] = {}
        self.rss_peak: dict[int, int] = {}
        self.probes: Counter[str] = Counter()

    async def run(self) -> None:
        """Observe until cancelled."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for tick in itertools.count():
                self._dep.check_exits()
                if tick % 2 == 0:
                    self.sample_rss()
                if tick % int(PROBE_INTERVAL * 2) == 0:
                    await self._probe(session)
                await asyncio.sleep(0.5)

    def sample_rss(self) -> dict[int, int]:
        """Read every live replica's RSS; the first reading after it settled is its baseline."""
        now = self._dep.clock.now()
        readings: dict[int, int] = {}
        for index in sorted(self._dep.live):
            pid = self._dep.pid_of(index)
            size = None if pid is None else rss_bytes(pid)
            if pid is None or size is None:
                continue
            readings[pid] = size
            self.rss_peak[pid] = max(self.rss_peak.get(pid, 0), size)
            if pid not in self.rss_first and now >= self._dep.started_at.get(pid, 0) + RSS_SETTLE:
                self.rss_first[pid] = size
        return readings

    async def _probe(self, session: aiohttp.ClientSession) -> None:
        for index in sorted(self._dep.live):
            answer = await fetch(session, f"{self._dep.replicas[index].url}/readyz")
            self.probes[str(answer.status) if answer.status > 0 else "no answer"] += 1


# -- recovery -----------------------------------------------------------------------------------


@dataclass
class Recovered:
    """One replica at the end of the recovery wait."""

    name: str
    ready_after: float | None = None
    readyz: int = 0
    status: int = 0
    version: int | None = None
    detail: str = ""


def _fetched_after(report: object, wall_now: float, wall_change: float) -> bool:
    """Whether a /readyz report shows a catalog fetched after the newest one was published."""
    if not isinstance(report, dict):
        return False
    catalog = report.get("catalog")
    age = catalog.get("age_seconds") if isinstance(catalog, dict) else None
    if not isinstance(age, int | float):
        # Without the catalog's age only readiness can be seen: look at the catalog by GET.
        return True
    # Stamped when its fetch completed, so it began after the change only past the timeout.
    return wall_now - age > wall_change + UPSTREAM_TIMEOUT + 0.5


async def recover(deployment: Deployment, start: float) -> list[Recovered]:
    """Poll /readyz only (no caller traffic) until each replica is ready with the newest catalog.

    At the latest at ``start + RECOVERY``, one GET of /v1/products per replica tells which
    catalog it serves.
    """
    clock = deployment.clock
    deadline = start + RECOVERY
    results = [Recovered(f"replica-{index}") for index in range(deployment.size)]
    done: set[int] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while clock.now() < deadline and len(done) < deployment.size:
            for index, result in enumerate(results):
                answer = await fetch(session, f"{deployment.replicas[index].url}/readyz")
                result.readyz = answer.status
                if answer.status != 200:
                    done.discard(index)
                    continue
                if result.ready_after is None:
                    result.ready_after = clock.now() - start
                with contextlib.suppress(ValueError):
                    report = json.loads(answer.body)
                    wall = time.time()
                    if _fetched_after(report, wall, clock.wall(deployment.changed_at)):
                        done.add(index)
            await asyncio.sleep(0.5)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index, result in enumerate(results):
            answer = await fetch(session, f"{deployment.replicas[index].url}/v1/products")
            result.status = answer.status
            result.detail = answer.error or answer.cache_status
            with contextlib.suppress(ValueError):
                result.version = deployment.versions.get(canonical(json.loads(answer.body)))
    return results


async def sandbox_catalog(sandbox: SandboxProcess) -> tuple[str, str]:
    """Fetch the catalog from the sandbox directly; return its digest and the token used."""
    basic = base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()).decode()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.post(
            f"{sandbox.url}/oauth/token",
            json={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ) as response:
            token = str((await response.json())["access_token"])
        async with session.get(
            f"{sandbox.url}/v1/products", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return canonical(json.loads(await response.read())), token


# -- invariants ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One invariant's result: how often it was checked, how often it broke, and why."""

    name: str
    checks: int = 0
    violations: int = 0
    detail: str = ""
    examples: list[str] = field(default_factory=list)

    def broken(self, example: str) -> None:
        """Count one violation, keeping the first few as examples."""
        self.violations += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass(frozen=True)
class Window:
    """A Retry-After window: opened by a 429 answer to one replica's call."""

    endpoint: str
    start: float
    end: float
    call: Call
    source: int


def retry_windows(calls: Sequence[Call], applied: Sequence[Applied], clock: Clock) -> list[Window]:
    """Every Retry-After window a 429 fault opened, from the calls made while it was on."""
    windows: list[Window] = []
    for source, record in enumerate(applied):
        limit = record.fault.rate_limit
        if limit is None:
            continue
        for call in calls:
            if call.endpoint != limit.endpoint:
                continue
            if not record.effective + EDGE < call.at < record.cleared - EDGE:
                continue
            seconds = float(limit.seconds)
            if record.retry_until_wall is not None:
                seconds = record.retry_until_wall - clock.wall(call.at)
            seconds = min(max(seconds, 0.0), RETRY_AFTER_MAX)
            if seconds > 0:
                windows.append(Window(limit.endpoint, call.at, call.at + seconds, call, source))
    return windows


def check_retry_after(
    calls: Sequence[Call], windows: Sequence[Window], deployment: Deployment
) -> Verdict:
    """No call inside a window its replica knew of; none at all while the store was up."""
    verdict = Verdict("no upstream call inside a known Retry-After window", checks=len(windows))
    exempt: set[int] = set()
    for number, call in enumerate(calls):
        for window in windows:
            if call is window.call or call.endpoint != window.endpoint:
                continue
            if not window.start < call.at < window.end - END_SLACK:
                continue
            into = call.at - window.start
            same = call.pid is not None and call.pid == window.call.pid
            shared = not any(
                span.overlaps(window.start - STORE_GRACE, call.at) for span in deployment.store_down
            )
            if (same and into > SAME_SLACK) or (not same and shared and into > SHARE_SLACK):
                who = deployment.name_of(call.pid)
                how = "its own" if same else f"{deployment.name_of(window.call.pid)}'s (store up)"
                verdict.broken(
                    f"+{call.at:.1f} s {who} called {call.endpoint} {into:.1f} s into {how} "
                    f"{window.end - window.start:.0f} s window"
                )
                break
            exempt.add(number)
    opened = ", ".join(
        f"{window.endpoint} {window.end - window.start:.0f} s at +{window.start:.0f} s by "
        f"{deployment.name_of(window.call.pid)}"
        for window in windows
    )
    verdict.detail = (
        f"windows: {opened or 'none'}; other replicas' calls in them while the store was down "
        f"(allowed): {len(exempt)}"
    )
    return verdict


def fault_allowance(seconds: float, replicas: int) -> int:
    """Return the products calls allowed in a fault window of ``seconds``.

    That is a full fetch (with its retries) per replica as it begins, then one more per
    replica every two seconds.
    """
    attempts = UPSTREAM_RETRIES + 1
    return math.ceil(attempts * replicas * (1 + seconds / 2))


def check_budget(
    calls: Sequence[Call],
    applied: Sequence[Applied],
    windows: Sequence[Window],
    within: Span,
    replicas: int,
) -> Verdict:
    """Products calls: one per TTL period outside faults, a bounded rate in each fault window."""
    verdict = Verdict("upstream products calls within TTL periods + fault windows")
    products = [call.at for call in calls if call.endpoint == PRODUCTS]
    reaches: dict[int, float] = {}
    for window in windows:
        reaches[window.source] = max(reaches.get(window.source, 0.0), window.end)
    spans = []
    worst = (0.0, "", 0, 0)
    for source, record in enumerate(applied):
        # A fault lasts as long as its Retry-After windows, and a little longer: retries and
        # backoff finish after it (Redis: until the replicas use it again).
        tail = STORE_GRACE if record.fault.kind.startswith("redis") else FAULT_TAIL
        span = Span(record.start, max(record.end, reaches.get(source, 0.0)) + tail)
        spans.append(span)
        made = sum(1 for moment in products if span.covers(moment))
        allowed = fault_allowance(span.length, replicas)
        verdict.checks += 1
        if made > allowed:
            verdict.broken(
                f"{record.fault.kind} at +{span.start:.1f} s: {made} products calls in "
                f"{span.length:.1f} s, at most {allowed} allowed"
            )
        worst = max(worst, (made / allowed, record.fault.kind, made, allowed))
    faulty = [
        Span(max(span.start, within.start), min(span.end, within.end))
        for span in merged(spans)
        if span.overlaps(within.start, within.end)
    ]
    fault_calls = sum(1 for moment in products if any(span.covers(moment) for span in faulty))
    fault_seconds = sum(span.length for span in faulty)
    fault_allowed = sum(fault_allowance(span.length, replicas) for span in faulty)
    verdict.checks += 1
    if fault_calls > fault_allowed:
        verdict.broken(f"{fault_calls} products calls in all fault time, at most {fault_allowed}")
    quiet = gaps(faulty, within)
    quiet_calls = sum(1 for moment in products if any(span.covers(moment) for span in quiet))
    quiet_allowed = sum(math.ceil(span.length / CACHE_TTL) + 1 for span in quiet)
    verdict.checks += 1
    if quiet_calls > quiet_allowed:
        verdict.broken(
            f"{quiet_calls} products calls outside faults, at most {quiet_allowed} allowed"
        )
    quiet_seconds = sum(span.length for span in quiet)
    verdict.detail = (
        f"outside faults {quiet_calls}/{quiet_allowed} in {quiet_seconds:.0f} s; "
        f"in fault time {fault_calls}/{fault_allowed} in {fault_seconds:.0f} s; "
        f"busiest fault window {worst[1]} {worst[2]}/{worst[3]}"
    )
    return verdict


def check_recovery(results: Sequence[Recovered], newest: int, *, sandbox_newest: bool) -> Verdict:
    """Every replica ready, serving the newest catalog, within the recovery time."""
    verdict = Verdict(f"ready + newest catalog within {RECOVERY:.0f} s, no traffic")
    for result in results:
        verdict.checks += 1
        if result.readyz != 200:
            verdict.broken(f"{result.name}: /readyz {result.readyz} at the deadline")
        elif result.status != 200:
            verdict.broken(f"{result.name}: GET /v1/products {result.status} ({result.detail})")
        elif result.version != newest:
            verdict.broken(
                f"{result.name}: serves catalog revision {result.version}, newest is {newest}"
                f" ({result.detail})"
            )
    if not sandbox_newest:
        verdict.broken("the sandbox itself does not serve the newest revision (harness)")
    ready = [r.ready_after for r in results if r.ready_after is not None]
    slowest = f"ready after {max(ready):.1f} s" if len(ready) == len(results) else "not all ready"
    served = ", ".join(f"{r.name} rev {r.version} ({r.detail})" for r in results)
    verdict.detail = f"newest rev {newest}; {slowest}; {served}"
    return verdict


def check_answers(tally: Tally, deployment: Deployment) -> Verdict:
    """Every answer a 200 with a catalog or a JSON 502/503/504; no failure from a live replica."""
    verdict = Verdict("answers: 200 (fresh/stale) or JSON 502/503/504", checks=tally.total)
    verdict.violations += sum(tally.problems.values())
    verdict.examples.extend(tally.examples)
    exempt = 0
    for failure in tally.failures:
        if deployment.was_down(failure.replica, failure.start, failure.end):
            exempt += 1
            continue
        verdict.broken(
            f"+{failure.end:.1f} s replica-{failure.replica} (alive): {failure.error[:100]}"
        )
    for exit_note in deployment.exits:
        verdict.checks += 1
        verdict.broken(exit_note)
    shown = ", ".join(f"{name} {count}" for name, count in sorted(tally.counts.items()))
    problems = ", ".join(f"{name} {count}" for name, count in tally.problems.items())
    verdict.detail = f"{shown}; connection errors while killed (allowed) {exempt}" + (
        f"; broken: {problems}" if problems else ""
    )
    return verdict


def check_secrets(
    texts: Mapping[str, str], secrets: Mapping[str, str], trap_hits: Sequence[TrapHit]
) -> Verdict:
    """No secret in any text; nothing with credentials sent to a redirect target."""
    verdict = Verdict("no secret in any log (or sent to a redirect)")
    for source, text in texts.items():
        for label, secret in secrets.items():
            verdict.checks += 1
            if secret and secret in text:
                verdict.broken(f"{label} in {source}")
    for hit in trap_hits:
        verdict.checks += 1
        head = hit.head.decode(errors="replace")
        if re.search(r"^authorization:", head, re.IGNORECASE | re.MULTILINE) or any(
            secret and secret in head for secret in secrets.values()
        ):
            verdict.broken(f"+{hit.at:.1f} s credentials sent to the redirect target")
    verdict.detail = (
        f"{len(secrets)} secrets x {len(texts)} texts; {len(trap_hits)} requests followed a "
        "redirect to the trap"
    )
    return verdict


def check_rss(watch: Watch, final: Mapping[int, int], deployment: Deployment) -> Verdict:
    """Each replica's RSS grew less than the limit since it settled after (re)start."""
    verdict = Verdict(f"RSS growth per replica < {RSS_LIMIT // MIB} MiB")
    parts = []
    for index in range(deployment.size):
        pid = deployment.pid_of(index)
        if pid is None or pid not in final:
            continue
        first = watch.rss_first.get(pid)
        if first is None:
            parts.append(f"replica-{index} no baseline")
            continue
        verdict.checks += 1
        growth = final[pid] - first
        peak = watch.rss_peak.get(pid, final[pid])
        parts.append(
            f"replica-{index} {first / MIB:.1f}->{final[pid] / MIB:.1f} MiB (peak {peak / MIB:.1f})"
        )
        if growth >= RSS_LIMIT:
            verdict.broken(f"replica-{index} grew by {growth / MIB:.1f} MiB")
    verdict.detail = "; ".join(parts)
    return verdict


def secrets_to_find(tokens: Iterable[str]) -> dict[str, str]:
    """Return the client secret, the Basic credential and every token (and its signature)."""
    basic = base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()).decode()
    found = {
        "client secret": SANDBOX_CLIENT_SECRET,
        "Basic credential": basic.rstrip("="),
        "a token's JWT header": JWT_HEADER,
    }
    for number, token in enumerate(sorted(set(tokens)), 1):
        found[f"token {number}"] = token
        found[f"token {number} signature"] = token.rpartition(".")[2][:40]
    return found


def log_findings(deployment: Deployment) -> list[str]:
    """Error-level events and non-JSON lines in the replica logs, for the report."""
    notes = []
    for index, replica in enumerate(deployment.replicas):
        text = replica.log_text()
        records = replica.log_records()
        errors = Counter(
            str(record.get("event"))
            for record in records
            if str(record.get("level", "")).lower() in {"error", "critical", "exception"}
        )
        plain = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
        if errors:
            notes.append(f"replica-{index} error events: {dict(errors)}")
        if plain:
            notes.append(
                f"replica-{index} {len(plain)} non-JSON log lines, first: {plain[0][:150]}"
            )
    return notes


# -- the report ---------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], wrap: int = 0) -> list[str]:
    """Format rows as a plain-text table; the last column wraps at ``wrap`` characters."""
    wrapped: list[list[str]] = []
    for row in rows:
        last = textwrap.wrap(row[-1], wrap) if wrap else [row[-1]]
        for number, piece in enumerate(last or [""]):
            wrapped.append([*(row[:-1] if number == 0 else [""] * (len(row) - 1)), piece])
    widths = [
        max(len(cells[column]) for cells in [list(headers), *wrapped])
        for column in range(len(headers))
    ]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in wrapped
    )
    return lines


def report_faults(console: Console, seen: Observations) -> None:
    """Print each fault kind: times injected, seconds in all, upstream calls while it lasted."""
    counts: Counter[tuple[str, str]] = Counter()
    seconds: dict[tuple[str, str], float] = {}
    calls: Counter[tuple[str, str, str]] = Counter()
    for record in seen.applied:
        key = (record.fault.category, record.fault.kind)
        counts[key] += 1
        seconds[key] = seconds.get(key, 0.0) + record.end - record.start
        for call in seen.calls:
            if record.start <= call.at <= record.end + FAULT_TAIL:
                calls[(*key, call.endpoint)] += 1
    rows = [
        [
            category,
            kind,
            str(counts[(category, kind)]),
            f"{seconds[(category, kind)]:.1f}",
            f"{calls[(category, kind, PRODUCTS)]}/{calls[(category, kind, TOKEN)]}",
        ]
        for category, kind in sorted(counts)
    ]
    console.plain("faults injected (upstream calls while on: products/token)")
    for line in table(["category", "kind", "count", "seconds", "calls"], rows):
        console.plain(f"  {line}")
    if seen.schedule.unsupported:
        unsupported = "; ".join(seen.schedule.unsupported)
        console.plain(f"  not injectable with this sandbox: {unsupported}")


# -- the soak -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    minutes: float
    seed: int
    rate: float
    workers: int
    trace: Path | None = None


@dataclass
class Observations:
    """Everything the soak saw, for the checks after the deployment stopped."""

    schedule: Schedule
    applied: list[Applied]
    calls: list[Call]
    windows: list[Window]
    recovered: list[Recovered]
    rss_final: dict[int, int]
    tokens: list[str]
    trap_hits: list[TrapHit]
    within: Span
    harness: list[str]


async def observe(dep: Deployment, options: Options, tally: Tally, watch: Watch) -> Observations:
    """Run load, faults and the recovery wait on a started deployment; return what was seen."""
    clock, console, relay = dep.clock, dep.console, dep.relay
    if relay is None:
        raise RuntimeError("the deployment has not started")
    switches = frozenset((await dep.sandbox.stats())["faults"])
    load_start = clock.now()
    total = options.minutes * 60
    span = Span(WARM_UP, total - RETRY_AFTER_MAX - RECOVERY - END_MARGIN)
    schedule = plan(options.seed, span, fault_kinds(relay.trap_url), switches, dep.size)
    console.say(
        f"schedule: {len(schedule.faults)} faults, {len(schedule.catalog_changes)} catalog "
        f"changes between +{span.start:.0f} s and +{span.end:.0f} s of load"
    )
    load = Load(dep, tally, options.rate, options.workers)
    injector = Injector(dep, load_start)
    load_task = asyncio.create_task(load.run(int(options.rate * total * 2)))
    progress = asyncio.create_task(_progress(dep, tally))
    await injector.run(schedule, load_start + span.end)
    load.stop.set()
    progress.cancel()
    last = max((record.end for record in injector.applied), default=clock.now())
    windows = retry_windows(list(relay.calls), injector.applied, clock)
    quiet_from = max([last, *(window.end for window in windows)])
    console.say(
        f"last fault over at +{last:.1f} s, its Retry-After windows at +{quiet_from:.1f} s; "
        "load stopped, waiting for recovery (readiness probes only)"
    )
    await clock.sleep_until(quiet_from)
    recovered = await recover(dep, quiet_from)
    console.say("recovery wait over")
    await load_task
    rss_final = watch.sample_rss()
    calls = list(relay.calls)
    stats = await dep.sandbox.stats()
    harness = _cross_check(calls, stats, relay.cut_off)
    tokens = [header.partition(" ")[2] for header in stats["products_authorizations"] if header]
    digest, own_token = await sandbox_catalog(dep.sandbox)
    newest_digest = canonical(catalog_version(dep.newest))
    if digest != newest_digest:
        harness.append("the sandbox serves a catalog other than the newest revision")
    return Observations(
        schedule=schedule,
        applied=injector.applied,
        calls=calls,
        windows=retry_windows(calls, injector.applied, clock),
        recovered=recovered,
        rss_final=rss_final,
        tokens=[*tokens, own_token],
        trap_hits=list(relay.trap_hits),
        within=Span(load_start, clock.now()),
        harness=harness,
    )


async def _progress(dep: Deployment, tally: Tally, every: float = 30.0) -> None:
    """Print a line about answers and upstream calls every ``every`` seconds."""
    relay = dep.relay
    while relay is not None:
        await asyncio.sleep(every)
        calls = Counter(call.endpoint for call in relay.calls)
        broken = sum(tally.problems.values())
        dep.console.say(
            f"progress: {tally.total} answers ({broken} broken, {len(tally.failures)} without "
            f"connection); upstream products {calls[PRODUCTS]}, token {calls[TOKEN]}"
        )


def _cross_check(calls: Sequence[Call], stats: Mapping[str, Any], cut_off: int) -> list[str]:
    """Check that the relay saw every request the sandbox counted (and no more)."""
    problems = []
    for endpoint, counted in (
        (PRODUCTS, stats["products_requests"]),
        (TOKEN, stats["token_requests"]),
    ):
        seen = sum(1 for call in calls if call.endpoint == endpoint)
        if not seen - cut_off <= counted <= seen:
            problems.append(
                f"relay saw {seen} {endpoint} requests ({cut_off} cut off), sandbox {counted}"
            )
    return problems


def write_trace(path: Path, dep: Deployment, seen: Observations) -> None:
    """Write the faults as applied and every upstream call, in time order, as JSON lines."""
    events: list[tuple[float, dict[str, object]]] = [
        (record.start, {"fault": record.fault.describe(), "until": round(record.end, 3)})
        for record in seen.applied
    ]
    events.extend(
        (call.at, {"call": call.endpoint, "replica": dep.name_of(call.pid)}) for call in seen.calls
    )
    with path.open("w") as trace:
        for at, event in sorted(events, key=lambda item: item[0]):
            trace.write(json.dumps({"at": round(at, 3), **event}) + "\n")


def judge(
    dep: Deployment, seen: Observations, tally: Tally, watch: Watch, console: Console
) -> list[Verdict]:
    """Check every invariant against what the soak saw."""
    texts = {
        f"replica-{index} log": replica.log_text() for index, replica in enumerate(dep.replicas)
    }
    texts["chaos output"] = "\n".join(console.lines)
    return [
        check_answers(tally, dep),
        check_retry_after(seen.calls, seen.windows, dep),
        check_budget(seen.calls, seen.applied, seen.windows, seen.within, dep.size),
        check_recovery(
            seen.recovered, dep.newest, sandbox_newest="sandbox" not in " ".join(seen.harness)
        ),
        check_secrets(texts, secrets_to_find(seen.tokens), seen.trap_hits),
        check_rss(watch, seen.rss_final, dep),
    ]


def report(
    console: Console, dep: Deployment, options: Options, seen: Observations, verdicts: list[Verdict]
) -> None:
    """Print the fault counts, the invariant table, and examples of each violation."""
    console.plain()
    console.plain(f"== chaos soak: {options.minutes:g} min, seed {options.seed} ==")
    report_faults(console, seen)
    for endpoint in (PRODUCTS, TOKEN):
        made = [call for call in seen.calls if call.endpoint == endpoint]
        by = Counter(dep.name_of(call.pid) for call in made)
        shown = ", ".join(f"{name} {count}" for name, count in sorted(by.items()))
        console.plain(f"upstream {endpoint} calls: {len(made)} ({shown})")
    console.plain()
    rows = [
        [verdict.name, str(verdict.checks), str(verdict.violations), verdict.detail]
        for verdict in verdicts
    ]
    for line in table(["invariant", "checks", "violations", "detail"], rows, wrap=70):
        console.plain(line)
    for verdict in verdicts:
        if verdict.examples:
            console.plain()
            console.plain(f"{verdict.name}: {verdict.violations} violation(s), first ones:")
            for example in verdict.examples:
                console.plain(f"  - {example}")


async def soak(options: Options) -> int:
    """Run the whole soak; return the exit status."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    clock = Clock()
    console = Console(clock)
    console.say(f"chaos soak: {options.minutes:g} min, seed {options.seed}")
    dep = Deployment(clock, console, REPLICAS)
    tally = Tally(dep)
    watch = Watch(dep)
    try:
        await asyncio.to_thread(dep.start)
        console.say(f"{REPLICAS} replicas ready; load at {options.rate:g} requests/s")
        watcher = asyncio.create_task(watch.run())
        try:
            seen = await observe(dep, options, tally, watch)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    finally:
        await asyncio.to_thread(dep.stop)
    verdicts = judge(dep, seen, tally, watch, console)
    if options.trace is not None:
        write_trace(options.trace, dep, seen)
    report(console, dep, options, seen, verdicts)
    console.plain(f"readiness probes during the run: {dict(watch.probes)}")
    for note in log_findings(dep):
        console.plain(f"note: {note}")
    for problem in seen.harness:
        console.plain(f"HARNESS: {problem}")
    broken = [verdict.name for verdict in verdicts if verdict.violations]
    console.plain()
    if seen.harness:
        console.plain("RESULT: the soak could not observe everything (see HARNESS)")
        return 2
    console.plain(f"RESULT: {'FAIL, broken: ' + '; '.join(broken) if broken else 'PASS'}")
    return 1 if broken else 0


def _arguments(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos.py", description="Chaos soak of three replicas, Redis and sandbox."
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the run")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule")
    parser.add_argument("--rate", type=float, default=150.0, help="caller requests per second")
    parser.add_argument("--workers", type=int, default=12, help="concurrent callers")
    parser.add_argument(
        "--trace", type=Path, help="write every fault and upstream call to this file (JSON lines)"
    )
    arguments = parser.parse_args(argv)
    shortest = (WARM_UP + RETRY_AFTER_MAX + RECOVERY + END_MARGIN + 10) / 60
    if arguments.minutes < shortest:
        parser.error(f"--minutes must be at least {shortest:.1f}")
    if arguments.rate <= 0 or arguments.workers < 1:
        parser.error("--rate must be positive and --workers at least 1")
    return Options(
        arguments.minutes, arguments.seed, arguments.rate, arguments.workers, arguments.trace
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak from the command line."""
    options = _arguments(argv)
    try:
        return asyncio.run(soak(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
