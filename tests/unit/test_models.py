"""parse_catalog: lenient about the upstream's quirks, strict about what makes a catalog."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from proxy.sandbox import default_catalog
from proxy.upstream.models import Charge, InvalidCatalogError, Product, parse_catalog


def product(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1001,
        "product": "1NCE IoT FlexSIM - Standard",
        "material": "1NCE FlexSIM",
        "package_size": 1,
        "minQuantity": 1,
        "maxQuantity": 1000,
        "maxQuantityPerCustomer": None,
        "min_contract_duration": 120,
        "one_time_charges": [{"name": "provisionCharge", "amount_net": 10, "currency": "EUR"}],
        "recurring_charges": [],
    }
    base.update(fields)
    return base


def charges(items: tuple[Charge, ...]) -> list[tuple[str | None, Decimal | None, str | None]]:
    return [(item.name, item.amount_net, item.currency) for item in items]


def parse_one(**fields: Any) -> Product:
    products = parse_catalog(json.dumps([product(**fields)]).encode())
    assert len(products) == 1
    return products[0]


def test_sandbox_like_product_parses() -> None:
    parsed = parse_one()

    assert parsed.id == 1001
    assert parsed.product == "1NCE IoT FlexSIM - Standard"
    assert parsed.material == "1NCE FlexSIM"
    assert parsed.package_size == 1
    assert parsed.min_quantity == 1
    assert parsed.max_quantity == 1000
    assert parsed.max_quantity_per_customer is None
    assert parsed.min_contract_duration == 120
    assert charges(parsed.one_time_charges) == [("provisionCharge", Decimal(10), "EUR")]
    assert parsed.recurring_charges == ()


def test_camel_case_quantities() -> None:
    parsed = parse_one(minQuantity=2, maxQuantity=50, maxQuantityPerCustomer=500)
    assert (parsed.min_quantity, parsed.max_quantity, parsed.max_quantity_per_customer) == (
        2,
        50,
        500,
    )


def test_whole_sandbox_catalog_parses_in_order() -> None:
    catalog = default_catalog()

    products = parse_catalog(json.dumps(catalog).encode())

    assert isinstance(products, tuple)
    assert [p.id for p in products] == [item["id"] for item in catalog]
    assert len(products) >= 20


def test_recurring_charges_null_is_empty() -> None:
    assert parse_one(recurring_charges=None).recurring_charges == ()


def test_recurring_charges_single_object_is_one_charge() -> None:
    parsed = parse_one(
        recurring_charges={"name": "monthlyCharge", "amount_net": 7.99, "currency": "EUR"}
    )
    assert charges(parsed.recurring_charges) == [("monthlyCharge", Decimal("7.99"), "EUR")]


def test_charge_list_keeps_only_objects() -> None:
    parsed = parse_one(
        one_time_charges=[
            "junk",
            {"name": "a", "amount_net": 1, "currency": "EUR"},
            None,
            42,
            ["nested"],
            {"name": "b", "amount_net": 2, "currency": "USD"},
        ]
    )
    assert [charge.name for charge in parsed.one_time_charges] == ["a", "b"]
    assert [charge.currency for charge in parsed.one_time_charges] == ["EUR", "USD"]


@pytest.mark.parametrize("value", ["a string", 17, True])
def test_charges_of_another_type_are_empty(value: object) -> None:
    assert parse_one(recurring_charges=value).recurring_charges == ()


def test_missing_charges_are_empty() -> None:
    parsed = parse_catalog(b'[{"id": 5}]')[0]
    assert parsed.one_time_charges == ()
    assert parsed.recurring_charges == ()


def test_unknown_fields_ignored() -> None:
    parsed = parse_one(
        vendor_note="new field",
        nested={"deep": [1, 2]},
        one_time_charges=[{"name": "x", "amount_net": 1, "currency": "EUR", "tax": 0.19}],
    )
    assert parsed.id == 1001
    assert charges(parsed.one_time_charges) == [("x", Decimal(1), "EUR")]
    assert not hasattr(parsed, "vendor_note")


def test_missing_optional_fields_are_none() -> None:
    parsed = parse_catalog(b'[{"id": 7}]')[0]

    assert parsed.id == 7
    assert parsed.product is None
    assert parsed.material is None
    assert parsed.package_size is None
    assert parsed.min_quantity is None
    assert parsed.max_quantity is None
    assert parsed.max_quantity_per_customer is None
    assert parsed.min_contract_duration is None


def test_wrongly_typed_optional_fields_are_none() -> None:
    parsed = parse_one(
        product=12,
        material=["x"],
        package_size="ten",
        minQuantity=True,
        maxQuantity=1.5,
        min_contract_duration={"months": 12},
    )
    assert parsed.product is None
    assert parsed.material is None
    assert parsed.package_size is None
    assert parsed.min_quantity is None
    assert parsed.max_quantity is None
    assert parsed.min_contract_duration is None


def test_charge_missing_fields_are_none() -> None:
    parsed = parse_one(one_time_charges=[{}])
    assert charges(parsed.one_time_charges) == [(None, None, None)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"12.5", Decimal("12.5")),
        (b"0.1", Decimal("0.1")),
        (b"10", Decimal(10)),
        (b"10.99", Decimal("10.99")),
        (b"7.99", Decimal("7.99")),
        (b"0", Decimal(0)),
        (b'"3.30"', Decimal("3.30")),
    ],
)
def test_amounts_are_exact_decimals(raw: bytes, expected: Decimal) -> None:
    body = b'[{"id": 1, "one_time_charges": [{"amount_net": %s}]}]' % raw
    amount = parse_catalog(body)[0].one_time_charges[0].amount_net

    assert isinstance(amount, Decimal)
    assert amount == expected
    assert str(amount) == str(expected)


def test_sum_of_decimal_amounts_is_exact() -> None:
    body = b'[{"id": 1, "one_time_charges": [{"amount_net": 0.1}, {"amount_net": 0.2}]}]'
    charges = parse_catalog(body)[0].one_time_charges
    assert sum(charge.amount_net or Decimal(0) for charge in charges) == Decimal("0.3")


@pytest.mark.parametrize("raw", [b'"abc"', b"true", b"null", b"[1]", b'{"v": 1}'])
def test_unusable_amount_is_none(raw: bytes) -> None:
    body = b'[{"id": 1, "one_time_charges": [{"name": "c", "amount_net": %s}]}]' % raw
    charge = parse_catalog(body)[0].one_time_charges[0]
    assert charge.name == "c"
    assert charge.amount_net is None


@pytest.mark.parametrize("raw", [b'"NaN"', b'"Infinity"', b'"-Infinity"'])
def test_non_finite_amount_is_none_not_a_refusal(raw: bytes) -> None:
    """A junk amount in one charge must not make the whole catalog unusable.

    The module promises that only a body that is not a non-empty array of objects with
    integer ids is refused; ``"abc"`` already becomes ``None``, ``"NaN"`` must too.
    """
    body = (
        b'[{"id": 1, "one_time_charges": [{"name": "c", "amount_net": %s}]},'
        b' {"id": 2, "one_time_charges": [{"name": "d", "amount_net": 5}]}]' % raw
    )
    products = parse_catalog(body)

    assert [p.id for p in products] == [1, 2]
    assert products[0].one_time_charges[0].amount_net is None
    assert products[1].one_time_charges[0].amount_net == Decimal(5)


@pytest.mark.parametrize("bad_id", ["1001", True, False, 1001.0, None, [1]])
def test_non_integer_ids_are_refused(bad_id: object) -> None:
    with pytest.raises(InvalidCatalogError, match="id"):
        parse_catalog(json.dumps([product(id=bad_id)]).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"<html>502 Bad Gateway</html>",
        b'[{"id": 1}',  # truncated
        b'{"id": 1}',
        b'{"products": [{"id": 1}]}',
        b"null",
        b'"text"',
        b"[1, 2, 3]",
        b'[{"id": 1}, "junk"]',
        b"[]",
        b'[{"product": "no id"}]',
        b'[{"id": 1}, {"product": "second has no id"}]',
    ],
)
def test_refusals(body: bytes) -> None:
    with pytest.raises(InvalidCatalogError):
        parse_catalog(body)


def test_empty_array_refusal_says_empty() -> None:
    with pytest.raises(InvalidCatalogError, match="empty"):
        parse_catalog(b"[]")


def test_refusal_names_where() -> None:
    with pytest.raises(InvalidCatalogError) as info:
        parse_catalog(b'[{"id": 1}, {"product": "x"}]')
    assert str(info.value).startswith("1.id:")


def test_invalid_catalog_is_value_error() -> None:
    assert issubclass(InvalidCatalogError, ValueError)


def test_decimal_amount_survives_a_model_round_trip() -> None:
    charge = Charge(name="provisionCharge", amount_net=Decimal("10.35"), currency="EUR")
    assert charge.amount_net == Decimal("10.35")
    assert Charge.model_validate(charge.model_dump()).amount_net == Decimal("10.35")
