"""The diff of two catalog versions: products added, removed and changed, field by field."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from structlog.testing import capture_logs

from proxy.catalog.diff import (
    CatalogDiff,
    FieldChange,
    ProductChange,
    Summary,
    _changes,
    diff_views,
)
from proxy.catalog.view import CatalogView, ChargeLine
from proxy.sandbox import default_catalog
from proxy.upstream.models import parse_catalog


def build(*items: dict[str, Any]) -> CatalogView:
    return CatalogView.build(parse_catalog(json.dumps(list(items)).encode()))


def charge(amount: object, currency: str = "EUR", name: str = "provisionCharge") -> dict[str, Any]:
    return {"name": name, "amount_net": amount, "currency": currency}


def product(product_id: int, **fields: Any) -> dict[str, Any]:
    """An upstream product like the sandbox's FlexSIM 1001, with ``fields`` replaced."""
    item: dict[str, Any] = {
        "id": product_id,
        "product": "1NCE IoT FlexSIM - Standard",
        "material": "1NCE FlexSIM",
        "package_size": 1,
        "minQuantity": 1,
        "maxQuantity": 1000,
        "maxQuantityPerCustomer": None,
        "min_contract_duration": 120,
        "one_time_charges": [charge(10)],
        "recurring_charges": [],
    }
    item.update(fields)
    return item


def changes_of(before: CatalogView | None, after: CatalogView) -> list[dict[str, Any]]:
    return diff_views(before, after).to_json()["changed"]  # type: ignore[no-any-return]


def line(amount: str | None, currency: str | None = "EUR", name: str = "provisionCharge") -> Any:
    return {"name": name, "amount": amount, "currency": currency}


# Changed products.


def test_price_and_quantity_change_exactly() -> None:
    before = build(product(1), product(2))
    after = build(product(1, one_time_charges=[charge(12.5)], maxQuantity=500), product(2))

    assert changes_of(before, after) == [
        {
            "id": 1,
            "changes": [
                {"field": "one_time.0.amount", "before": "10.00", "after": "12.50"},
                {"field": "one_time_total.EUR", "before": "10.00", "after": "12.50"},
                {"field": "order.max", "before": 1000, "after": 500},
            ],
        }
    ]


def test_dataclasses_of_a_change() -> None:
    diff = diff_views(build(product(1)), build(product(1, minQuantity=5)))

    assert diff == CatalogDiff(
        added=(),
        removed=(),
        changed=(ProductChange(id=1, changes=(FieldChange("order.min", 1, 5),)),),
    )
    assert diff.summary == Summary(added=0, removed=0, changed=1)


def test_a_value_becoming_null_is_one_entry() -> None:
    before = build(product(1))
    after = build(product(1, maxQuantity=None, one_time_charges=[charge("not a number")]))

    assert changes_of(before, after) == [
        {
            "id": 1,
            "changes": [
                {"field": "one_time.0.amount", "before": "10.00", "after": None},
                {"field": "one_time_total.EUR", "before": "10.00", "after": None},
                {"field": "order.max", "before": 1000, "after": None},
            ],
        }
    ]


def test_object_to_null_and_back_is_one_entry() -> None:
    # The generic walk, on shapes a product's JSON never takes.
    walk = list(_changes((), {"a": {"x": 1, "y": [1]}, "b": 1}, {"a": None, "b": 1}))
    assert walk == [(("a",), {"x": 1, "y": [1]}, None)]
    walk = list(_changes((), {"a": []}, {"a": {"0": 1}}))
    assert walk == [(("a",), [], {"0": 1})]
    # JSON tells 1 from true and from 1.0, even though Python's == does not.
    assert list(_changes((), [1, 1], [True, 1.0])) == [(("0",), 1, True), (("1",), 1, 1.0)]


def test_renamed_product_also_changes_what_derives_from_the_name() -> None:
    before = build(product(1))
    after = build(product(1, product="1NCE Top-up - 500 MB + 250 SMS", material="1NCE Top-up"))

    assert changes_of(before, after) == [
        {
            "id": 1,
            "changes": [
                {"field": "category", "before": "sim", "after": "topup"},
                {"field": "form_factor", "before": "2ff/3ff/4ff", "after": None},
                {"field": "grade", "before": "industrial", "after": None},
                {"field": "material", "before": "1NCE FlexSIM", "after": "1NCE Top-up"},
                {
                    "field": "name",
                    "before": "1NCE IoT FlexSIM - Standard",
                    "after": "1NCE Top-up - 500 MB + 250 SMS",
                },
            ],
        }
    ]


# Lists and totals growing and shrinking.


def test_a_charge_line_in_a_new_currency_appears_as_one_entry_each() -> None:
    before = build(product(1))
    after = build(product(1, one_time_charges=[charge(10), charge(5, "usd", "shippingCharge")]))

    assert changes_of(before, after) == [
        {
            "id": 1,
            "changes": [
                {
                    "field": "one_time.1",
                    "before": None,
                    "after": line("5.00", "USD", "shippingCharge"),
                },
                {"field": "one_time_total.USD", "before": None, "after": "5.00"},
            ],
        }
    ]


def test_a_charge_line_and_its_currency_disappear_as_one_entry_each() -> None:
    before = build(product(1, recurring_charges=[charge(2.99, name="m"), charge(5, "USD", "m")]))
    after = build(product(1, recurring_charges=[charge(2.99, name="m")]))

    assert changes_of(before, after) == [
        {
            "id": 1,
            "changes": [
                {"field": "recurring.1", "before": line("5.00", "USD", "m"), "after": None},
                {"field": "recurring_total.USD", "before": "5.00", "after": None},
            ],
        }
    ]


def test_a_list_emptied_and_a_list_filled() -> None:
    before = build(product(1, recurring_charges=[charge(1, name="m")]))
    after = build(product(1, one_time_charges=[charge(10), charge(2)], recurring_charges=None))

    assert changes_of(before, after) == [
        {
            "id": 1,
            "changes": [
                {"field": "one_time.1", "before": None, "after": line("2.00")},
                {"field": "one_time_total.EUR", "before": "10.00", "after": "12.00"},
                {"field": "recurring.0", "before": line("1.00", name="m"), "after": None},
                {"field": "recurring_total.EUR", "before": "1.00", "after": None},
            ],
        }
    ]


def test_list_indexes_sort_as_numbers() -> None:
    before = build(product(1, one_time_charges=[charge(1)] * 12))
    after = build(product(1, one_time_charges=[charge(2)] * 12))

    fields = [change["field"] for change in changes_of(before, after)[0]["changes"]]
    assert fields == [f"one_time.{index}.amount" for index in range(12)] + ["one_time_total.EUR"]


def test_growth_past_nine_lines_lists_ten_after_nine() -> None:
    before = build(product(1, one_time_charges=[charge(1)] * 9))
    after = build(product(1, one_time_charges=[charge(1)] * 11))

    assert changes_of(before, after)[0]["changes"] == [
        {"field": "one_time.9", "before": None, "after": line("1.00")},
        {"field": "one_time.10", "before": None, "after": line("1.00")},
        {"field": "one_time_total.EUR", "before": "9.00", "after": "11.00"},
    ]


# Money compares as exact decimals.


def test_money_written_differently_upstream_is_no_change() -> None:
    before = build(product(1, one_time_charges=[charge(1.5)], recurring_charges=[charge("2")]))
    after = build(product(1, one_time_charges=[charge("1.500")], recurring_charges=[charge(2.0)]))

    diff = diff_views(before, after)
    assert diff.changed == ()
    assert diff.summary == Summary(added=0, removed=0, changed=0)


def test_decimal_equal_amounts_in_other_spellings_are_no_change() -> None:
    # Products built elsewhere than `simplify` may carry non-canonical amount strings.
    canonical = build(product(1, one_time_charges=[charge(1.5)]))
    original = canonical.by_id[1]
    respelled = dataclasses.replace(
        original,
        one_time=(ChargeLine("provisionCharge", "1.5", "EUR"),),
        one_time_total={"EUR": "1.5000"},
    )
    other = CatalogView(
        products=(respelled,), by_id={1: respelled}, category_counts=canonical.category_counts
    )

    assert respelled != original
    assert diff_views(canonical, other).changed == ()
    assert diff_views(other, canonical).changed == ()


def test_money_changes_keep_the_exact_strings() -> None:
    before = build(product(1, one_time_charges=[charge("0.1")]))
    after = build(product(1, one_time_charges=[charge("0.10000000000000000000000000001")]))

    assert changes_of(before, after)[0]["changes"] == [
        {
            "field": "one_time.0.amount",
            "before": "0.10",
            "after": "0.10000000000000000000000000001",
        },
        {
            "field": "one_time_total.EUR",
            "before": "0.10",
            "after": "0.10000000000000000000000000001",
        },
    ]


def test_only_money_compares_as_decimals() -> None:
    before = build(product(1, product="1.5", material="1.5"))
    after = build(product(1, product="1.50", material="1.5"))

    assert changes_of(before, after)[0]["changes"] == [
        {"field": "name", "before": "1.5", "after": "1.50"},
    ]


# Added and removed products.


def test_a_new_product_is_added() -> None:
    before = build(product(1))
    after = build(product(1), product(2, maxQuantity=7))

    diff = diff_views(before, after)
    assert diff.added == (after.by_id[2],)
    assert diff.removed == ()
    assert diff.changed == ()
    assert diff.to_json()["added"] == [after.by_id[2].to_json()]
    assert diff.to_json()["added"][0]["order"]["max"] == 7


def test_a_removed_product() -> None:
    before = build(product(1), product(2), product(3))
    after = build(product(2))

    diff = diff_views(before, after)
    assert diff.added == ()
    assert diff.removed == (before.by_id[1], before.by_id[3])
    assert diff.summary == Summary(added=0, removed=2, changed=0)


def test_everything_sorts_by_id_whatever_the_upstream_order() -> None:
    before = build(product(9), product(5), product(7), product(3))
    after = build(
        product(8), product(7, maxQuantity=1), product(6), product(5, maxQuantity=1), product(4)
    )

    diff = diff_views(before, after)
    assert [item.id for item in diff.added] == [4, 6, 8]
    assert [item.id for item in diff.removed] == [3, 9]
    assert [item.id for item in diff.changed] == [5, 7]


def test_no_earlier_version_adds_every_product() -> None:
    after = build(product(3), product(1), product(2))

    diff = diff_views(None, after)
    assert diff.added == (after.by_id[1], after.by_id[2], after.by_id[3])
    assert diff.removed == ()
    assert diff.changed == ()
    assert diff.summary == Summary(added=3, removed=0, changed=0)


# Identical catalogs and determinism.


def test_identical_catalogs_have_no_diff() -> None:
    before, after = build(*default_catalog()), build(*default_catalog())

    diff = diff_views(before, after)
    assert diff == CatalogDiff(added=(), removed=(), changed=())
    assert diff.summary == Summary(added=0, removed=0, changed=0)
    assert diff.to_json() == {
        "added": [],
        "removed": [],
        "changed": [],
        "summary": {"added": 0, "removed": 0, "changed": 0},
    }
    assert diff_views(before, before) == diff


def test_same_input_same_output_in_any_upstream_order() -> None:
    catalog = default_catalog()
    edited = copy.deepcopy(catalog)
    edited[0]["maxQuantity"] = 3
    edited[5]["one_time_charges"].append(charge(1, "CHF"))
    del edited[7]
    edited.append(product(1))

    first = diff_views(build(*catalog), build(*edited))
    again = diff_views(build(*reversed(catalog)), build(*reversed(edited)))
    assert first == again
    assert json.dumps(first.to_json()) == json.dumps(again.to_json())
    assert first.summary == Summary(added=1, removed=1, changed=2)


# Repeated ids.


def test_duplicate_ids_first_wins_and_warns() -> None:
    before = build(product(1), product(2))
    after = build(product(2), product(1), product(1, maxQuantity=5), product(2, maxQuantity=9))

    with capture_logs() as logs:
        diff = diff_views(before, after)

    assert diff == CatalogDiff(added=(), removed=(), changed=())
    assert logs == [
        {"event": "catalog_duplicate_ids", "log_level": "warning", "side": "after", "ids": [1, 2],
         "count": 2},
    ]  # fmt: skip


def test_duplicates_on_both_sides_warn_once_each() -> None:
    repeated = [product(index) for index in range(12, 0, -1)]
    before = build(*repeated, *repeated)
    after = build(product(1, maxQuantity=5), product(1))

    with capture_logs() as logs:
        diff = diff_views(before, after)

    assert diff.summary == Summary(added=0, removed=11, changed=1)
    assert diff.changed[0].changes == (FieldChange("order.max", 1000, 5),)
    assert logs == [
        {"event": "catalog_duplicate_ids", "log_level": "warning", "side": "before",
         "ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "count": 12},
        {"event": "catalog_duplicate_ids", "log_level": "warning", "side": "after",
         "ids": [1], "count": 1},
    ]  # fmt: skip


def test_duplicates_warn_with_no_earlier_version_too() -> None:
    with capture_logs() as logs:
        diff = diff_views(None, build(product(1), product(1, maxQuantity=2)))

    assert diff.added[0].order_max == 1000
    assert logs == [
        {"event": "catalog_duplicate_ids", "log_level": "warning", "side": "after", "ids": [1],
         "count": 1},
    ]  # fmt: skip


def test_no_warning_without_duplicates() -> None:
    with capture_logs() as logs:
        diff_views(build(product(1)), build(product(1), product(2)))

    assert logs == []


# JSON shapes.


def test_to_json_shapes() -> None:
    before = build(product(1), product(2))
    after = build(product(2, minQuantity=2), product(3))

    body = diff_views(before, after).to_json()
    assert body == {
        "added": [after.by_id[3].to_json()],
        "removed": [before.by_id[1].to_json()],
        "changed": [
            {"id": 2, "changes": [{"field": "order.min", "before": 1, "after": 2}]},
        ],
        "summary": {"added": 1, "removed": 1, "changed": 1},
    }
    assert list(body) == ["added", "removed", "changed", "summary"]
    assert list(body["changed"][0]) == ["id", "changes"]
    assert list(body["changed"][0]["changes"][0]) == ["field", "before", "after"]
    assert json.loads(json.dumps(body)) == body


def test_to_json_is_fresh_on_every_call() -> None:
    before = build(product(1))
    after = build(product(1, one_time_charges=[charge(10), charge(1)]))
    diff = diff_views(before, after)

    body = diff.to_json()
    body["changed"][0]["changes"][0]["after"]["amount"] = "999.00"

    assert diff.changed[0].changes[0] == FieldChange("one_time.1", None, line("1.00"))
    assert diff.to_json()["changed"][0]["changes"][0]["after"] == line("1.00")
