"""KeySpace: every shared key carries the prefix and the account hash."""

from __future__ import annotations

from proxy.cache.keys import KeySpace


def test_catalog_key_has_prefix_and_account() -> None:
    keys = KeySpace(prefix="team-a", account="0123456789abcdef")
    assert keys.catalog == "team-a:0123456789abcdef:catalog:v1"


def test_token_key_has_prefix_and_account() -> None:
    keys = KeySpace(prefix="team-a", account="0123456789abcdef")
    assert keys.token == "team-a:0123456789abcdef:token:v2"


def test_catalog_and_token_keys_differ() -> None:
    keys = KeySpace(prefix="p", account="a")
    assert keys.catalog != keys.token


def test_different_accounts_or_prefixes_never_share_keys() -> None:
    spaces = [
        KeySpace(prefix="p", account="a"),
        KeySpace(prefix="p", account="b"),
        KeySpace(prefix="q", account="a"),
    ]
    names = [name for keys in spaces for name in (keys.catalog, keys.token)]
    assert len(set(names)) == 6
