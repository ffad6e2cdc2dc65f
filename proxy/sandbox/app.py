"""The 1NCE emulator's aiohttp application: token and products endpoints plus a control API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import hdrs, web

from proxy.sandbox.catalog import CatalogStyle, builtin_catalog, default_catalog, drifted
from proxy.sandbox.faults import Faults

SANDBOX_CLIENT_ID = "sandbox-client"
"""The client id the emulator accepts unless told otherwise."""
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 -- a published demo credential, not a secret
"""The client secret the emulator accepts unless told otherwise."""

logger = structlog.get_logger(__name__)

_JSON = "application/json"
# W3C trace context headers, recorded so tests can see what a client passed on.
_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"
# The upstream labels its catalog with this exact content type.
_CATALOG_CONTENT_TYPE = "application/json;charset=UTF-8"
# The upstream answers these statuses with an empty body.
_EMPTY_BODY_STATUSES = frozenset({401, 403, 404, 429})
# How often a hanging request looks whether its client left; short so hangs end promptly.
_HANG_POLL_SECONDS = 0.05
# Real tokens are RS256 JWTs of about 3000 characters; these sizes give the same length.
_TOKEN_CLAIM_BYTES = 1380
_TOKEN_SIGNATURE_BYTES = 256
_BASE_PREFIXES = ("", "/management-api")
# Streamed fault bodies are generated and written this many bytes at a time.
_STREAM_CHUNK = 64 * 1024
# What oversized bodies are made of: the start of a products array, or of a token object.
_PRODUCTS_FILLER = (
    b"[",
    b'{"id":1001,"product":"1NCE IoT FlexSIM - Standard","material":"1NCE FlexSIM"},',
)
_TOKEN_FILLER = (b'{"access_token":"', b"abcdefghijklmnopqrstuvwxyz012345")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_JWT_HEADER = _b64url(_compact_json({"alg": "RS256", "typ": "JWT"}))


@dataclass
class SandboxState:
    """Everything one emulator knows: credentials, catalog, tokens, faults and counters."""

    faults: Faults = field(default_factory=Faults)
    """The faults being injected; tests may change them at any time."""
    catalog: list[dict[str, Any]] = field(default_factory=default_catalog)
    """The products served; tests may replace it to see a refresh."""
    catalog_style: CatalogStyle = "irregular"
    """The built-in catalog `reset` goes back to (`create_sandbox_app` starts with it too)."""
    client_id: str = SANDBOX_CLIENT_ID
    """The client id the token endpoint accepts."""
    client_secret: str = field(default=SANDBOX_CLIENT_SECRET, repr=False)
    """The client secret the token endpoint accepts."""
    token_ttl: int = 3600
    """Seconds an issued token stays valid."""
    token_requests: int = 0
    """Requests received on the token endpoint, failed ones included."""
    tokens_issued: int = 0
    """Tokens handed out."""
    products_requests: int = 0
    """Requests received on the products endpoint, failed ones included."""
    products_authorizations: list[str] = field(default_factory=list, repr=False)
    """The Authorization header of every products request, in order ("" when absent)."""
    token_traceparents: list[str] = field(default_factory=list)
    """The traceparent header of every token request, in order ("" when absent)."""
    token_tracestates: list[str] = field(default_factory=list)
    """The tracestate header of every token request, in order ("" when absent)."""
    products_traceparents: list[str] = field(default_factory=list)
    """The traceparent header of every products request, in order ("" when absent)."""
    products_tracestates: list[str] = field(default_factory=list)
    """The tracestate header of every products request, in order ("" when absent)."""
    streamed_bytes: int = 0
    """Bytes of streamed fault bodies (oversized bodies, gzip bombs) written, as sent."""
    streams_cut: int = 0
    """Streamed fault bodies whose client went away before their end."""
    tokens: dict[str, float] = field(default_factory=dict, repr=False)
    """Every valid token issued, with its expiry on the `time.monotonic` clock."""
    drift_steps: int = 0
    """Drift steps applied to the catalog so far; `drift` applies the next one."""

    def drift(self) -> str:
        """Apply the next step of the drift cycle to the catalog; return a line saying what.

        The catalog is replaced, not changed in place, so a list handed in stays as it was.
        See `proxy.sandbox.catalog.drifted` for the cycle.
        """
        self.catalog, description = drifted(self.catalog, self.drift_steps + 1)
        self.drift_steps += 1
        return description

    def issue_token(self) -> str:
        """Issue a new token, valid for `token_ttl` seconds alongside those issued before."""
        now = time.monotonic()
        # Forget expired tokens so a long-running emulator does not grow without bound.
        self.tokens = {token: expiry for token, expiry in self.tokens.items() if expiry > now}
        token = _new_token(self.token_ttl)
        self.tokens[token] = now + self.token_ttl
        self.tokens_issued += 1
        return token

    def token_is_valid(self, token: str) -> bool:
        """Whether a token was issued, has not expired and has not been revoked."""
        expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def revoke_tokens(self) -> int:
        """Invalidate every token issued so far (not later ones); return how many there were."""
        revoked = len(self.tokens)
        self.tokens.clear()
        return revoked

    def reset_counters(self) -> None:
        """Set every request counter back to zero."""
        self.token_requests = 0
        self.tokens_issued = 0
        self.products_requests = 0
        self.products_authorizations.clear()
        self.token_traceparents.clear()
        self.token_tracestates.clear()
        self.products_traceparents.clear()
        self.products_tracestates.clear()
        self.streamed_bytes = 0
        self.streams_cut = 0

    def reset(self) -> None:
        """Back to a new emulator: faults off, counters zero, no tokens, built-in catalog.

        Drift starts its cycle again from the first step.
        """
        self.faults.reset()
        self.reset_counters()
        self.tokens.clear()
        self.catalog = builtin_catalog(self.catalog_style)
        self.drift_steps = 0

    def stats(self) -> dict[str, Any]:
        """Return the counters, tokens and faults as a JSON-ready mapping."""
        now = time.monotonic()
        return {
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "tokens_valid": sum(1 for expiry in self.tokens.values() if expiry > now),
            "products_requests": self.products_requests,
            "products_authorizations": list(self.products_authorizations),
            "token_traceparents": list(self.token_traceparents),
            "token_tracestates": list(self.token_tracestates),
            "products_traceparents": list(self.products_traceparents),
            "products_tracestates": list(self.products_tracestates),
            "streamed_bytes": self.streamed_bytes,
            "streams_cut": self.streams_cut,
            "catalog_size": len(self.catalog),
            "catalog_style": self.catalog_style,
            "drift_steps": self.drift_steps,
            "token_ttl": self.token_ttl,
            "faults": self.faults.as_dict(),
        }


def drift_is_valid(seconds: float) -> bool:
    """Whether ``seconds`` may be the time between drift steps: finite and above zero."""
    return math.isfinite(seconds) and seconds > 0


SANDBOX_STATE = web.AppKey("sandbox_state", SandboxState)
"""Where an emulator app keeps its `SandboxState`."""
# Set when the app shuts down, so hanging requests end instead of holding up the shutdown.
_HANG_RELEASE = web.AppKey("sandbox_hang_release", asyncio.Event)
# Seconds between drift steps, when the app drifts.
_DRIFT_SECONDS = web.AppKey("sandbox_drift_seconds", float)


def create_sandbox_app(
    *,
    state: SandboxState | None = None,
    client_id: str = SANDBOX_CLIENT_ID,
    client_secret: str = SANDBOX_CLIENT_SECRET,
    token_ttl: int = 3600,
    catalog: list[dict[str, Any]] | None = None,
    catalog_style: CatalogStyle = "irregular",
    drift: float | None = None,
) -> web.Application:
    """Build the 1NCE emulator as an aiohttp application.

    The upstream routes are served both at the root and under `/management-api`, so either
    `http://host:port` or `http://host:port/management-api` works as the base URL. The control
    API lives under `/_sandbox`. Without ``catalog``, the built-in catalog in ``catalog_style``
    is served (`proxy.sandbox.catalog.CatalogStyle`). When `state` is given, the other arguments
    but `drift` are ignored. With `drift` (seconds, > 0), the catalog takes the next step of
    `SandboxState.drift` every `drift` seconds while the app runs, each logged as
    ``sandbox_drift``.
    """
    if drift is not None and not drift_is_valid(drift):
        raise ValueError("drift must be a number of seconds > 0")
    if state is None:
        if token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        state = SandboxState(
            catalog=builtin_catalog(catalog_style) if catalog is None else catalog,
            catalog_style=catalog_style,
            client_id=client_id,
            client_secret=client_secret,
            token_ttl=token_ttl,
        )
    app = web.Application()
    app[SANDBOX_STATE] = state
    app[_HANG_RELEASE] = asyncio.Event()
    app.on_shutdown.append(_release_hangs)
    if drift is not None:
        app[_DRIFT_SECONDS] = drift
        app.cleanup_ctx.append(_drifting)
    for prefix in _BASE_PREFIXES:
        app.router.add_post(f"{prefix}/oauth/token", _token)
        app.router.add_get(f"{prefix}/v1/products", _products)
    app.router.add_get("/_sandbox/stats", _control_stats)
    app.router.add_post("/_sandbox/faults", _control_faults)
    app.router.add_post("/_sandbox/revoke", _control_revoke)
    app.router.add_post("/_sandbox/reset", _control_reset)
    app.router.add_put("/_sandbox/catalog", _control_catalog)
    return app


async def _release_hangs(app: web.Application) -> None:
    app[_HANG_RELEASE].set()


async def _drifting(app: web.Application) -> AsyncIterator[None]:
    """Drift the catalog in the background while the app runs."""
    task = asyncio.get_running_loop().create_task(
        _drift_forever(app[SANDBOX_STATE], app[_DRIFT_SECONDS])
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _drift_forever(state: SandboxState, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        change = state.drift()
        logger.info("sandbox_drift", step=state.drift_steps, change=change)


def _new_token(ttl: int) -> str:
    """Make a random, JWT-shaped token of about 3000 characters."""
    issued = int(time.time())
    claims = {
        "iss": "https://sandbox.1nce.invalid",
        "sub": "user",
        "scope": "all",
        "iat": issued,
        "exp": issued + ttl,
        "jti": secrets.token_hex(16),
        "ctx": secrets.token_urlsafe(_TOKEN_CLAIM_BYTES),
    }
    signature = _b64url(secrets.token_bytes(_TOKEN_SIGNATURE_BYTES))
    return f"{_JWT_HEADER}.{_b64url(_compact_json(claims))}.{signature}"


def _json_response(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=_compact_json(body), content_type=_JSON)


def _upstream_error(status: int, error_code: str, message: str) -> web.Response:
    """Answer with an error in the upstream's format."""
    body = {"statusCode": status, "errorCode": error_code, "message": message}
    return _json_response(status, body)


def _error_code(status: int) -> str:
    """Name a status the upstream's way, e.g. 502 -> BadGateway."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "Error"
    return "".join(word.capitalize() for word in phrase.replace("-", " ").split())


def _failure(status: int, faults: Faults) -> web.Response:
    """Answer as an upstream failing with this status does."""
    if status == HTTPStatus.TOO_MANY_REQUESTS and faults.retry_after_header is not None:
        return _rate_limited(None, faults)
    if status in _EMPTY_BODY_STATUSES:
        return web.Response(status=status)
    return _upstream_error(status, _error_code(status), "Sandbox fault injected.")


def _rate_limited(seconds: int | None, faults: Faults) -> web.Response:
    """Answer 429, with `Retry-After` as the faults say (or none at all)."""
    value = faults.retry_after_header
    if value is None and seconds is not None:
        value = str(seconds)
    headers = {} if value is None else {hdrs.RETRY_AFTER: value}
    return web.Response(status=HTTPStatus.TOO_MANY_REQUESTS, headers=headers)


def _redirect(location: str) -> web.Response:
    """Answer 302 to `location`, as a misrouted or hijacked upstream would."""
    return web.Response(status=HTTPStatus.FOUND, headers={hdrs.LOCATION: location})


async def _token(request: web.Request) -> web.StreamResponse:
    """`POST /oauth/token`: a new bearer token for valid client credentials."""
    state = request.app[SANDBOX_STATE]
    state.token_requests += 1
    state.token_traceparents.append(request.headers.get(_TRACEPARENT, ""))
    state.token_tracestates.append(request.headers.get(_TRACESTATE, ""))
    faults = state.faults
    failure = await _token_failure(request, faults)
    if failure is not None:
        return failure
    problem = await _token_request_problem(request, state)
    if problem is not None:
        return _upstream_error(HTTPStatus.BAD_REQUEST, *problem)
    if faults.token_oversized_body is not None:
        return await _stream(request, _JSON, _filler(faults.token_oversized_body, *_TOKEN_FILLER))
    body = {
        "status_code": 200,
        "access_token": state.issue_token(),
        "token_type": "bearer",
        "expires_in": state.token_ttl,
        "userId": "user",
        "scope": "all",
    }
    return _json_response(HTTPStatus.OK, body)


async def _token_failure(request: web.Request, faults: Faults) -> web.Response | None:
    """Apply the token faults that act before the credentials check; return their answer."""
    if faults.token_latency > 0:
        await asyncio.sleep(faults.token_latency)
    if faults.token_hang:
        await _hang(request)
        return _stopping()
    if faults.token_rate_limit_retry_after is not None:
        return _rate_limited(faults.token_rate_limit_retry_after, faults)
    if faults.token_redirect_to is not None:
        return _redirect(faults.token_redirect_to)
    status = faults.token_status
    if status == HTTPStatus.BAD_REQUEST:
        return _upstream_error(status, "CognitoAuthenticationError", "User does not exist.")
    if status is not None:
        return _failure(status, faults)
    return None


async def _token_request_problem(
    request: web.Request, state: SandboxState
) -> tuple[str, str] | None:
    """Return the error code and message a token request earns, or None when it is valid."""
    if request.content_type != _JSON:
        return "UnsupportedContentTypeError", "Content-Type must be application/json."
    try:
        body = json.loads(await request.read())
    # ValueError also covers bodies that are not UTF-8; RecursionError, nesting too deep to parse.
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
        return "BodyValidationError", 'The body must be {"grant_type":"client_credentials"}.'
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return "AuthValidationError", "The Authorization header is missing."
    credentials = _basic_credentials(header)
    if credentials is None:
        return "AuthValidationError", "The Authorization header must use HTTP Basic."
    client_id, client_secret = credentials
    # Both comparisons always run, so timing does not tell which part was wrong.
    id_ok = secrets.compare_digest(client_id.encode(), state.client_id.encode())
    secret_ok = secrets.compare_digest(client_secret.encode(), state.client_secret.encode())
    if not (id_ok and secret_ok):
        return "CognitoAuthenticationError", "User does not exist."
    return None


async def _products(request: web.Request) -> web.StreamResponse:
    """`GET /v1/products`: the catalog for a valid bearer token."""
    state = request.app[SANDBOX_STATE]
    state.products_requests += 1
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    state.products_authorizations.append(authorization)
    state.products_traceparents.append(request.headers.get(_TRACEPARENT, ""))
    state.products_tracestates.append(request.headers.get(_TRACESTATE, ""))
    faults = state.faults.for_products_request()
    failure = await _products_failure(request, faults)
    if failure is not None:
        return failure
    token = _bearer_token(authorization)
    if faults.reject_all_tokens or token is None or not state.token_is_valid(token):
        return web.Response(status=HTTPStatus.UNAUTHORIZED)
    if faults.oversized_body is not None:
        return await _stream(
            request, _CATALOG_CONTENT_TYPE, _filler(faults.oversized_body, *_PRODUCTS_FILLER)
        )
    if faults.gzip_bomb is not None:
        return await _stream(
            request, _CATALOG_CONTENT_TYPE, _gzip_bomb(faults.gzip_bomb), content_encoding="gzip"
        )
    return _catalog_response(_catalog_body(state.catalog, faults))


def _catalog_body(catalog: list[dict[str, Any]], faults: Faults) -> bytes:
    """Return the products body to send, spoilt as the faults say."""
    full = _compact_json(catalog)
    if faults.malformed_body:
        # A body cut short, as when a connection drops mid-transfer.
        return full[: max(1, len(full) // 2)]
    if faults.wrong_shape:
        return _compact_json({"products": catalog})
    return full


async def _products_failure(request: web.Request, faults: Faults) -> web.Response | None:
    """Apply the faults that act before the token check; return their answer, if any."""
    if faults.products_latency > 0:
        await asyncio.sleep(faults.products_latency)
    if faults.hang:
        await _hang(request)
        return _stopping()
    if faults.redirect_to is not None:
        return _redirect(faults.redirect_to)
    if faults.rate_limit_retry_after is not None:
        return _rate_limited(faults.rate_limit_retry_after, faults)
    if faults.products_status is not None:
        return _failure(faults.products_status, faults)
    return None


def _stopping() -> web.Response:
    """Answer a request that hung until the app began to shut down."""
    return _upstream_error(
        HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", "The sandbox is stopping."
    )


async def _stream(
    request: web.Request,
    content_type: str,
    chunks: Iterator[bytes],
    *,
    content_encoding: str | None = None,
) -> web.StreamResponse:
    """Send a 200 whose body is written chunk by chunk as generated, never held whole.

    Stops writing as soon as the client goes away.
    """
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: content_type})
    if content_encoding is not None:
        response.headers[hdrs.CONTENT_ENCODING] = content_encoding
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent = False
    try:
        with contextlib.suppress(ConnectionError):
            sent = await _write_all(request, response, chunks)
    finally:
        # Also reached when the server cancels the handler of a client that left.
        if not sent:
            request.app[SANDBOX_STATE].streams_cut += 1
    return response


async def _write_all(
    request: web.Request, response: web.StreamResponse, chunks: Iterator[bytes]
) -> bool:
    """Write every chunk and end the body; False when the client left first."""
    state = request.app[SANDBOX_STATE]
    for chunk in chunks:
        # Writes that fit the socket buffers never yield; let the loop see a client leave.
        await asyncio.sleep(0)
        if not _client_connected(request):
            return False
        await response.write(chunk)
        state.streamed_bytes += len(chunk)
    await response.write_eof()
    return True


def _filler(size: int, opening: bytes, unit: bytes) -> Iterator[bytes]:
    """Yield `size` bytes in chunks: `opening`, then `unit` over and over, cut at `size`."""
    block = unit * max(1, _STREAM_CHUNK // len(unit))
    chunk = opening + block
    left = size
    while left > 0:
        piece = chunk[:left]
        yield piece
        left -= len(piece)
        chunk = block


def _gzip_bomb(size: int) -> Iterator[bytes]:
    """Yield a gzip stream, compressed as it goes, that inflates to `size` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(_STREAM_CHUNK)
    left = size
    while left > 0:
        piece = zeros if left >= _STREAM_CHUNK else zeros[:left]
        left -= len(piece)
        compressed = compressor.compress(piece)
        if compressed:
            yield compressed
    yield compressor.flush()


async def _hang(request: web.Request) -> None:
    """Wait until the client goes away or the app shuts down."""
    release = request.app[_HANG_RELEASE]
    while not release.is_set() and _client_connected(request):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_HANG_POLL_SECONDS):
                await release.wait()


def _client_connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    """Return the client id and secret of an HTTP Basic header, or None if it is not one."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon else None


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _catalog_response(body: bytes) -> web.Response:
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: _CATALOG_CONTENT_TYPE})


async def _control_stats(request: web.Request) -> web.Response:
    """`GET /_sandbox/stats`: the counters, tokens and faults."""
    return _json_response(HTTPStatus.OK, request.app[SANDBOX_STATE].stats())


async def _control_faults(request: web.Request) -> web.Response:
    """`POST /_sandbox/faults`: replace the faults with those of a JSON object."""
    faults = request.app[SANDBOX_STATE].faults
    try:
        faults.load(await _json_body(request))
    except (TypeError, ValueError) as error:
        return _json_response(HTTPStatus.BAD_REQUEST, {"error": str(error)})
    return _json_response(HTTPStatus.OK, faults.as_dict())


async def _control_revoke(request: web.Request) -> web.Response:
    """`POST /_sandbox/revoke`: invalidate every token issued so far."""
    revoked = request.app[SANDBOX_STATE].revoke_tokens()
    return _json_response(HTTPStatus.OK, {"revoked": revoked})


async def _control_reset(request: web.Request) -> web.Response:
    """`POST /_sandbox/reset`: back to a new emulator."""
    state = request.app[SANDBOX_STATE]
    state.reset()
    return _json_response(HTTPStatus.OK, state.stats())


async def _control_catalog(request: web.Request) -> web.Response:
    """`PUT /_sandbox/catalog`: replace the catalog with a JSON array of products."""
    try:
        catalog = await _json_body(request)
    except ValueError as error:
        return _json_response(HTTPStatus.BAD_REQUEST, {"error": str(error)})
    if not isinstance(catalog, list) or not all(isinstance(item, dict) for item in catalog):
        return _json_response(
            HTTPStatus.BAD_REQUEST, {"error": "the catalog must be an array of objects"}
        )
    request.app[SANDBOX_STATE].catalog = catalog
    return _json_response(HTTPStatus.OK, {"catalog_size": len(catalog)})


async def _json_body(request: web.Request) -> object:
    """Parse the request body as JSON; ValueError when it is not JSON."""
    try:
        return json.loads(await request.read())
    except ValueError as error:
        raise ValueError("the body must be JSON") from error
