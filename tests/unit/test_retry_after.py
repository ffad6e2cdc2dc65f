"""``parse_retry_after``: the delay a 429's ``Retry-After`` asks for, within the cap."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from proxy.upstream.windows import DEFAULT_RETRY_AFTER, parse_retry_after

CAP = 300.0


def parse(value: str | None, cap: float = CAP) -> float:
    return parse_retry_after(value, cap=cap)


def test_default_is_thirty_seconds() -> None:
    assert DEFAULT_RETRY_AFTER == 30.0


def test_none_gives_default() -> None:
    assert parse(None) == DEFAULT_RETRY_AFTER


def test_default_is_capped_too() -> None:
    assert parse(None, cap=10.0) == 10.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("300", 300.0)],
)
def test_delta_seconds(value: str, expected: float) -> None:
    result = parse(value)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize("value", ["301", "3600", "999999999", "9" * 400])
def test_huge_delta_is_capped(value: str) -> None:
    # Item 2 of the self-healing issue: 999999999 held a replica off for ~31 years.
    assert parse(value) == CAP


def test_non_ascii_digits_are_garbage() -> None:
    assert parse("\u0663\u0660") == DEFAULT_RETRY_AFTER  # Arabic-Indic "30"


def test_http_date_in_the_future() -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    header = email.utils.format_datetime(when, usegmt=True)

    result = parse(header)

    # HTTP-dates have whole seconds: up to one second is lost, plus test run time.
    assert 87.0 <= result <= 90.0


def test_http_date_with_numeric_zone() -> None:
    when = datetime.now(UTC) + timedelta(minutes=4)
    header = email.utils.format_datetime(when.astimezone(timezone(timedelta(hours=2))))

    assert 237.0 <= parse(header) <= 240.0


def test_far_http_date_is_capped() -> None:
    header = email.utils.formatdate(time.time() + 10 * 365 * 86400, usegmt=True)
    assert parse(header) == CAP


def test_http_date_in_the_past_is_zero() -> None:
    header = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert parse(header) == 0.0


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-5", "1.5", "12abc", "Wed, 99 Foo 2015 07:28:00 GMT", "   ", "Wed, 21 Oct"],
)
def test_garbage_gives_default(value: str) -> None:
    assert parse(value) == DEFAULT_RETRY_AFTER
