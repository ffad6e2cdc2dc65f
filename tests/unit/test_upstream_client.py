"""``_retry_after``: the delay a 429's ``Retry-After`` asks for."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from proxy.upstream.client import DEFAULT_RETRY_AFTER, _retry_after


def test_default_is_thirty_seconds() -> None:
    assert DEFAULT_RETRY_AFTER == 30.0


def test_none_gives_default() -> None:
    assert _retry_after(None) == DEFAULT_RETRY_AFTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("3600", 3600.0)],
)
def test_delta_seconds(value: str, expected: float) -> None:
    result = _retry_after(value)
    assert result == expected
    assert isinstance(result, float)


def test_http_date_in_the_future() -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    header = email.utils.format_datetime(when, usegmt=True)

    result = _retry_after(header)

    # HTTP-dates have whole seconds: up to one second is lost, plus test run time.
    assert 87.0 <= result <= 90.0


def test_http_date_with_numeric_zone() -> None:
    when = datetime.now(UTC) + timedelta(minutes=10)
    header = email.utils.format_datetime(when.astimezone(timezone(timedelta(hours=2))))

    assert 597.0 <= _retry_after(header) <= 600.0


def test_http_date_in_the_past_is_zero() -> None:
    header = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert _retry_after(header) == 0.0


@pytest.mark.parametrize(
    "value", ["", "soon", "-5", "1.5", "12abc", "Wed, 99 Foo 2015 07:28:00 GMT", "   "]
)
def test_garbage_gives_default(value: str) -> None:
    assert _retry_after(value) == DEFAULT_RETRY_AFTER
