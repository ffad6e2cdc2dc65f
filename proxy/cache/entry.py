"""One cached catalog version: the upstream's bytes plus what is needed to serve them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

_FORMAT = 1


class CorruptEntryError(ValueError):
    """Stored bytes do not decode to an entry (another version wrote them, or they broke)."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """The upstream's body and content type, its strong ETag, and when it was fetched."""

    body: bytes
    content_type: str
    etag: str
    fetched_at: float

    @classmethod
    def create(cls, body: bytes, content_type: str, fetched_at: float) -> CatalogEntry:
        """Build an entry, deriving the ETag from the body so every replica agrees on it."""
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return cls(body=body, content_type=content_type, etag=f'"{digest}"', fetched_at=fetched_at)

    def to_bytes(self) -> bytes:
        """Serialise for a shared store: a JSON header line, then the body as is."""
        header = {"v": _FORMAT, "ct": self.content_type, "etag": self.etag, "at": self.fetched_at}
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> CatalogEntry:
        """Decode what :meth:`to_bytes` wrote."""
        header_line, sep, body = data.partition(b"\n")
        try:
            header = json.loads(header_line) if sep else None
        except (ValueError, RecursionError):
            header = None
        if not isinstance(header, dict) or header.get("v") != _FORMAT:
            raise CorruptEntryError("unknown cache entry format")
        content_type, etag, fetched_at = header.get("ct"), header.get("etag"), header.get("at")
        if not (
            isinstance(content_type, str)
            and isinstance(etag, str)
            and isinstance(fetched_at, (int, float))
        ):
            raise CorruptEntryError("cache entry header is incomplete")
        return cls(body=body, content_type=content_type, etag=etag, fetched_at=float(fetched_at))
