"""Hostile callers: junk paths, queries, headers, methods, credentials and bodies.

Three hundred requests, generated from a fixed seed, go to a proxy in process (API keys and an
admin token set). Every answer must be below 500, JSON with the error shape when it is an error,
and must not echo a long stretch of what was sent; afterwards the service is still healthy and
the upstream saw none of them. Bytes an HTTP client library will not send (header values that
are not UTF-8, malformed messages) go over raw sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import string
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr
from yarl import URL

from tests.support.processes import ProxyProcess
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import REPO_ROOT

Client = TestClient[web.Request, web.Application]
Headers = tuple[tuple[str, str], ...]

SEED = 1_000_003
COUNT = 300
API_KEY = "hostile-key"
ADMIN_TOKEN = "hostile-admin"
KEY: Headers = (("Authorization", f"Bearer {API_KEY}"),)
ADMIN: Headers = (("Authorization", f"Bearer {ADMIN_TOKEN}"),)
# No answer may carry more than this many consecutive characters of what the caller sent.
ECHO_LIMIT = 200
# The service takes header fields up to 16 KB (docs/api.md); a value of exactly that must be served.
HEADER_LIMIT = 16 * 1024
ANSWER_SECONDS = 5.0

GET_ROUTES = (
    "/v1/products",
    "/api/v1/products",
    "/api/v1/products/1001",
    "/api/v1/categories",
    "/healthz",
    "/readyz",
    "/openapi.json",
)
PROTECTED = GET_ROUTES[:4]
REFRESH = "/admin/refresh"
# A junk path is unknown (404), refused before routing (401 under /api/ and /v1/), a bad
# product id (400, the {id} route takes any one segment) or the wrong method there (405).
PATH_STATUSES = frozenset({400, 401, 404, 405})
_DOCUMENT = json.loads((REPO_ROOT / "proxy" / "web" / "openapi.json").read_bytes())
ERROR_CODES = frozenset(
    _DOCUMENT["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
)


@dataclass(frozen=True)
class Hostile:
    """One request: ``target`` is the percent-encoded path and query, sent byte for byte."""

    kind: str
    method: str
    target: str
    headers: Headers = ()
    body: bytes | None = None
    expected: frozenset[int] = frozenset()
    """The right statuses when they are known; empty means any status below 500."""

    def describe(self) -> str:
        target = self.target
        if len(target) > 150:
            target = f"{target[:150]}... ({len(target)} chars)"
        method = self.method if len(self.method) <= 20 else f"{self.method[:20]}..."
        parts = [f"[{self.kind}] {method} {target}"]
        parts += [f"{name}: <{len(value)} chars>" for name, value in self.headers]
        if self.body is not None:
            parts.append(f"body <{len(self.body)} bytes>")
        return " | ".join(parts)

    def sent_texts(self) -> list[str]:
        """What the caller sent that the answer must not repeat at length."""
        texts = [self.target, unquote(self.target, errors="replace"), self.method]
        return texts + [value for _, value in self.headers]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    body: bytes


# -- the hostile set ----------------------------------------------------------------------------

_SAFE = string.ascii_letters + string.digits + "-._~"


def _junk_bytes(rng: random.Random, size: int) -> str:
    return "".join(f"%{byte:02X}" for byte in rng.randbytes(size))


def _maybe_key(rng: random.Random) -> Headers:
    return rng.choice(((), KEY))


def _text(rng: random.Random, size: int, alphabet: str = _SAFE) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def junk_path(rng: random.Random) -> Hostile:
    prefix = rng.choice(("", "/api/v1", "/v1", "/admin", "/api/v1/products"))
    segments = [_junk_bytes(rng, rng.randint(1, 24)) for _ in range(rng.randint(1, 4))]
    method = rng.choice(("GET", "GET", "POST"))
    target = f"{prefix}/{'/'.join(segments)}"
    return Hostile("junk path", method, target, _maybe_key(rng), expected=PATH_STATUSES)


def long_path(rng: random.Random) -> Hostile:
    prefix = rng.choice(("/", "/api/v1/", "/v1/products/", "/api/v1/products/", "/admin/"))
    size = rng.randint(3900, 4300)
    pieces = [prefix]
    length = len(prefix)
    while length < size:
        piece = _junk_bytes(rng, 1) if rng.random() < 0.2 else _text(rng, rng.randint(1, 40))
        if rng.random() < 0.1:
            piece += "/"
        pieces.append(piece)
        length += len(piece)
    return Hostile("long path", "GET", "".join(pieces), _maybe_key(rng), expected=PATH_STATUSES)


_TAILS = ("etc/passwd", "admin/refresh", "v1/products", "proc/self/environ", "openapi.json")
_TRAVERSALS = (
    "/api/v1/../../{tail}",
    "/v1/products/../../{tail}",
    "/%2e%2e/%2e%2e/{tail}",
    "/%2E%2E%2F%2E%2E%2F{tail}",
    "/api/v1/products/..%2f..%2f{tail}",
    "/api/v1/products/%2e%2e",
    "/api/v1/products/..",
    "/./v1/./products",
    "/v1/products/.",
    "/..;/{tail}",
    "/%252e%252e/%252e%252e/{tail}",
    "/api/v1/products/..%5c..%5c{tail}",
    "/....//....//{tail}",
    "/v1/products/%c0%ae%c0%ae/{tail}",
    "/api/v1/products/1001/../../categories",
)


def traversal(rng: random.Random) -> Hostile:
    target = rng.choice(_TRAVERSALS).format(tail=rng.choice(_TAILS))
    return Hostile("traversal", "GET", target, _maybe_key(rng), expected=PATH_STATUSES)


_DOUBLE_SLASHES = (
    "//",
    "//v1/products",
    "/v1//products",
    "/api/v1/products//1001",
    "/api//v1/categories",
    "///admin///refresh",
    "/healthz//",
    "//example.com/v1/products",
    "//127.0.0.1:1/v1/products",
    "/openapi.json//",
)


def double_slash(rng: random.Random) -> Hostile:
    target = rng.choice(_DOUBLE_SLASHES)
    method = "POST" if "admin" in target else "GET"
    return Hostile("double slash", method, target, _maybe_key(rng), expected=PATH_STATUSES)


_ENCODED_SLASHES = (
    "/api%2Fv1%2Fproducts",
    "/v1%2fproducts",
    "/api/v1/products/1001%2F",
    "/api/v1/products/1001%2F..%2F1002",
    "/%2F%2Fexample.com/",
    "/api/v1%2Fcategories",
    "/healthz%2F",
    "/%5Cv1%5Cproducts",
)


def encoded_slash(rng: random.Random) -> Hostile:
    if rng.random() < 0.2:
        return Hostile("encoded slash", "POST", "/admin%2Frefresh", ADMIN, expected=PATH_STATUSES)
    target = rng.choice(_ENCODED_SLASHES)
    return Hostile("encoded slash", "GET", target, _maybe_key(rng), expected=PATH_STATUSES)


_NULLS = (
    "/v1/products%00",
    "/api/v1/products/1001%00",
    "/healthz%00.json",
    "/%00",
    "/api/v1/%00/products",
    "/openapi.json%00.html",
    "/%00%00%00",
    "/readyz%00/../healthz",
)


def null_byte(rng: random.Random) -> Hostile:
    if rng.random() < 0.15:
        return Hostile("null byte", "POST", "/admin/refresh%00", ADMIN, expected=PATH_STATUSES)
    return Hostile("null byte", "GET", rng.choice(_NULLS), _maybe_key(rng), expected=PATH_STATUSES)


_UNICODE = (
    "/api/v1/pr%C3%B6ducts",
    "/%F0%9F%92%A9",
    "/v1/products/%E2%80%AE",
    "/%EF%BB%BFv1/products",
    # Full-width and Arabic-Indic digits: str.isdigit() says yes, int() would take them.
    "/api/v1/products/%EF%BC%91%EF%BC%90%EF%BC%90%EF%BC%91",
    "/api/v1/products/%D9%A1%D9%A0%D9%A0%D9%A1",
    "/%E3%83%86%E3%82%B9%E3%83%88",
    "/v1/products/%F4%90%80%80",
    "/%C0%AF%C0%AF",
    "/api/v1/categories%E2%80%8B",
)


def unicode_path(rng: random.Random) -> Hostile:
    if rng.random() < 0.4:
        points = [rng.randint(0x80, 0x10FFFF) for _ in range(rng.randint(1, 12))]
        # Lone surrogates cannot be encoded as UTF-8; anything else goes.
        text = "".join(chr(p) for p in points if not 0xD800 <= p <= 0xDFFF) or "\u00e9"
        prefix = rng.choice(("/", "/api/v1/products/", "/v1/"))
        target = prefix + quote(text, safe="")
    else:
        target = rng.choice(_UNICODE)
    return Hostile("unicode path", "GET", target, _maybe_key(rng), expected=PATH_STATUSES)


_NAMES = ("q", "material", "id", "sort", "category", "zz", "Q", "SORT", "q[]", "", "id.1")
_QUERY_JUNK: tuple[Callable[[random.Random], str], ...] = (
    lambda rng: f"{_text(rng, rng.randint(1, 20))}={_text(rng, rng.randint(0, 20))}",
    lambda rng: rng.choice(
        (
            "sort=id&sort=-name",
            "id=1001&id=1001",
            "q=a&q=b",
            "category=sim&category=sim&category=sim",
            "material=x&material=y",
            "sort=price&sort=price",
        )
    ),
    lambda rng: f"{rng.choice(_NAMES)}={'x' * rng.randint(2000, 6000)}",
    lambda rng: f"{rng.choice(_NAMES)}=a%{rng.choice([*range(32), 127]):02X}b",
    lambda rng: rng.choice(
        (
            "q=%zz",
            "q=%",
            "sort=%4",
            "%zz=1",
            "material=%E2%82",
            "q=%%",
            "id=%2",
            "q=%u0041",
            "category=%FF%FE",
        )
    ),
    lambda rng: rng.choice(
        (
            "&&&",
            "=",
            "==",
            "a=b=c",
            "q",
            ";q=1",
            "+++",
            "q=+",
            "id=-1",
            "id=0",
            "id=9223372036854775808",
            "id=1e3",
            "id=0x10",
            "id=1_000",
            "id=%EF%BC%91",
            "sort=",
            "category=",
            "category=SIM",
            "q=%20%20",
            f"id={','.join(str(n) for n in range(1, 150))}",
        )
    ),
)


def junk_query(rng: random.Random) -> Hostile:
    route = rng.choice((*GET_ROUTES, REFRESH))
    query = "&".join(rng.choice(_QUERY_JUNK)(rng) for _ in range(rng.randint(1, 4)))
    if route == REFRESH:
        # The refresh ran in the warm-up and the interval is an hour: 429, nothing upstream.
        return Hostile("junk query", "POST", f"{route}?{query}", ADMIN, expected=frozenset({429}))
    expected = {200, 400} if route.startswith("/api/") else {200}
    return Hostile("junk query", "GET", f"{route}?{query}", KEY, expected=frozenset(expected))


def big_header(rng: random.Random) -> Hostile:
    value = _text(rng, HEADER_LIMIT, string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?")
    choices: tuple[tuple[str, str, Headers, int], ...] = (
        ("GET", "/v1/products", (*KEY, ("X-Junk", value)), 200),
        ("GET", "/api/v1/products", (*KEY, ("If-None-Match", value)), 200),
        ("GET", "/healthz", (("X-Request-ID", value),), 200),
        ("GET", "/v1/products", (("Authorization", f"Bearer {value[7:]}"),), 401),
        ("GET", "/api/v1/categories", (*KEY, ("User-Agent", value)), 200),
        ("GET", "/readyz", (("Cookie", value),), 200),
        ("GET", "/openapi.json", (("Accept", value),), 200),
        ("POST", REFRESH, (*ADMIN, ("X-Junk", value)), 429),
    )
    method, route, headers, status = rng.choice(choices)
    return Hostile("16 KB header", method, route, headers, expected=frozenset({status}))


# Methods the HTTP parser knows; others (BREW, a 300-letter one) it refuses itself, before the
# application sees them, so they are among the malformed messages below.
_ODD_METHODS = (
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "HEAD",
    "PROPFIND",
    "TRACE",
    "M-SEARCH",
    "PURGE",
)


def wrong_method(rng: random.Random) -> Hostile:
    body = rng.randbytes(rng.randint(0, 65536)) if rng.random() < 0.3 else None
    if rng.random() < 0.25:
        method = rng.choice(("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"))
        return Hostile(
            "wrong method", method, REFRESH, rng.choice(((), ADMIN)), body, frozenset({405})
        )
    method = rng.choice(_ODD_METHODS)
    route = rng.choice(GET_ROUTES)
    return Hostile("wrong method", method, route, KEY, body, frozenset({405}))


def _bad_credentials(rng: random.Random) -> Headers:
    basic = base64.b64encode(f"user:{API_KEY}".encode()).decode()
    values = (
        "Bearer",
        "Bearer ",
        "bearer",
        f"Basic {basic}",
        "Bearer wrong-key",
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY[:-1]}",
        f"Token {API_KEY}",
        API_KEY,
        f"Bearer {ADMIN_TOKEN}",
        "Bearer " + "A" * 4000,
        f"Bearer\t{API_KEY}",
        f"Bearer {API_KEY},Bearer x",
        "Bearer h\u00f6stile-key",
        f"Bearer {API_KEY.upper()}",
    )
    if rng.random() < 0.1:
        return ()
    if rng.random() < 0.1:
        # Two fields: the first, wrong one is the one that counts.
        return (("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {API_KEY}"))
    return (("Authorization", rng.choice(values)),)


def bad_auth(rng: random.Random) -> Hostile:
    headers = _bad_credentials(rng)
    if rng.random() < 0.25:
        # The API key and every wrong credential are wrong for the admin endpoint too.
        admin_headers = ((("Authorization", f"Bearer {API_KEY}"),), headers)
        return Hostile(
            "bad auth", "POST", REFRESH, rng.choice(admin_headers), None, frozenset({401})
        )
    return Hostile("bad auth", "GET", rng.choice(PROTECTED), headers, None, frozenset({401}))


_CONTENT_TYPES = (
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/json; charset=utf-7",
    "application/octet-stream",
)


def _admin_body(rng: random.Random) -> bytes:
    return rng.choice(
        (
            b"{",
            b"[1,",
            b'{"a":}',
            b"\xff\xfe\xfd",
            b"null",
            b"[" * 50_000,
            b'{"refresh": true}' * 1000,
            b"",
            b"x" * (2 * 1024 * 1024),
            b'{"k": "' + b"v" * (1536 * 1024) + b'"}',
            rng.randbytes(rng.randint(1, 65536)),
        )
    )


def admin_body(rng: random.Random) -> Hostile:
    headers: Headers = (("Content-Type", rng.choice(_CONTENT_TYPES)),)
    credentials, status = rng.choice(
        ((ADMIN, 429), ((), 401), ((("Authorization", "Bearer nope"),), 401), (KEY, 401))
    )
    body = _admin_body(rng)
    return Hostile(
        "admin body", "POST", REFRESH, (*headers, *credentials), body, frozenset({status})
    )


GENERATORS: tuple[Callable[[random.Random], Hostile], ...] = (
    junk_path,
    long_path,
    traversal,
    double_slash,
    encoded_slash,
    null_byte,
    unicode_path,
    junk_query,
    big_header,
    wrong_method,
    bad_auth,
    admin_body,
)


def hostile_requests(seed: int = SEED, count: int = COUNT) -> Iterator[Hostile]:
    """The hostile set: every kind in turn, its details drawn from one seeded generator."""
    rng = random.Random(seed)
    for index in range(count):
        yield GENERATORS[index % len(GENERATORS)](rng)


# -- judging answers ----------------------------------------------------------------------------


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _echoes(needle: str, haystack: str, limit: int = ECHO_LIMIT) -> bool:
    """Whether more than ``limit`` consecutive characters of ``needle`` occur in ``haystack``.

    Any window of ``limit + 1`` characters contains a whole block of half that length starting
    at a multiple of it, so only windows around a block found in ``haystack`` need a look.
    """
    span = limit + 1
    block = span // 2
    if len(needle) < span:
        return False
    for start in range(0, len(needle) - block + 1, block):
        if needle[start : start + block] in haystack:
            first = max(0, start + block - span)
            last = min(start, len(needle) - span)
            if any(needle[i : i + span] in haystack for i in range(first, last + 1)):
                return True
    return False


def _error_shape(payload: object, status: int) -> list[str]:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return [f"{status} body is not {{'error': {{...}}}}"]
    problems = []
    if error.get("code") not in ERROR_CODES:
        problems.append(f"error code {error.get('code')!r} is not a documented one")
    if not isinstance(error.get("message"), str):
        problems.append("error message is not a string")
    return problems


def _status_problems(
    status: int, headers: Mapping[str, str], expected: frozenset[int]
) -> list[str]:
    problems = []
    if status >= 500:
        problems.append(f"server error {status}")
    if expected and status not in expected:
        problems.append(f"status {status}, expected {sorted(expected)}")
    if status == 405 and "Allow" not in headers:
        problems.append("405 without Allow")
    if status == 401 and "WWW-Authenticate" not in headers:
        problems.append("401 without WWW-Authenticate")
    return problems


def _body_problems(method: str, answer: Answer) -> tuple[list[str], object]:
    """What is wrong with the body, and the body parsed (None when it is not JSON)."""
    status, body = answer.status, answer.body
    if method == "HEAD" or status == 304:
        return ([f"{method} {status} answered with a body"] if body else []), None
    if not body:
        return ([f"{status} with an empty body"] if status >= 400 else []), None
    problems = []
    content_type = answer.headers.get("Content-Type", "")
    if not content_type.startswith("application/json"):
        problems.append(f"Content-Type {content_type!r}, not JSON")
    try:
        payload = json.loads(body)
    except ValueError:
        return [*problems, f"body is not JSON: {body[:120]!r}"], None
    if status >= 400:
        problems += _error_shape(payload, status)
    return problems, payload


def judge(method: str, sent: list[str], answer: Answer, expected: frozenset[int]) -> list[str]:
    """Every rule ``answer`` breaks, as short sentences (empty when it breaks none)."""
    problems = _status_problems(answer.status, answer.headers, expected)
    body_problems, payload = _body_problems(method, answer)
    problems += body_problems
    shown = [answer.body.decode("utf-8", "replace"), *_strings(payload), *answer.headers.values()]
    haystack = "\n".join(shown)
    if any(_echoes(text, haystack) for text in sent):
        problems.append(f"echoes more than {ECHO_LIMIT} characters of the request")
    return problems


async def _send(client: Client, hostile: Hostile) -> Answer | str:
    url = URL(f"http://{client.host}:{client.port}{hostile.target}", encoded=True)
    headers = CIMultiDict(hostile.headers)
    # A file-like body: aiohttp warns (an error here) about large raw bytes.
    data = None if hostile.body is None else io.BytesIO(hostile.body)
    try:
        async with (
            asyncio.timeout(ANSWER_SECONDS),
            client.session.request(
                hostile.method, url, headers=headers, data=data, allow_redirects=False
            ) as response,
        ):
            return Answer(response.status, response.headers, await response.read())
    except TimeoutError:
        return f"no answer within {ANSWER_SECONDS} s"
    except aiohttp.ClientError as exc:
        return f"no answer: {type(exc).__name__}: {exc}"


# -- the tests ----------------------------------------------------------------------------------


def test_hostile_set_is_fixed_and_covers_every_kind() -> None:
    first = list(hostile_requests())
    assert first == list(hostile_requests())
    kinds = Counter(hostile.kind for hostile in first)
    assert len(first) == COUNT
    assert len(kinds) == len(GENERATORS)
    assert min(kinds.values()) == COUNT // len(GENERATORS)
    assert any(len(hostile.target) >= 4000 for hostile in first)
    assert any(len(value) == HEADER_LIMIT for hostile in first for _, value in hostile.headers), (
        "no 16 KB header in the set"
    )


@pytest.mark.timeout(30)
async def test_hostile_requests_get_json_answers_and_reach_nothing_upstream(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await make_proxy(
        api_keys=(SecretStr(API_KEY),),
        admin_token=SecretStr(ADMIN_TOKEN),
        # The warm-up's refresh is the one allowed this hour: every hostile refresh with the
        # right token then gets 429 and none of them reaches the upstream.
        admin_refresh_interval=3600,
    )
    warm = await client.get("/v1/products", headers=dict(KEY))
    assert warm.status == 200
    refresh = await client.post(REFRESH, headers=dict(ADMIN))
    assert refresh.status == 200, await refresh.text()
    upstream_before = (sandbox.state.products_requests, sandbox.state.token_requests)
    assert upstream_before == (2, 1)

    broken = []
    for hostile in hostile_requests():
        answer = await _send(client, hostile)
        if isinstance(answer, str):
            broken.append(f"{hostile.describe()}\n    -> {answer}")
            continue
        problems = judge(hostile.method, hostile.sent_texts(), answer, hostile.expected)
        if problems:
            shown = answer.body[:200]
            broken.append(
                f"{hostile.describe()}\n    -> {answer.status} {shown!r}\n    "
                + "; ".join(problems)
            )

    # Still healthy, still serving the sandbox's catalog, and the upstream saw nothing new.
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    readiness = await ready.json()
    products = await client.get("/v1/products", headers=dict(KEY))
    catalog = json.loads(await products.read())
    after = {
        "healthz": health.status,
        "readyz": (ready.status, readiness.get("status")),
        "products": (products.status, catalog == sandbox.state.catalog),
        "upstream (products, token requests)": (
            sandbox.state.products_requests,
            sandbox.state.token_requests,
        ),
    }
    assert after == {
        "healthz": 200,
        "readyz": (200, "ready"),
        "products": (200, True),
        "upstream (products, token requests)": upstream_before,
    }, "\n".join(broken)
    assert not broken, f"{len(broken)} of {COUNT} hostile requests broke a rule:\n" + "\n".join(
        broken
    )


# -- raw bytes ----------------------------------------------------------------------------------


async def _raw(port: int, data: bytes) -> Answer | str:
    """Send ``data`` as is on a new connection; read the answer until the server closes."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return f"cannot connect: {exc}"
    try:
        writer.write(data)
        async with asyncio.timeout(ANSWER_SECONDS):
            await writer.drain()
            raw = await reader.read()
    except TimeoutError:
        return f"no answer within {ANSWER_SECONDS} s"
    except OSError as exc:
        return f"connection failed: {exc}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return f"not an HTTP answer: {raw[:200]!r}"
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    return Answer(int(parts[1]), headers, body)


def _request(method: str, target: bytes, headers: Mapping[str, bytes], body: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_API_KEY = f"Bearer {API_KEY}".encode()
# Header values that are not UTF-8: what a client that writes Latin-1 (Python's http.client,
# for one) sends for "café", or plain junk bytes. The parser hands them on undecodable.
NOT_UTF8: tuple[tuple[str, str, bytes, dict[str, bytes], int], ...] = (
    ("bad key", "GET", b"/v1/products", {"Authorization": b"Bearer \xff\xfe"}, 401),
    ("latin-1 key", "GET", b"/api/v1/products", {"Authorization": b"Bearer caf\xe9"}, 401),
    ("latin-1 key", "GET", b"/api/v1/categories", {"Authorization": b"Bearer \xe9"}, 401),
    ("bad admin token", "POST", b"/admin/refresh", {"Authorization": b"Bearer \xff"}, 401),
    (
        "request id",
        "GET",
        b"/v1/products",
        {"Authorization": _API_KEY, "X-Request-ID": b"\xff"},
        200,
    ),
    (
        "etag",
        "GET",
        b"/api/v1/categories",
        {"Authorization": _API_KEY, "If-None-Match": b'"\xff"'},
        200,
    ),
    ("other header", "GET", b"/healthz", {"X-Junk": b"\x80\x81\xfe"}, 200),
)


async def test_header_values_that_are_not_utf8_get_json_answers_below_500(
    make_proxy: MakeProxy,
) -> None:
    client = await make_proxy(api_keys=(SecretStr(API_KEY),), admin_token=SecretStr(ADMIN_TOKEN))
    assert client.port is not None
    broken = []
    for name, method, target, headers, status in NOT_UTF8:
        request = _request(method, target, headers)
        answer = await _raw(client.port, request)
        if isinstance(answer, str):
            broken.append(f"[{name}] {request!r}\n    -> {answer}")
            continue
        sent = [value.decode("latin-1") for value in headers.values()]
        problems = judge(method, sent, answer, frozenset({status}))
        if problems:
            broken.append(
                f"[{name}] {request!r}\n    -> {answer.status} {answer.body[:200]!r}\n    "
                + "; ".join(problems)
            )
    assert not broken, "\n".join(broken)


async def test_request_targets_no_path_pattern_can_match_get_json_answers(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    # "*" (asterisk form) and absolute URLs reach the router as they are; the catch-all
    # resource takes what no route does, so even these get the JSON error shape.
    client = await make_proxy(api_keys=(SecretStr(API_KEY),))
    assert client.port is not None
    cases: tuple[tuple[str, bytes, dict[str, bytes], int, str | None], ...] = (
        ("OPTIONS", b"*", {}, 404, "not_found"),
        ("GET", b"http://127.0.0.1/healthz", {}, 200, None),
        ("GET", b"http://127.0.0.1/nowhere", {}, 404, "not_found"),
        ("PUT", b"http://127.0.0.1/v1/products", {"Authorization": _API_KEY}, 405, None),
        ("GET", b"/api/v1/nowhere", {}, 401, "unauthorized"),
        ("GET", b"/api/v1/nowhere", {"Authorization": _API_KEY}, 404, "not_found"),
    )
    for method, target, headers, status, code in cases:
        answer = await _raw(client.port, _request(method, target, headers))
        assert not isinstance(answer, str), (target, answer)
        assert answer.status == status, (method, target, answer.status, answer.body)
        assert answer.headers["Content-Type"].startswith("application/json"), target
        document = json.loads(answer.body)
        if status == 405:
            assert answer.headers["Allow"] == "GET"
            assert document["error"]["code"] == "method_not_allowed"
        elif code is not None:
            assert document["error"]["code"] == code, (target, document)
        assert len(answer.headers["X-Request-ID"]) == 32
    assert sandbox.state.products_requests == 0


_OVER = b"v" * (HEADER_LIMIT + 1)
MALFORMED: tuple[tuple[str, bytes], ...] = (
    ("NUL in a header value", _request("GET", b"/healthz", {"X-Junk": b"a\x00b"})),
    ("header value 1 byte over 16 KB", _request("GET", b"/healthz", {"X-Junk": _OVER})),
    ("request target over 16 KB", _request("GET", b"/" + _OVER, {})),
    ("raw non-ASCII byte in the path", _request("GET", b"/v1/pr\xffoducts", {})),
    ("raw non-ASCII byte in the query", _request("GET", b"/api/v1/products?q=\xff", {})),
    ("space in the path", b"GET /v1/ products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ("no request line", b"GARBAGE\r\n\r\n"),
    ("unknown method", _request("BREW", b"/api/v1/categories", {"Authorization": _API_KEY})),
    ("300-letter method", _request("X" * 300, b"/v1/products", {"Authorization": _API_KEY})),
    ("HTTP/9.9", b"GET /healthz HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n"),
    (
        "Content-Length with Transfer-Encoding",
        (
            b"POST /admin/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
        ),
    ),
    (
        "bad chunk size",
        (
            b"POST /admin/refresh HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        ),
    ),
    (
        "Content-Length not a number",
        (
            b"POST /admin/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
            b"Connection: close\r\n\r\n"
        ),
    ),
)


@pytest.mark.slow
async def test_malformed_http_is_refused_and_the_service_keeps_serving() -> None:
    # The HTTP parser refuses these before any handler runs, so they are sent to the real
    # server (`python -m proxy`). Its answers are aiohttp's own plain-text 400s (docs/api.md,
    # "Errors", says so); what the service guarantees is a 4xx, a closed connection, no
    # traceback in its log, and that it keeps serving.
    broken = []
    with ProxyProcess(
        {"PROXY_API_KEYS": API_KEY, "PROXY_LOG_LEVEL": "info", "PROXY_ACCESS_LOG": "off"},
        args=["--sandbox"],
    ) as service:
        for name, request in MALFORMED:
            answer = await _raw(service.port, request)
            if isinstance(answer, str):
                broken.append(f"[{name}] {request[:120]!r}\n    -> {answer}")
            elif answer.status not in {400, 413, 414, 431}:
                broken.append(f"[{name}] {request[:120]!r}\n    -> {answer.status}")
        health = await _raw(service.port, _request("GET", b"/healthz", {}))
        products = await _raw(
            service.port, _request("GET", b"/v1/products", {"Authorization": _API_KEY})
        )
        service.stop()
        log = service.log_text()
    assert not isinstance(health, str), health
    assert health.status == 200
    assert not isinstance(products, str), products
    assert products.status == 200
    assert not broken, "\n".join(broken)
    assert "Traceback" not in log
    # aiohttp logs a bad method on a connection's first request at debug level (3 cases here).
    assert log.count("malformed_request_refused") == len(MALFORMED) - 3
