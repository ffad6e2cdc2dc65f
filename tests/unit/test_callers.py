"""Named API keys, caller tokens, and the key file: parsing, identifying, rotating."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.callers.keys import KeyEntryError, fingerprint, parse_entries, split_key_file
from proxy.callers.registry import Callers
from proxy.callers.tokens import LIFETIME, PREFIX, CallerTokens
from tests.support.logs import capture


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _callers(*entries: str, clock: Clock | None = None) -> Callers:
    return Callers(parse_entries(entries), tokens=CallerTokens(clock or Clock()))


def test_named_and_bare_entries() -> None:
    keys = parse_entries(["billing:k-1", " portal : k-2 ", "bare-key-3", "k/1:2"])
    assert [(key.name, key.secret.get_secret_value()) for key in keys] == [
        ("billing", "k-1"),
        ("portal", "k-2"),
        (fingerprint("bare-key-3"), "bare-key-3"),
        # Not a name before the colon: the whole entry is a bare key.
        (fingerprint("k/1:2"), "k/1:2"),
    ]
    assert fingerprint("bare-key-3").startswith("key-")
    assert len(fingerprint("bare-key-3")) == 12
    assert "bare-key-3" not in fingerprint("bare-key-3")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["billing:"], "entry 1 (billing) has an empty key"),
        (["a:1", " "], "entry 2 is blank"),
        (["anonymous:k"], "'anonymous' is reserved"),
        (["unauthenticated:k"], "'unauthenticated' is reserved"),
        (["a:same", "b:same"], "the same key is listed twice"),
    ],
)
def test_bad_entries_are_refused_without_quoting_the_key(entries: list[str], message: str) -> None:
    with pytest.raises(KeyEntryError) as caught:
        parse_entries(entries)
    assert message in str(caught.value)
    assert "same" not in str(caught.value).replace("the same key", "")


def test_key_file_lines_commas_comments() -> None:
    text = "# callers\nbilling:k-1\n\n  portal:k-2, portal:k-3\n"
    assert split_key_file(text) == ["billing:k-1", "portal:k-2", " portal:k-3"]


def test_identify_names_the_caller_of_each_key() -> None:
    callers = _callers("billing:k-1", "portal:k-2", "portal:k-3", "bare")
    assert callers.required
    assert callers.identify("Bearer k-1") == "billing"
    assert callers.identify("bearer k-2") == "portal"
    assert callers.identify("Bearer \tk-3 ") == "portal"
    assert callers.identify("Bearer bare") == fingerprint("bare")
    assert callers.names == {"billing", "portal", fingerprint("bare")}
    for refused in (None, "", "Bearer", "Bearer ", "Basic k-1", "Bearer k-1x", "Bearer \u00a0k-1"):
        assert callers.identify(refused) is None, refused


def test_no_keys_require_nothing() -> None:
    callers = _callers()
    assert not callers.required
    assert callers.identify("Bearer anything") is None


def test_a_caller_token_names_its_caller_until_it_expires() -> None:
    clock = Clock()
    callers = _callers("billing:k-1", "portal:k-2", clock=clock)
    billing = callers.keys[0]
    token = callers.tokens.issue("billing", billing)
    assert token.startswith(PREFIX)
    assert "k-1" not in token
    assert callers.identify(f"Bearer {token}") == "billing"
    clock.now += LIFETIME - 1
    assert callers.identify(f"Bearer {token}") == "billing"
    clock.now += 1
    assert callers.identify(f"Bearer {token}") is None


def test_a_forged_or_altered_token_names_nobody() -> None:
    callers = _callers("billing:k-1", "portal:k-2")
    token = callers.tokens.issue("billing", callers.keys[0])
    payload, _, signature = token.rpartition(".")
    # Signed with another caller's key: the names must match the key that signed.
    as_portal = callers.tokens.issue("billing", callers.keys[1])
    assert callers.identify(f"Bearer {as_portal}") is None
    claims_of_portal = callers.tokens.issue("portal", callers.keys[1]).rpartition(".")[0]
    for forged in (
        f"{claims_of_portal}.{signature}",
        f"{payload}.{signature[:-2]}",
        f"{payload}x.{signature}",
        f"{PREFIX}!!!.{signature}",
        PREFIX,
        PREFIX + "a" * 600,
    ):
        assert callers.identify(f"Bearer {forged}") is None, forged


def _other_spellings(encoded: str) -> list[str]:
    """Strings a lenient base64 decoder reads as the same bytes as ``encoded``."""
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(encoded[-1])
    return [
        encoded[:5] + "!" + encoded[5:],  # a character outside the alphabet, skipped
        encoded[:5] + "\n" + encoded[5:],  # white space, skipped
        encoded + "=" * (-len(encoded) % 4 or 4),  # padding, or too much of it
        # The unused low bits of the last character (a 32-byte signature leaves two).
        encoded[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1],
    ]


def test_a_token_has_one_spelling_only() -> None:
    callers = _callers("billing:k-1")
    token = callers.tokens.issue("billing", callers.keys[0])
    payload, _, signature = token.rpartition(".")
    assert callers.identify(f"Bearer {token}") == "billing"
    for other in _other_spellings(signature):
        assert callers.identify(f"Bearer {payload}.{other}") is None, other
    claims = payload.removeprefix(PREFIX)
    for other in _other_spellings(claims):
        assert callers.identify(f"Bearer {PREFIX}{other}.{signature}") is None, other


def test_removing_a_key_revokes_its_tokens_other_replicas_verify_them() -> None:
    clock = Clock()
    before = _callers("portal:old", "portal:new", clock=clock)
    old_token = before.tokens.issue("portal", before.keys[0])
    new_token = before.tokens.issue("portal", before.keys[1])
    # Another replica (another CallerTokens) with the same keys accepts both.
    other = _callers("portal:old", "portal:new", clock=clock)
    assert other.identify(f"Bearer {old_token}") == "portal"
    after = _callers("portal:new", clock=clock)
    assert after.identify(f"Bearer {old_token}") is None
    assert after.identify(f"Bearer {new_token}") == "portal"


def _write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    # A distinct modification time for each version, as a real rewrite would have.
    os.utime(path, ns=(stamp, stamp))


def test_the_key_file_wins_is_reread_on_change_and_a_bad_one_is_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "api-keys"
    _write(path, "billing:k-1\n", 1_000_000_000)
    callers = Callers(parse_entries(["listed:k-9"]), key_file=path, tokens=CallerTokens())
    assert callers.load_file()
    assert callers.identify("Bearer k-9") is None
    assert callers.identify("Bearer k-1") == "billing"
    assert not callers.load_file()  # unchanged

    _write(path, "billing:k-2\nportal:k-3\n", 2_000_000_000)
    assert callers.load_file()
    assert callers.identify("Bearer k-1") is None
    assert callers.identify("Bearer k-2") == "billing"
    assert callers.identify("Bearer k-3") == "portal"

    _write(path, "billing:k-2\nbilling:\n", 3_000_000_000)
    assert not callers.load_file()  # unusable: the keys stay as they were
    assert callers.identify("Bearer k-3") == "portal"

    _write(path, "# nobody\n", 4_000_000_000)
    assert callers.load_file()
    assert callers.required
    assert callers.identify("Bearer k-2") is None
    path.unlink()
    assert not callers.load_file()
    assert callers.required


def test_a_rewrite_that_keeps_size_and_time_is_noticed(tmp_path: Path) -> None:
    # A rotated key of the same length copied with its time kept (cp -p, rsync -t --inplace,
    # tar): size, modification time and inode stay the same; only the content says it changed.
    path = tmp_path / "api-keys"
    _write(path, "billing:key-aaaa\n", 1_000_000_000)
    callers = Callers((), key_file=path, tokens=CallerTokens())
    assert callers.load_file()
    before = path.stat()
    with path.open("r+b") as file:  # in place: the same inode
        file.write(b"billing:key-bbbb\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert callers.load_file()
    assert callers.identify("Bearer key-aaaa") is None  # revoked
    assert callers.identify("Bearer key-bbbb") == "billing"


def test_listed_keys_are_never_in_force_beside_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    path.write_bytes(b"billing:k-1\nbilling:k-1\n")  # unusable: a key listed twice
    callers = Callers(parse_entries(["listed:k-9"]), key_file=path, tokens=CallerTokens())
    assert not callers.load_file()
    assert callers.file_usable is False
    assert callers.required
    # The file wins even while it cannot be used: nobody is let in by the listed keys.
    assert callers.identify("Bearer k-9") is None
    assert callers.identify("Bearer k-1") is None


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (b"billing:k-2\nportal:k-2\n", "the same key is listed twice"),
        (b"billing:\xff\xfe\n", "not UTF-8"),
        (None, "FileNotFoundError"),
    ],
    ids=["duplicate", "not-utf-8", "gone"],
)
def test_an_unusable_file_keeps_the_last_good_keys_and_says_so(
    tmp_path: Path, broken: bytes | None, reason: str
) -> None:
    path = tmp_path / "api-keys"
    _write(path, "billing:k-1\n", 1_000_000_000)
    callers = Callers((), key_file=path, tokens=CallerTokens())
    assert callers.load_file()
    assert callers.file_usable is True
    with capture("debug", "json") as captured:
        if broken is None:
            path.unlink()
        else:
            path.write_bytes(broken)
        assert not callers.load_file()
        assert not callers.load_file()  # said once, not at every read
    assert callers.file_usable is False
    assert callers.identify("Bearer k-1") == "billing"
    unusable = [r for r in captured.records() if r["event"] == "api_keys_file_unusable"]
    assert len(unusable) == 1
    assert reason in unusable[0]["reason"]
    assert unusable[0]["keys_in_force"] == 1
    assert "k-2" not in captured.text()

    _write(path, "billing:k-1\n", 2_000_000_000)
    assert not callers.load_file()  # usable again, the same keys
    assert callers.file_usable is True
