"""API key entries: ``name:key`` or a bare key, named by a fingerprint that reveals nothing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from proxy.observability.context import ANONYMOUS, UNAUTHENTICATED

# Names become metric label values and log fields: short, plain, and never a reserved word.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = frozenset({ANONYMOUS, UNAUTHENTICATED})
FINGERPRINT_PREFIX = "key-"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One accepted key and the caller it names."""

    name: str
    secret: SecretStr


class KeyEntryError(ValueError):
    """An entry that cannot be a key; the message names its position, never its text."""


def fingerprint(secret: str) -> str:
    """Name a bare key by a short digest, so logs and metrics can tell keys apart."""
    return FINGERPRINT_PREFIX + hashlib.sha256(secret.encode()).hexdigest()[:8]


def parse_entry(entry: str, position: int) -> ApiKey:
    """Read ``name:key`` or a bare key (trimmed of ASCII space and tab).

    An entry is named when the text before its first ``:`` is a valid name; otherwise the
    whole entry is a bare key, named by its :func:`fingerprint`.
    """
    text = entry.strip(" \t")
    if not text:
        raise KeyEntryError(f"entry {position} is blank")
    name, colon, secret = text.partition(":")
    name = name.strip(" \t")
    if colon and NAME.match(name):
        secret = secret.strip(" \t")
        if not secret:
            raise KeyEntryError(f"entry {position} ({name}) has an empty key")
        if name in RESERVED:
            raise KeyEntryError(f"entry {position}: {name!r} is reserved, pick another name")
        return ApiKey(name, SecretStr(secret))
    return ApiKey(fingerprint(text), SecretStr(text))


def parse_entries(entries: Iterable[str]) -> tuple[ApiKey, ...]:
    """Read every entry; raise :class:`KeyEntryError` for the first bad one."""
    keys = tuple(parse_entry(entry, position) for position, entry in enumerate(entries, 1))
    secrets = [key.secret.get_secret_value() for key in keys]
    if len(set(secrets)) != len(secrets):
        # One key under two names could not say which caller sent it.
        raise KeyEntryError("the same key is listed twice")
    return keys


def split_key_file(text: str) -> list[str]:
    """Split a key file into entries: a line each, or comma-separated; skip blanks and ``#``."""
    entries: list[str] = []
    for line in text.splitlines():
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        entries.extend(stripped.split(","))
    return entries


def read_key_file(data: bytes) -> tuple[ApiKey, ...]:
    """Parse a key file's bytes; :class:`KeyEntryError` (never quoting a key) when unusable."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyEntryError("the file is not UTF-8 text") from None
    return parse_entries(split_key_file(text))
