"""Freshness: arithmetic on an entry's age at the boundaries docs/reliability.md describes."""

from __future__ import annotations

from proxy.cache.entry import CatalogEntry
from proxy.cache.freshness import Freshness

POLICY = Freshness(ttl=300, stale_ttl=600)
ENTRY = CatalogEntry.create(b"[]", "application/json", fetched_at=1000.0)


def test_age_is_seconds_since_fetch() -> None:
    assert POLICY.age(ENTRY, 1000.0) == 0.0
    assert POLICY.age(ENTRY, 1012.5) == 12.5


def test_future_fetched_at_gives_age_zero() -> None:
    assert POLICY.age(ENTRY, 900.0) == 0.0
    assert POLICY.ttl_left(ENTRY, 900.0) == 300.0
    assert POLICY.is_fresh(ENTRY, 900.0)


def test_ttl_left_goes_negative_once_stale() -> None:
    assert POLICY.ttl_left(ENTRY, 1000.0) == 300.0
    assert POLICY.ttl_left(ENTRY, 1088.0) == 212.0
    assert POLICY.ttl_left(ENTRY, 1300.0) == 0.0
    assert POLICY.ttl_left(ENTRY, 1330.0) == -30.0


def test_fresh_until_exactly_ttl() -> None:
    assert POLICY.is_fresh(ENTRY, 1000.0)
    assert POLICY.is_fresh(ENTRY, 1299.999)
    assert not POLICY.is_fresh(ENTRY, 1300.0)
    assert not POLICY.is_fresh(ENTRY, 1300.001)


def test_usable_until_ttl_plus_stale_ttl() -> None:
    assert POLICY.is_usable(ENTRY, 1000.0)
    assert POLICY.is_usable(ENTRY, 1300.0)  # stale but usable
    assert POLICY.is_usable(ENTRY, 1899.999)
    assert not POLICY.is_usable(ENTRY, 1900.0)
    assert not POLICY.is_usable(ENTRY, 5000.0)


def test_zero_stale_ttl_means_usable_only_while_fresh() -> None:
    policy = Freshness(ttl=10, stale_ttl=0)
    assert policy.is_usable(ENTRY, 1009.9)
    assert not policy.is_usable(ENTRY, 1010.0)


def test_retention_is_ttl_plus_stale_ttl() -> None:
    assert POLICY.retention == 900.0
    assert Freshness(ttl=300, stale_ttl=86400).retention == 86700.0
