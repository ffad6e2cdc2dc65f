"""Helpers of the HTTP layer: caching headers, ETag matching, bearer keys, kept answers.

``cache_headers`` and ``etag_matches`` serve ``GET /v1/products`` (docs/api.md, "Cache headers");
``bearer_matches`` checks API keys and the admin token; ``Answers`` keeps finished answers
per Lookup.
"""

from __future__ import annotations

import functools

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from pydantic import SecretStr

from proxy.cache.entry import CatalogEntry
from proxy.cache.lookup import Lookup, Outcome
from proxy.web.answers import MAX_ANSWERS, Answer, Answers
from proxy.web.auth import bearer_matches
from proxy.web.caching import cache_headers, etag_matches

ENTRY = CatalogEntry.create(b'[{"id": 1}]', "application/json", 1_700_000_000.0)


def lookup(outcome: Outcome, *, age: float, ttl_left: float, collapsed: bool = False) -> Lookup:
    return Lookup(entry=ENTRY, outcome=outcome, age=age, ttl_left=ttl_left, collapsed=collapsed)


def test_hit_headers() -> None:
    headers = cache_headers(lookup(Outcome.HIT, age=88.0, ttl_left=212.0))

    assert headers == {
        "Cache-Status": "1nce-proxy; hit; ttl=212",
        "Age": "88",
        "ETag": ENTRY.etag,
        "Cache-Control": "max-age=212",
    }


def test_hit_with_fractions_rounds_down() -> None:
    headers = cache_headers(lookup(Outcome.HIT, age=87.6, ttl_left=212.4))

    assert headers["Cache-Status"] == "1nce-proxy; hit; ttl=212"
    assert headers["Age"] == "87"
    assert headers["Cache-Control"] == "max-age=212"


def test_miss_headers() -> None:
    headers = cache_headers(lookup(Outcome.MISS, age=0.0, ttl_left=300.0))

    assert headers == {
        "Cache-Status": "1nce-proxy; fwd=miss; stored",
        "Age": "0",
        "ETag": ENTRY.etag,
        "Cache-Control": "max-age=300",
    }


def test_collapsed_miss_headers() -> None:
    headers = cache_headers(lookup(Outcome.MISS, age=0.0, ttl_left=300.0, collapsed=True))
    assert headers["Cache-Status"] == "1nce-proxy; fwd=miss; stored; collapsed"


def test_stale_headers_never_negative_max_age() -> None:
    headers = cache_headers(lookup(Outcome.STALE, age=330.0, ttl_left=-30.0))

    assert headers == {
        "Cache-Status": "1nce-proxy; fwd=stale; ttl=-30",
        "Age": "330",
        "ETag": ENTRY.etag,
        "Cache-Control": "max-age=0",
    }


def test_hit_with_less_than_a_second_left() -> None:
    headers = cache_headers(lookup(Outcome.HIT, age=299.5, ttl_left=0.5))
    assert headers["Cache-Status"] == "1nce-proxy; hit; ttl=0"
    assert headers["Cache-Control"] == "max-age=0"
    assert headers["Age"] == "299"


@pytest.mark.parametrize("outcome", [Outcome.HIT, Outcome.STALE])
def test_collapsed_only_marks_misses(outcome: Outcome) -> None:
    headers = cache_headers(lookup(outcome, age=1.0, ttl_left=-1.0, collapsed=True))
    assert "collapsed" not in headers["Cache-Status"]


@pytest.mark.parametrize(
    ("ttl_left", "max_age"), [(-0.5, "0"), (-1.0, "0"), (-86400.0, "0"), (1.0, "1")]
)
def test_max_age_never_negative(ttl_left: float, max_age: str) -> None:
    outcome = Outcome.HIT if ttl_left > 0 else Outcome.STALE
    headers = cache_headers(lookup(outcome, age=10.0, ttl_left=ttl_left))
    assert headers["Cache-Control"] == f"max-age={max_age}"


ETAG = '"0123456789abcdef"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (ETAG, True),
        (f"W/{ETAG}", True),
        (f'"other", {ETAG}', True),
        (f'"other",{ETAG} , "third"', True),
        (f'W/"other", W/{ETAG}', True),
        ("*", True),
        (" * ", True),
        (None, False),
        ("", False),
        ('"other"', False),
        ('"other", W/"another"', False),
        ("0123456789abcdef", False),  # unquoted is not the same tag
        (ETAG[:-1], False),
        (f"w/{ETAG}", False),  # the weak prefix is case-sensitive
    ],
)
def test_etag_matches(header: str | None, expected: bool) -> None:  # noqa: FBT001
    assert etag_matches(header, ETAG) is expected


def test_etag_matches_real_entry_tag() -> None:
    assert etag_matches(ENTRY.etag, ENTRY.etag)
    other = CatalogEntry.create(b"[]", "application/json", 0.0)
    assert not etag_matches(other.etag, ENTRY.etag)


def test_stale_ttl_counts_whole_seconds_toward_zero() -> None:
    headers = cache_headers(lookup(Outcome.STALE, age=330.2, ttl_left=-30.2))
    assert headers["Cache-Status"] == "1nce-proxy; fwd=stale; ttl=-30"
    assert headers["Age"] == "330"


def test_just_stale_reads_negative() -> None:
    headers = cache_headers(lookup(Outcome.STALE, age=300.1, ttl_left=-0.1))
    assert headers["Cache-Status"] == "1nce-proxy; fwd=stale; ttl=-1"


TOKEN = (SecretStr("tok-1"),)
KEYS = (SecretStr("key-a"), SecretStr("key-b"))


@pytest.mark.parametrize(
    ("header", "secrets", "expected"),
    [
        ("Bearer tok-1", TOKEN, True),
        ("bearer tok-1", TOKEN, True),
        ("BEARER tok-1", TOKEN, True),
        ("Bearer \ttok-1 \t", TOKEN, True),  # HTTP's own whitespace is not part of the token
        ("Bearer key-b", KEYS, True),
        ("Bearer key-c", KEYS, False),
        ("Bearer tok-", TOKEN, False),
        ("Bearer tok-1x", TOKEN, False),
        ("tok-1", TOKEN, False),
        ("Basic tok-1", TOKEN, False),
        ("Bearer\ttok-1", TOKEN, False),
        ("Bearer", TOKEN, False),
        ("Bearer ", TOKEN, False),
        ("", TOKEN, False),
        (None, TOKEN, False),
        ("Bearer tok-1", (), False),
        ("Bearer \udcff", TOKEN, False),  # a non-UTF-8 byte, as aiohttp hands it on
    ],
)
def test_bearer_matches(
    header: str | None,
    secrets: tuple[SecretStr, ...],
    expected: bool,  # noqa: FBT001
) -> None:
    assert bearer_matches(header, secrets) is expected


# Every character str.strip() takes for whitespace beyond ASCII space and tab.
UNICODE_SPACES = (
    "\u00a0",  # no-break space
    "\u2003",  # em space
    "\u202f",  # narrow no-break space
    "\u3000",  # ideographic space
    "\u2028",  # line separator
    "\x85",  # next line
    "\x1f",  # unit separator
    "\x0b",  # vertical tab
)


@pytest.mark.parametrize("space", UNICODE_SPACES)
def test_bearer_keeps_unicode_spaces_as_part_of_the_key(space: str) -> None:
    assert space.strip() == ""  # the test is about exactly these characters
    assert not bearer_matches(f"Bearer tok-1{space}", TOKEN)
    assert not bearer_matches(f"Bearer {space}tok-1", TOKEN)
    assert bearer_matches(f"Bearer {space}", (SecretStr(space),))


@pytest.mark.parametrize("header", ["Bearer ", "Bearer \t ", "Bearer \u00a0", "Bearer \u3000"])
def test_an_empty_secret_never_matches_an_empty_or_blank_key(header: str) -> None:
    assert not bearer_matches(header, (SecretStr(""),))
    assert not bearer_matches(header, (SecretStr(""), *KEYS))


class CountingBuild:
    """A build function for ``Answers.for_request`` that counts its calls."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, _request: web.Request, lookup: Lookup) -> Answer:
        self.calls += 1
        if self.fail:
            raise RuntimeError("cannot build")
        headers = CIMultiDict(cache_headers(lookup))
        return Answer(b"body %d" % self.calls, headers, headers, lookup.entry.etag)


def request(headers: dict[str, str] | None = None) -> web.Request:
    return make_mocked_request("GET", "/v1/products", headers=headers)


def test_answers_are_built_once_per_lookup_and_key() -> None:
    answers = Answers()
    build = CountingBuild()
    first = lookup(Outcome.HIT, age=87.2, ttl_left=212.8)

    bodies = [answers.for_request(request(), first, "plain", build).body for _ in range(3)]
    other_key = answers.for_request(request(), first, "gzip", build)
    again = answers.for_request(request(), first, "plain", build)

    assert bodies == [b"body 1"] * 3
    assert other_key.body == b"body 2"
    assert again.body == b"body 1"
    assert build.calls == 2
    assert again.headers["Age"] == "87"


def test_answers_follow_the_lookup_object_not_its_values() -> None:
    answers = Answers()
    build = CountingBuild()
    first = lookup(Outcome.HIT, age=87.2, ttl_left=212.8)
    equal = lookup(Outcome.HIT, age=87.2, ttl_left=212.8)
    assert equal == first
    assert equal is not first

    answers.for_request(request(), first, "plain", build)
    answers.for_request(request(), equal, "plain", build)
    back = answers.for_request(request(), first, "plain", build)

    # Only one Lookup's answers are kept: a new object drops them, even an equal one.
    assert build.calls == 3
    assert back.body == b"body 3"


def test_a_kept_answer_is_a_304_for_its_etag() -> None:
    answers = Answers()
    build = CountingBuild()
    first = lookup(Outcome.HIT, age=1.0, ttl_left=299.0)
    answers.for_request(request(), first, "plain", build)

    response = answers.for_request(request({"If-None-Match": ENTRY.etag}), first, "plain", build)

    assert response.status == 304
    assert response.body is None
    assert response.headers["ETag"] == ENTRY.etag
    assert build.calls == 1


def test_a_failed_build_keeps_nothing() -> None:
    answers = Answers()
    failing = CountingBuild(fail=True)
    first = lookup(Outcome.STALE, age=310.0, ttl_left=-10.0)

    with pytest.raises(RuntimeError, match="cannot build"):
        answers.for_request(request(), first, "plain", failing)
    working = CountingBuild()
    response = answers.for_request(request(), first, "plain", working)

    assert response.body == b"body 1"
    assert response.headers["Cache-Status"] == "1nce-proxy; fwd=stale; ttl=-10"


def test_answers_kept_per_lookup_are_bounded() -> None:
    answers = Answers()
    build = CountingBuild()
    first = lookup(Outcome.HIT, age=1.0, ttl_left=299.0)
    for key in range(MAX_ANSWERS + 1):
        answers.for_request(request(), first, key, build)
    assert build.calls == MAX_ANSWERS + 1

    answers.for_request(request(), first, 0, build)  # kept
    answers.for_request(request(), first, MAX_ANSWERS, build)  # past the bound: built again

    assert build.calls == MAX_ANSWERS + 2


def test_the_bytes_of_kept_answers_are_counted_and_held_within_the_budget() -> None:
    # Each built body is b"body N": 6 bytes. Room for one answer, not two.
    answers = Answers(max_bytes=10)
    build = CountingBuild()
    first = lookup(Outcome.HIT, age=1.0, ttl_left=299.0)

    answers.for_request(request(), first, "plain", build)
    assert answers.bytes_kept == 6
    # Over the budget: built and served, not kept, so asked again it is built again.
    assert answers.for_request(request(), first, "gzip", build).body == b"body 2"
    assert answers.bytes_kept == 6
    assert answers.for_request(request(), first, "gzip", build).body == b"body 3"
    assert build.calls == 3
    # A new Lookup drops the old one's answers, and their bytes.
    answers.for_request(request(), lookup(Outcome.HIT, age=2.0, ttl_left=298.0), "plain", build)
    assert answers.bytes_kept == 6


def test_api_members_make_room_within_the_bytes_oldest_first() -> None:
    answers = Answers(max_bytes=20)
    built: list[str] = []

    def members(name: str) -> tuple[bytes, str]:
        built.append(name)
        return name.encode() * 8, f'W/"{name}"'

    for name in ("a", "b", "c"):
        answers.api_members(("etag", name, ""), functools.partial(members, name))
    # 8 bytes each: "a" went to make room for "c".
    assert answers.bytes_kept == 16
    answers.api_members(("etag", "b", ""), lambda: members("b"))
    answers.api_members(("etag", "a", ""), lambda: members("a"))
    assert built == ["a", "b", "c", "a"]
    assert answers.bytes_kept == 16


def test_the_gzip_body_counts_and_an_unbounded_memo_keeps_everything() -> None:
    answers = Answers()
    gzipped = answers.gzipped_body(ENTRY)
    assert answers.bytes_kept == len(gzipped)
    assert answers.gzipped_body(ENTRY) is gzipped
    build = CountingBuild()
    first = lookup(Outcome.HIT, age=1.0, ttl_left=299.0)
    for key in range(5):
        answers.for_request(request(), first, key, build)
    assert answers.bytes_kept == len(gzipped) + 5 * 6


def test_a_member_larger_than_the_budget_drops_nothing() -> None:
    answers = Answers(max_bytes=10)
    answers.api_members(("etag", "small", ""), lambda: (b"12345678", 'W/"s"'))
    answers.api_members(("etag", "huge", ""), lambda: (b"x" * 11, 'W/"h"'))
    assert answers.bytes_kept == 8
    # "small" is still kept: asking again does not build it.
    kept = answers.api_members(("etag", "small", ""), lambda: (b"rebuilt", ""))
    assert kept == (b"12345678", 'W/"s"')
