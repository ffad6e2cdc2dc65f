"""Money: exact decimal strings and per-currency sums of charges."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.catalog.money import (
    format_amount,
    normalize_currency,
    sum_by_currency,
    totals_by_currency,
    usable_amount,
)
from proxy.upstream.models import Charge


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10", "10.00"),
        ("12.5", "12.50"),
        ("0.125", "0.125"),
        ("1E+3", "1000.00"),
        ("1e3", "1000.00"),
        ("-1.5", "-1.50"),
        ("-0.125", "-0.125"),
        ("-0", "0.00"),
        ("-0.000", "0.00"),
        ("0E+5", "0.00"),
        ("0", "0.00"),
        ("0.1", "0.10"),
        ("0.01", "0.01"),
        ("0.001", "0.001"),
        ("1.500", "1.50"),
        ("1.2300", "1.23"),
        ("10.99", "10.99"),
        ("2400", "2400.00"),
        ("1.23E-5", "0.0000123"),
        ("5E+2", "500.00"),
        ("-7E+1", "-70.00"),
        ("123456789012345678901234567890.12", "123456789012345678901234567890.12"),
    ],
)
def test_format_amount(value: str, expected: str) -> None:
    assert format_amount(Decimal(value)) == expected


def test_format_amount_never_uses_scientific_notation() -> None:
    for value in ("1E+20", "1E-20", "9.99E+10", "-3E-7"):
        text = format_amount(Decimal(value))
        assert "e" not in text.lower()
        assert Decimal(text) == Decimal(value)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_format_amount_refuses_non_finite(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_amount(Decimal(value))


def test_usable_amount_bounds() -> None:
    assert usable_amount(None) is None
    assert usable_amount(Decimal("NaN")) is None
    assert usable_amount(Decimal("1E+999999999")) is None
    assert usable_amount(Decimal("1E-999999999")) is None
    assert usable_amount(Decimal("1.8E+308")) == Decimal("1.8E+308")
    assert usable_amount(Decimal("5E-324")) == Decimal("5E-324")
    assert usable_amount(Decimal("12.5")) == Decimal("12.5")


@pytest.mark.parametrize(
    ("code", "expected"),
    [("EUR", "EUR"), (" eur ", "EUR"), ("usd", "USD"), ("", None), ("   ", None), (None, None)],
)
def test_normalize_currency(code: str | None, expected: str | None) -> None:
    assert normalize_currency(code) == expected


def test_sum_is_exact() -> None:
    charges = [
        Charge(name="a", amount_net=Decimal("0.1"), currency="EUR"),
        Charge(name="b", amount_net=Decimal("0.2"), currency="EUR"),
    ]
    assert sum_by_currency(charges) == {"EUR": "0.30"}


def test_sum_of_floats_from_json_is_exact() -> None:
    charges = [
        Charge.model_validate({"amount_net": 0.1, "currency": "EUR"}),
        Charge.model_validate({"amount_net": 0.2, "currency": "EUR"}),
    ]
    assert sum_by_currency(charges) == {"EUR": "0.30"}


def test_sum_keeps_more_digits_than_the_default_context() -> None:
    charges = [
        Charge(amount_net=Decimal("12345678901234567890123456789.01"), currency="EUR"),
        Charge(amount_net=Decimal("0.001"), currency="EUR"),
    ]
    assert sum_by_currency(charges) == {"EUR": "12345678901234567890123456789.011"}


def test_sum_per_currency_with_sorted_normalized_keys() -> None:
    charges = [
        Charge(amount_net=Decimal(5), currency="usd"),
        Charge(amount_net=Decimal("1.5"), currency="EUR"),
        Charge(amount_net=Decimal("2.25"), currency=" chf "),
        Charge(amount_net=Decimal("2.5"), currency="eur"),
        Charge(amount_net=Decimal(1), currency="USD"),
    ]
    totals = sum_by_currency(charges)
    assert totals == {"CHF": "2.25", "EUR": "4.00", "USD": "6.00"}
    assert list(totals) == ["CHF", "EUR", "USD"]


def test_sum_skips_charges_without_amount_or_currency() -> None:
    charges = [
        Charge(name="no amount", amount_net=None, currency="EUR"),
        Charge(name="no currency", amount_net=Decimal(3), currency=None),
        Charge(name="blank currency", amount_net=Decimal(3), currency="  "),
        Charge(name="nan", amount_net=Decimal("NaN"), currency="EUR"),
        Charge(name="ok", amount_net=Decimal(7), currency="EUR"),
    ]
    assert sum_by_currency(charges) == {"EUR": "7.00"}


def test_sum_of_nothing_is_empty() -> None:
    assert sum_by_currency([]) == {}
    assert sum_by_currency([Charge(name="free text only")]) == {}


def test_negative_amounts_are_summed() -> None:
    charges = [
        Charge(amount_net=Decimal(10), currency="EUR"),
        Charge(amount_net=Decimal("-2.5"), currency="EUR"),
        Charge(amount_net=Decimal(-1), currency="USD"),
    ]
    assert sum_by_currency(charges) == {"EUR": "7.50", "USD": "-1.00"}


def test_totals_are_decimals() -> None:
    charges = [Charge(amount_net=Decimal("10.99"), currency="EUR")]
    assert totals_by_currency(charges) == {"EUR": Decimal("10.99")}
