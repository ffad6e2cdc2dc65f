"""KeySpace: every shared key carries the prefix and the account hash, as a cluster hash tag."""

from __future__ import annotations

import re

from proxy.backplane.keys import KeySpace


def _all(keys: KeySpace) -> list[str]:
    return [
        keys.catalog,
        keys.catalog_lock,
        keys.token,
        keys.token_lock,
        keys.admin_refresh,
        keys.rate_window("token"),
        keys.rate_window("products"),
        keys.events,
    ]


def test_catalog_key_has_prefix_and_account() -> None:
    keys = KeySpace(prefix="team-a", account="0123456789abcdef")
    assert keys.catalog == "team-a:{0123456789abcdef}:catalog:v1"


def test_token_key_has_prefix_and_account() -> None:
    keys = KeySpace(prefix="team-a", account="0123456789abcdef")
    assert keys.token == "team-a:{0123456789abcdef}:token:v2"


def test_every_key_of_a_deployment_shares_one_hash_tag() -> None:
    # Redis Cluster hashes only what is inside the first {...}: one slot for all of them.
    tags = {re.search(r"\{([^}]*)\}", key).group(1) for key in _all(KeySpace("p", "abc"))}  # type: ignore[union-attr]
    assert tags == {"abc"}


def test_keys_are_distinct() -> None:
    names = _all(KeySpace(prefix="p", account="a"))
    assert len(set(names)) == len(names)


def test_different_accounts_or_prefixes_never_share_keys() -> None:
    spaces = [
        KeySpace(prefix="p", account="a"),
        KeySpace(prefix="p", account="b"),
        KeySpace(prefix="q", account="a"),
    ]
    names = [name for keys in spaces for name in _all(keys)]
    assert len(set(names)) == len(names)
