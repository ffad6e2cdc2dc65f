"""Exact money: decimal amounts as strings, and per-currency totals of charges."""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from decimal import Decimal
from typing import cast

from proxy.upstream.models import Charge

# Amounts always show at least cents, even whole ones ("10.00").
_MIN_DECIMALS = 2
# Wide enough for every float the upstream can send (down to 5E-324, up to 1.8E+308); an amount
# written as a string like "1E+999999999" would otherwise expand into gigabytes of digits.
_MAX_PLACES = 400


def _exact_context() -> decimal.Context:
    """Return a context wide enough that adding finite amounts never rounds."""
    # The default context keeps 28 significant digits and would round large sums silently.
    return decimal.Context(
        prec=decimal.MAX_PREC,
        Emax=decimal.MAX_EMAX,
        Emin=decimal.MIN_EMIN,
        traps=[decimal.InvalidOperation],
    )


def usable_amount(value: Decimal | None) -> Decimal | None:
    """Return ``value`` if it is a price this service can show exactly, else ``None``.

    A usable amount is finite and has at most 400 digits before and after the decimal point;
    anything else is treated like a missing amount (listed as ``null``, never summed).
    """
    if value is None or not value.is_finite():
        return None
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -_MAX_PLACES:
        return None
    if value.adjusted() >= _MAX_PLACES:
        return None
    return value


def format_amount(value: Decimal) -> str:
    """Return ``value`` as a plain decimal string with at least two decimals.

    The value is kept exactly: ``10`` is ``"10.00"``, ``12.5`` is ``"12.50"``, ``0.125`` stays
    ``"0.125"`` and ``1E+3`` is ``"1000.00"``. Trailing zeros beyond the second decimal are
    dropped (``"1.500"`` is ``"1.50"``), the sign of a negative amount is kept, negative zero is
    ``"0.00"``, and scientific notation never appears. Raises ``ValueError`` for NaN or infinity.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value}")
    if value.is_zero():
        # Zero has many spellings (-0, 0E+5, 0.000); all of them are no money.
        return "0.00"
    sign, digit_tuple, raw_exponent = value.as_tuple()
    # Only NaN and infinity have a letter for an exponent, and they are refused above.
    exponent = cast("int", raw_exponent)
    digits = "".join(str(digit) for digit in digit_tuple)
    # Zeros past the cents carry no information and vary with how the amount was written.
    while exponent < -_MIN_DECIMALS and len(digits) > 1 and digits.endswith("0"):
        digits = digits[:-1]
        exponent += 1
    if exponent >= 0:
        whole, fraction = digits + "0" * exponent, ""
    else:
        places = -exponent
        digits = digits.rjust(places + 1, "0")
        whole, fraction = digits[:-places], digits[-places:]
    whole = whole.lstrip("0") or "0"
    fraction = fraction.ljust(_MIN_DECIMALS, "0")
    return f"{'-' if sign == 1 else ''}{whole}.{fraction}"


def normalize_currency(code: str | None) -> str | None:
    """Return the currency code upper-cased and stripped, or ``None`` when there is none."""
    if code is None:
        return None
    cleaned = code.strip().upper()
    return cleaned or None


def totals_by_currency(charges: Iterable[Charge]) -> dict[str, Decimal]:
    """Return the exact sum of ``amount_net`` per normalized currency, keys sorted.

    Charges without a usable amount (see `usable_amount`) or without a currency are left out.
    """
    totals: dict[str, Decimal] = {}
    with decimal.localcontext(_exact_context()):
        for charge in charges:
            amount = usable_amount(charge.amount_net)
            currency = normalize_currency(charge.currency)
            if amount is None or currency is None:
                continue
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return {currency: totals[currency] for currency in sorted(totals)}


def sum_by_currency(charges: Iterable[Charge]) -> dict[str, str]:
    """Return the exact sum of ``amount_net`` per currency, formatted by `format_amount`.

    Currency codes are upper-cased and stripped, keys are sorted, and charges without a usable
    amount or a currency are left out.
    """
    return {
        currency: format_amount(total) for currency, total in totals_by_currency(charges).items()
    }
