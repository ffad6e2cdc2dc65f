"""Catalog versions as recorded, listed, streamed and posted to webhooks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proxy.catalog.diff import Summary


def timestamp(seconds: float) -> str:
    """Format wall-clock ``seconds`` as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One catalog version: its number, ETag, when first stored, product count, and summary.

    ``summary`` compares it with the version numbered one before it in the same epoch (for
    version 1 of an epoch: every product added).
    """

    version: int
    etag: str
    stored_at: float
    products: int
    summary: Summary

    def to_json(self) -> dict[str, Any]:
        """Return the record as ``GET /api/v1/catalog/versions`` lists it."""
        return {
            "version": self.version,
            "etag": self.etag,
            "stored_at": timestamp(self.stored_at),
            "products": self.products,
            "summary": self.summary.to_json(),
        }

    def encode(self) -> bytes:
        """Serialise for the shared store."""
        fields = {
            "version": self.version,
            "etag": self.etag,
            "at": self.stored_at,
            "products": self.products,
            "summary": self.summary.to_json(),
        }
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> VersionRecord:
        """Read what :meth:`encode` wrote; ``ValueError`` for anything else."""
        try:
            fields = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ValueError("a version record is JSON") from exc
        if not isinstance(fields, dict):
            raise ValueError("a version record is an object")  # noqa: TRY004 - one error for bad data
        version, etag = fields.get("version"), fields.get("etag")
        stored_at, products = fields.get("at"), fields.get("products")
        if not (
            type(version) is int
            and version > 0
            and isinstance(etag, str)
            and isinstance(stored_at, int | float)
            and type(products) is int
        ):
            raise ValueError("a version record is incomplete")
        return cls(
            version=version,
            etag=etag,
            stored_at=float(stored_at),
            products=products,
            summary=Summary.from_json(fields.get("summary")),
        )


@dataclass(frozen=True, slots=True)
class VersionEvent:
    """A version announced to event streams and webhooks, with its epoch."""

    epoch: str
    record: VersionRecord

    def to_json(self) -> dict[str, Any]:
        """Return the event's data: epoch, version, ETag, stored_at, products and summary."""
        return {"epoch": self.epoch, **self.record.to_json()}
