"""HTTP caching headers shared by every cached answer: Cache-Status, Age, ETag, 304s."""

from __future__ import annotations

import hashlib

from proxy.catalog.service import Lookup, Outcome

CACHE_NAME = "1nce-proxy"


def cache_headers(lookup: Lookup, etag: str | None = None) -> dict[str, str]:
    """Build ``Cache-Status`` (RFC 9211), ``Age``, ``ETag`` and ``Cache-Control`` for a lookup.

    ``etag`` overrides the entry's own (for representations derived from it).
    """
    # Whole seconds toward zero (30.2 s past freshness reads ttl=-30), but a stale entry always
    # reads negative, so ttl=0 never claims freshness it lacks.
    ttl = int(lookup.ttl_left)
    if lookup.outcome is Outcome.HIT:
        status = f"{CACHE_NAME}; hit; ttl={ttl}"
    elif lookup.outcome is Outcome.STALE:
        ttl = min(ttl, -1)
        status = f"{CACHE_NAME}; fwd=stale; ttl={ttl}"
    else:
        status = f"{CACHE_NAME}; fwd=miss; stored"
        if lookup.collapsed:
            status += "; collapsed"
    return {
        "Cache-Status": status,
        "Age": str(int(lookup.age)),
        "ETag": etag or lookup.entry.etag,
        "Cache-Control": f"max-age={max(ttl, 0)}",
    }


def derived_etag(entry_etag: str, *parts: str) -> str:
    """Derive a weak ETag for a representation built from an entry (same on every replica).

    Weak, because such bodies also carry the catalog's age, which changes while the
    representation stays semantically the same.
    """
    digest = hashlib.blake2b("\0".join((entry_etag, *parts)).encode(), digest_size=12)
    return f'W/"{digest.hexdigest()}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110)."""
    if not if_none_match:
        return False
    own = etag.removeprefix("W/")
    candidates = (tag.strip() for tag in if_none_match.split(","))
    return any(tag == "*" or tag.removeprefix("W/") == own for tag in candidates)
