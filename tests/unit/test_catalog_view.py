"""The simplified catalog view: product shape, counts, filters and sort orders."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest

from proxy.catalog.categories import Category
from proxy.catalog.query import ProductQuery, SortKey, parse_query
from proxy.catalog.view import CatalogView, ChargeLine, SimplifiedProduct, simplify
from proxy.sandbox import default_catalog
from proxy.upstream.models import Product, parse_catalog

DOCUMENTED_EXAMPLE = json.loads(
    """
    {"id": 1001, "name": "1NCE IoT FlexSIM - Standard", "material": "1NCE FlexSIM",
     "category": "sim", "grade": "industrial", "form_factor": "2ff/3ff/4ff",
     "package_size": 1, "order": {"min": 1, "max": 1000, "max_per_customer": null},
     "contract_months": 120,
     "one_time": [{"name": "provisionCharge", "amount": "10.00", "currency": "EUR"}],
     "recurring": [],
     "one_time_total": {"EUR": "10.00"}, "recurring_total": {}}
    """
)

PRICE_ASCENDING = [
    1104, 1101, 1108, 1106, 1303, 1304, 1001, 1002, 1201, 1203,
    1006, 1005, 1102, 1502, 1105, 1003, 1202, 1103, 1107,
]  # fmt: skip
PRICE_DESCENDING = [
    1107, 1103, 1003, 1202, 1105, 1502, 1102, 1005, 1006, 1001,
    1002, 1201, 1203, 1303, 1304, 1106, 1108, 1101, 1104,
]  # fmt: skip
# No one-time total in EUR: the USD Lifetime Flat and the recurring-only products.
UNPRICED = [1004, 1301, 1302, 1401, 1402, 1403, 1404, 1405, 1406, 1407, 1501]


def build(*items: dict[str, Any]) -> CatalogView:
    return CatalogView.build(parse_catalog(json.dumps(list(items)).encode()))


@pytest.fixture(scope="module")
def sandbox() -> CatalogView:
    return build(*default_catalog())


def ids(products: list[SimplifiedProduct]) -> list[int]:
    return [product.id for product in products]


def select(view: CatalogView, *pairs: tuple[str, str]) -> list[int]:
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return ids(view.select(parse_query(params)))


# Shape of one product.


def test_spec_example_from_the_sandbox(sandbox: CatalogView) -> None:
    assert sandbox.by_id[1001].to_json() == DOCUMENTED_EXAMPLE
    assert list(sandbox.by_id[1001].to_json()) == list(DOCUMENTED_EXAMPLE)
    assert json.loads(json.dumps(sandbox.by_id[1001].to_json())) == DOCUMENTED_EXAMPLE


def test_every_sandbox_product_serializes(sandbox: CatalogView) -> None:
    for product in sandbox.products:
        body = product.to_json()
        assert set(body) == set(DOCUMENTED_EXAMPLE)
        assert body["category"] in {category.value for category in Category}
        json.dumps(body)


def test_irregular_sandbox_products(sandbox: CatalogView) -> None:
    assert sandbox.by_id[1104].recurring == ()
    assert sandbox.by_id[1303].to_json()["recurring"] == [
        {"name": "monthlyCharge", "amount": "7.99", "currency": "EUR"}
    ]
    assert sandbox.by_id[1303].to_json()["recurring_total"] == {"EUR": "7.99"}
    assert sandbox.by_id[1108].to_json()["order"] == {
        "min": 1,
        "max": None,
        "max_per_customer": None,
    }
    assert sandbox.by_id[1004].to_json()["one_time_total"] == {"USD": "14.00"}
    assert sandbox.by_id[1402].to_json()["recurring_total"] == {"EUR": "0.00"}
    assert sandbox.by_id[1005].to_json()["one_time"][0]["amount"] == "12.50"


def test_derived_keys(sandbox: CatalogView) -> None:
    assert sandbox.by_id[1006].price_key == Decimal("10.99")
    assert sandbox.by_id[1004].price_key is None
    assert sandbox.by_id[1401].price_key is None
    assert sandbox.by_id[1001].search_text == "1nce iot flexsim - standard\n1nce flexsim"


def test_to_json_is_a_fresh_copy(sandbox: CatalogView) -> None:
    body = sandbox.by_id[1001].to_json()
    body["one_time_total"]["EUR"] = "0.00"
    body["one_time"].clear()
    assert sandbox.by_id[1001].to_json() == DOCUMENTED_EXAMPLE


def test_simplified_product_is_frozen(sandbox: CatalogView) -> None:
    product = sandbox.by_id[1001]
    with pytest.raises(dataclasses.FrozenInstanceError):
        product.name = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        product.one_time_total["EUR"] = "0.00"  # type: ignore[index]


def test_product_with_only_an_id() -> None:
    product = simplify(Product(id=5))
    assert product.to_json() == {
        "id": 5,
        "name": None,
        "material": None,
        "category": "other",
        "grade": None,
        "form_factor": None,
        "package_size": None,
        "order": {"min": None, "max": None, "max_per_customer": None},
        "contract_months": None,
        "one_time": [],
        "recurring": [],
        "one_time_total": {},
        "recurring_total": {},
    }
    assert product.price_key is None
    assert product.search_text == "\n"


def test_awkward_products_are_all_listed() -> None:
    view = build(
        {"id": 1},
        {"id": 2, "product": None, "material": "SIM Chip Industrial MFF2"},
        {"id": 3, "product": "FlexSIM", "material": None, "one_time_charges": None},
        {
            "id": 4,
            "product": "High Data 50 GB",
            "recurring_charges": {"name": "monthlyCharge", "amount_net": 9.5, "currency": "chf"},
        },
        {
            "id": 5,
            "product": "Mixed",
            "one_time_charges": [
                {"name": "a", "amount_net": 0.1, "currency": "EUR"},
                {"name": "b", "amount_net": 0.2, "currency": "EUR"},
                {"name": "c", "amount_net": None, "currency": "EUR"},
                {"name": "d", "amount_net": "1.25", "currency": "usd "},
                {"name": "e", "amount_net": 3, "currency": None},
                {"amount_net": 2, "currency": "CHF", "tax": {"rate": 0.19}},
                {"name": "f", "amount_net": "1E+999999999", "currency": "EUR"},
            ],
        },
        {
            "id": 6,
            "product": 42,
            "material": ["not", "text"],
            "package_size": "ten",
            "minQuantity": True,
            "min_contract_duration": 1.5,
            "recurring_charges": "monthly",
            "surprise": {"nested": [1, 2, 3]},
        },
    )

    assert ids(list(view.products)) == [1, 2, 3, 4, 5, 6]
    assert ids(view.select(ProductQuery())) == [1, 2, 3, 4, 5, 6]

    assert view.by_id[2].category is Category.SIM
    assert view.by_id[2].form_factor == "mff2"
    assert view.by_id[2].grade == "industrial"
    assert view.by_id[3].one_time == ()
    assert view.by_id[3].form_factor == "2ff/3ff/4ff"
    assert view.by_id[4].category is Category.HIGH_DATA_ADDON
    assert view.by_id[4].recurring == (ChargeLine("monthlyCharge", "9.50", "CHF"),)
    assert view.by_id[4].to_json()["recurring_total"] == {"CHF": "9.50"}

    mixed = view.by_id[5].to_json()
    assert mixed["one_time"] == [
        {"name": "a", "amount": "0.10", "currency": "EUR"},
        {"name": "b", "amount": "0.20", "currency": "EUR"},
        {"name": "c", "amount": None, "currency": "EUR"},
        {"name": "d", "amount": "1.25", "currency": "USD"},
        {"name": "e", "amount": "3.00", "currency": None},
        {"name": None, "amount": "2.00", "currency": "CHF"},
        {"name": "f", "amount": None, "currency": "EUR"},
    ]
    assert mixed["one_time_total"] == {"CHF": "2.00", "EUR": "0.30", "USD": "1.25"}
    assert list(mixed["one_time_total"]) == ["CHF", "EUR", "USD"]
    assert view.by_id[5].price_key == Decimal("0.30")

    odd = view.by_id[6].to_json()
    assert odd["name"] is None
    assert odd["material"] is None
    assert odd["package_size"] is None
    assert odd["order"]["min"] is None
    assert odd["contract_months"] is None
    assert odd["recurring"] == []
    assert odd["category"] == "other"


def test_duplicate_ids_first_wins_all_listed() -> None:
    view = build(
        {"id": 7, "product": "first"},
        {"id": 8, "product": "other"},
        {"id": 7, "product": "second"},
    )
    assert [product.name for product in view.products] == ["first", "other", "second"]
    assert view.by_id[7].name == "first"
    assert 9 not in view.by_id
    assert len(view.by_id) == 2
    assert sum(count for _, count in view.category_counts) == 3
    assert [p.name for p in view.select(ProductQuery(ids=frozenset({7})))] == ["first", "second"]
    descending = view.select(ProductQuery(descending=True))
    assert [p.name for p in descending] == ["other", "first", "second"]


# Category counts.


def test_category_counts_of_the_sandbox(sandbox: CatalogView) -> None:
    assert sandbox.category_counts == (
        (Category.LIFETIME_FLAT, 5),
        (Category.SIM, 9),
        (Category.TOPUP, 3),
        (Category.HIGH_DATA_ADDON, 4),
        (Category.OS_SERVICE, 7),
        (Category.OTHER, 2),
    )
    assert sum(count for _, count in sandbox.category_counts) == len(sandbox.products) == 30


def test_category_counts_include_empty_categories() -> None:
    view = build({"id": 1, "product": "Support"}, {"id": 2, "product": "FlexSIM"})
    assert view.category_counts == (
        (Category.LIFETIME_FLAT, 0),
        (Category.SIM, 1),
        (Category.TOPUP, 0),
        (Category.HIGH_DATA_ADDON, 0),
        (Category.OS_SERVICE, 0),
        (Category.OTHER, 1),
    )


def test_empty_view() -> None:
    view = CatalogView.build(())
    assert view.products == ()
    assert view.select(ProductQuery()) == []
    assert [count for _, count in view.category_counts] == [0] * 6


# Filters on the sandbox catalog.


def test_upstream_order_and_default_select(sandbox: CatalogView) -> None:
    upstream = [item["id"] for item in default_catalog()]
    assert ids(list(sandbox.products)) == upstream
    assert select(sandbox) == sorted(upstream)


def test_filter_by_category(sandbox: CatalogView) -> None:
    assert select(sandbox, ("category", "topup")) == [1201, 1202, 1203]
    assert select(sandbox, ("category", "other")) == [1501, 1502]
    assert select(sandbox, ("category", "lifetime_flat")) == [1002, 1003, 1004, 1005, 1006]


def test_categories_combine_with_or(sandbox: CatalogView) -> None:
    expected = [1201, 1202, 1203, 1501, 1502]
    assert select(sandbox, ("category", "topup"), ("category", "other")) == expected
    assert select(sandbox, ("category", "other"), ("category", "topup")) == expected


def test_filter_by_material(sandbox: CatalogView) -> None:
    assert select(sandbox, ("material", "1nce os")) == list(range(1401, 1408))
    assert select(sandbox, ("material", "SIM Chip Business MFF2")) == [1108]
    # Exact, not a substring.
    assert select(sandbox, ("material", "1NCE Lifetime Flat")) == [1002, 1003, 1005]
    assert select(sandbox, ("material", "Lifetime Flat")) == []


def test_filter_by_q(sandbox: CatalogView) -> None:
    assert select(sandbox, ("q", "MFF2")) == [1106, 1107, 1108]
    assert select(sandbox, ("q", "top-up")) == [1201, 1202, 1203]
    # Matches the material as well as the name.
    assert select(sandbox, ("q", "support plan")) == [1501]
    assert select(sandbox, ("q", "nothing like this")) == []


def test_q_does_not_match_across_name_and_material() -> None:
    view = build({"id": 1, "product": "Alpha", "material": "Beta"})
    assert ids(view.select(ProductQuery(q="alpha"))) == [1]
    assert ids(view.select(ProductQuery(q="alpha beta"))) == []
    assert ids(view.select(ProductQuery(q="alphabeta"))) == []


def test_filter_by_id(sandbox: CatalogView) -> None:
    assert select(sandbox, ("id", "1502"), ("id", "1001"), ("id", "1304")) == [1001, 1304, 1502]
    assert select(sandbox, ("id", "999")) == []


def test_filters_combine_with_and(sandbox: CatalogView) -> None:
    assert select(sandbox, ("category", "sim"), ("q", "business")) == [1104, 1105, 1108]
    combined = select(
        sandbox,
        ("category", "sim"),
        ("material", "SIM Card Business 3in1 Plastic"),
        ("id", "1105"),
        ("id", "1108"),
        ("id", "1401"),
    )
    assert combined == [1105]
    assert select(sandbox, ("category", "topup"), ("id", "1001")) == []
    assert select(sandbox, ("category", "os_service"), ("category", "other"), ("q", "support")) == [
        1501
    ]


def test_material_filter_misses_products_without_material() -> None:
    view = build({"id": 1}, {"id": 2, "material": " Shipping "})
    assert ids(view.select(ProductQuery(material="shipping"))) == [2]


# Sort orders.


def test_sort_by_id(sandbox: CatalogView) -> None:
    upstream = sorted(item["id"] for item in default_catalog())
    assert select(sandbox, ("sort", "id")) == upstream
    assert select(sandbox, ("sort", "-id")) == upstream[::-1]


def test_sort_by_price(sandbox: CatalogView) -> None:
    assert select(sandbox, ("sort", "price")) == PRICE_ASCENDING + UNPRICED
    assert select(sandbox, ("sort", "-price")) == PRICE_DESCENDING + UNPRICED


def test_sort_by_price_within_a_filter(sandbox: CatalogView) -> None:
    assert select(sandbox, ("category", "lifetime_flat"), ("sort", "-price")) == [
        1003,
        1005,
        1006,
        1002,
        1004,
    ]


def test_sort_by_name(sandbox: CatalogView) -> None:
    ascending = sandbox.select(ProductQuery(sort=SortKey.NAME))
    names = [(product.name or "").casefold() for product in ascending]
    assert names == sorted(names)
    assert len(ascending) == 30
    descending = sandbox.select(ProductQuery(sort=SortKey.NAME, descending=True))
    names = [(product.name or "").casefold() for product in descending]
    assert names == sorted(names, reverse=True)


def test_sort_by_name_is_case_insensitive_with_missing_last() -> None:
    view = build(
        {"id": 5, "product": None},
        {"id": 4, "product": "beta"},
        {"id": 3, "product": "Alpha"},
        {"id": 2, "product": "Beta"},
        {"id": 1},
        {"id": 6, "product": "alpha2"},
        {"id": 7, "product": "ÄRGER"},
    )
    ascending = view.select(ProductQuery(sort=SortKey.NAME))
    assert ids(ascending) == [3, 6, 2, 4, 7, 1, 5]
    descending = view.select(ProductQuery(sort=SortKey.NAME, descending=True))
    assert ids(descending) == [7, 2, 4, 6, 3, 1, 5]


def test_sort_by_price_with_missing_last() -> None:
    def priced(product_id: int, amount: object, currency: str = "EUR") -> dict[str, Any]:
        return {
            "id": product_id,
            "one_time_charges": [{"name": "c", "amount_net": amount, "currency": currency}],
        }

    view = build(
        priced(1, 5),
        priced(2, None),
        priced(3, "0.5"),
        priced(4, 1, "USD"),
        priced(5, 5),
        {"id": 6},
        priced(7, 0),
        priced(8, "-1"),
    )
    assert ids(view.select(ProductQuery(sort=SortKey.PRICE))) == [8, 7, 3, 1, 5, 2, 4, 6]
    descending = view.select(ProductQuery(sort=SortKey.PRICE, descending=True))
    assert ids(descending) == [1, 5, 3, 7, 8, 2, 4, 6]


def test_select_returns_a_new_list(sandbox: CatalogView) -> None:
    first = sandbox.select(ProductQuery())
    first.clear()
    assert len(sandbox.select(ProductQuery())) == 30
