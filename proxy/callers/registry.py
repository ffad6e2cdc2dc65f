"""The keys in force, and which caller an ``Authorization`` header names."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from proxy.callers.keys import ApiKey, KeyEntryError, read_key_file
from proxy.callers.tokens import CallerTokens
from proxy.cancellation import cancel_and_wait

logger = structlog.get_logger(__name__)
_BEARER = "bearer"


def bearer_of(authorization: str | None) -> str | None:
    """Return the ``<x>`` of ``Authorization: Bearer <x>``; None when absent, empty or not Bearer.

    Only ASCII space and tab around ``<x>`` are dropped (HTTP's own whitespace):
    str.strip() would also drop U+00A0 and friends, turning "Bearer \u00a0" into an empty
    key that an empty secret would match.
    """
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip(" \t")
    if scheme.lower() != _BEARER or not given:
        return None
    return given


def as_bytes(header_value: str) -> bytes:
    """Encode a header value back to the bytes that were sent, for a constant-time compare.

    aiohttp decodes header bytes with surrogateescape; encoding them back the same way makes
    a non-UTF-8 header simply a value that does not match (never an encoding error).
    """
    return header_value.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class _KeySet:
    """An immutable snapshot of the keys, swapped whole when the key file changes."""

    keys: tuple[ApiKey, ...]
    # (key bytes, caller name) pairs, encoded once for the constant-time comparison.
    encoded: tuple[tuple[bytes, str], ...]
    required: bool


def _key_set(keys: tuple[ApiKey, ...], *, required: bool) -> _KeySet:
    encoded = tuple((key.secret.get_secret_value().encode(), key.name) for key in keys)
    return _KeySet(keys, encoded, required)


class Callers:
    """Names the caller of each request from its bearer: an API key or a caller token.

    With no keys (and no key file) every request is ``anonymous`` and nothing is required.
    A key file, when set, wins over the listed keys: they are never in force. It is re-read
    when its content changes (a rewrite that keeps size and modification time included);
    while one is set keys are always required, so an emptied file refuses every caller
    rather than opening the API. A file that disappears or cannot be parsed leaves the last
    keys read from it in force (a Secret being rewritten must not lock every caller out), and
    :attr:`file_usable` says so until it is usable again.
    """

    def __init__(
        self, keys: tuple[ApiKey, ...], *, key_file: Path | None = None, tokens: CallerTokens
    ) -> None:
        """Start with ``keys``, or with ``key_file`` nothing until :meth:`load_file` reads it."""
        self._file = key_file
        self._seen: bytes | None = None
        self._usable: bool | None = None
        if key_file is not None:
            keys = ()
        self._set = _key_set(keys, required=bool(keys) or key_file is not None)
        self._tokens = tokens
        self._watcher: asyncio.Task[None] | None = None

    @property
    def required(self) -> bool:
        """Whether protected routes need a key (or a caller token)."""
        return self._set.required

    @property
    def file_usable(self) -> bool | None:
        """Whether the key file was usable at its last read (None: no file, or not read yet)."""
        return self._usable

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        """The keys in force now."""
        return self._set.keys

    @property
    def names(self) -> frozenset[str]:
        """The names of the keys in force."""
        return frozenset(name for _, name in self._set.encoded)

    @property
    def tokens(self) -> CallerTokens:
        """Issues and checks caller tokens for the keys in force."""
        return self._tokens

    def identify(self, authorization: str | None) -> str | None:
        """Name the caller of ``Authorization: Bearer <key or caller token>`` (None: nobody).

        Only ASCII space and tab around the bearer are ignored, and an empty one never
        matches. Every key is compared in constant time, whatever matched earlier, so the
        time taken says nothing about which key (or how much of one) was right.
        """
        given = bearer_of(authorization)
        if given is None:
            return None
        if self._tokens.looks_like_token(given):
            return self._tokens.verify(given, self._set.keys)
        candidate = as_bytes(given)
        found: str | None = None
        for secret, name in self._set.encoded:
            if hmac.compare_digest(candidate, secret) and found is None:
                found = name
        return found

    def load_file(self) -> bool:
        """Read the key file; True when its keys are new (a change of its content).

        The file is read whole each time (a few lines): its digest, not its size or time,
        says whether it changed.
        """
        if self._file is None:
            return False
        try:
            data = self._file.read_bytes()
            seen = hashlib.sha256(data).digest()
            if seen == self._seen and self._usable:
                return False
            keys = read_key_file(data)
        except (OSError, KeyEntryError) as exc:
            # Never the file's text: it holds the keys.
            reason = str(exc) if isinstance(exc, KeyEntryError) else type(exc).__name__
            if self._usable is not False:
                logger.error(  # noqa: TRY400 - a traceback could quote the file's keys
                    "api_keys_file_unusable",
                    path=str(self._file),
                    reason=reason,
                    keys_in_force=len(self._set.keys),
                )
            self._usable = False
            return False
        self._usable = True
        if seen == self._seen:
            logger.info("api_keys_file_usable_again", path=str(self._file))
            return False
        self._seen = seen
        before = self.names
        self._set = _key_set(keys, required=True)
        logger.info(
            "api_keys_loaded",
            path=str(self._file),
            keys=len(keys),
            callers=sorted(self.names),
            added=sorted(self.names - before),
            removed=sorted(before - self.names),
        )
        if not keys:
            logger.warning("api_keys_file_empty", path=str(self._file))
        return True

    def start(self, interval: float) -> None:
        """Read the key file now and then every ``interval`` seconds (no file: nothing)."""
        if self._file is None or self._watcher is not None:
            return
        self.load_file()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(interval))

    async def close(self) -> None:
        """Stop watching the key file."""
        watcher, self._watcher = self._watcher, None
        await cancel_and_wait(watcher)

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            # A stat() and, on a change, a small read: cheap enough for the loop, but run
            # in a thread all the same, so a hung network file system cannot stall serving.
            await asyncio.to_thread(self.load_file)


CALLERS = web.AppKey("callers", Callers)
"""Where an application keeps who its callers are."""
