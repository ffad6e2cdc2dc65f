"""The emulator's default product catalog, in the upstream's JSON format, and its drift."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Literal, get_args

CatalogStyle = Literal["irregular", "strict"]
"""Which built-in catalog the emulator serves.

``irregular`` (the default) has the odd shapes real bodies have; ``strict`` is the same products
made valid against 1NCE's published ``Product`` schema, for clients generated from it.
"""
CATALOG_STYLES: tuple[CatalogStyle, ...] = get_args(CatalogStyle)
"""Every `CatalogStyle`, default first."""

DRIFT_CYCLE = 4
"""Drift steps in one cycle: a price, an order limit, a product added, the same removed."""
DRIFT_PRICE_PRODUCT = 1001
"""The product whose first one-time charge drift raises, once a cycle."""
DRIFT_LIMIT_PRODUCT = 1201
"""The product whose ``maxQuantity`` drift raises and lowers, in turns, once a cycle."""
DRIFT_NEW_PRODUCT = 1305
"""The id of the product drift adds and removes again (the default catalog has none)."""
DRIFT_PRICE_STEP = Decimal("0.50")
"""How much drift raises the price each cycle."""
DRIFT_LIMIT_STEP = 100
"""How much drift moves the order limit each cycle (up in the 1st, 3rd, ... cycle, else down)."""


def default_catalog() -> list[dict[str, Any]]:
    """Return a fresh copy of the emulator's catalog: about 30 products of every 1NCE family.

    The products follow the upstream `Product` schema, including the irregularities real bodies
    have: `recurring_charges` as null or as a single object, unknown extra fields, missing
    optional fields, and a charge in USD.
    """
    # A literal built on every call, so callers may change their copy freely.
    return [
        # IoT Lifetime Flat: 10 years of connectivity, 500 MB + 250 SMS, paid once.
        {
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
        },
        {
            "id": 1002,
            "product": "1NCE IoT Lifetime Flat - 500 MB + 250 SMS, 10 years",
            "material": "1NCE Lifetime Flat",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 120,
            "one_time_charges": [{"name": "provisionCharge", "amount_net": 10, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1003,
            "product": "1NCE IoT Lifetime Flat - 500 MB + 250 SMS, 10 years, 10-pack",
            "material": "1NCE Lifetime Flat",
            "package_size": 10,
            "minQuantity": 1,
            "maxQuantity": 100,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 120,
            "one_time_charges": [{"name": "provisionCharge", "amount_net": 100, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1004,
            "product": "1NCE IoT Lifetime Flat - North America, 500 MB + 250 SMS, 10 years",
            "material": "1NCE Lifetime Flat US",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 120,
            "one_time_charges": [{"name": "provisionCharge", "amount_net": 14, "currency": "USD"}],
            "recurring_charges": [],
        },
        {
            "id": 1005,
            "product": "1NCE IoT Lifetime Flat - Business, 500 MB + 250 SMS, 10 years",
            "material": "1NCE Lifetime Flat",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 500,
            "maxQuantityPerCustomer": 5000,
            "min_contract_duration": 120,
            "one_time_charges": [
                {"name": "provisionCharge", "amount_net": 12.5, "currency": "EUR"}
            ],
            "recurring_charges": [],
        },
        {
            "id": 1006,
            "product": "1NCE IoT Lifetime Flat - Renewal, 500 MB + 250 SMS, 10 years",
            "material": "1NCE Lifetime Flat Renewal",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 120,
            "one_time_charges": [
                {"name": "provisionCharge", "amount_net": 10.99, "currency": "EUR"}
            ],
            "recurring_charges": [],
        },
        # SIM hardware: Industrial and Business grade, 3-in-1 plastic or MFF2 chip.
        {
            "id": 1101,
            "product": "1NCE FlexSIM Industrial - 3-in-1 Plastic (2FF/3FF/4FF)",
            "material": "SIM Card Industrial 3in1 Plastic",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 1.5, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1102,
            "product": "1NCE FlexSIM Industrial - 3-in-1 Plastic (2FF/3FF/4FF), 10-pack",
            "material": "SIM Card Industrial 3in1 Plastic",
            "package_size": 10,
            "minQuantity": 1,
            "maxQuantity": 100,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 15, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1103,
            "product": "1NCE FlexSIM Industrial - 3-in-1 Plastic (2FF/3FF/4FF), 100-pack",
            "material": "SIM Card Industrial 3in1 Plastic",
            "package_size": 100,
            "minQuantity": 1,
            "maxQuantity": 50,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 150, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            # Irregular: real bodies sometimes carry null where the schema says an array.
            "id": 1104,
            "product": "1NCE FlexSIM Business - 3-in-1 Plastic (2FF/3FF/4FF)",
            "material": "SIM Card Business 3in1 Plastic",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 0.99, "currency": "EUR"}],
            "recurring_charges": None,
        },
        {
            "id": 1105,
            "product": "1NCE FlexSIM Business - 3-in-1 Plastic (2FF/3FF/4FF), 100-pack",
            "material": "SIM Card Business 3in1 Plastic",
            "package_size": 100,
            "minQuantity": 1,
            "maxQuantity": 50,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 99, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1106,
            "product": "1NCE FlexSIM Industrial - MFF2 Chip (SMD)",
            "material": "SIM Chip Industrial MFF2",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 2.4, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1107,
            "product": "1NCE FlexSIM Industrial - MFF2 Chip, Tape & Reel of 1000",
            "material": "SIM Chip Industrial MFF2",
            "package_size": 1000,
            "minQuantity": 1,
            "maxQuantity": 10,
            "maxQuantityPerCustomer": 100,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 2400, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            # Irregular: the optional quantity limits are left out altogether.
            "id": 1108,
            "product": "1NCE FlexSIM Business - MFF2 Chip (SMD)",
            "material": "SIM Chip Business MFF2",
            "package_size": 1,
            "minQuantity": 1,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "simCardCharge", "amount_net": 1.9, "currency": "EUR"}],
            "recurring_charges": [],
        },
        # Top-ups: another 500 MB + 250 SMS for a Lifetime Flat.
        {
            "id": 1201,
            "product": "1NCE Top-up - 500 MB + 250 SMS",
            "material": "1NCE Top-up",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 100,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "topUpCharge", "amount_net": 10, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1202,
            "product": "1NCE Top-up - 500 MB + 250 SMS, 10-pack",
            "material": "1NCE Top-up",
            "package_size": 10,
            "minQuantity": 1,
            "maxQuantity": 100,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "topUpCharge", "amount_net": 100, "currency": "EUR"}],
            "recurring_charges": [],
        },
        {
            "id": 1203,
            "product": "1NCE Auto Top-up - 500 MB + 250 SMS",
            "material": "1NCE Auto Top-up",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "topUpCharge", "amount_net": 10, "currency": "EUR"}],
            "recurring_charges": [],
        },
        # High Data IoT add-ons: larger monthly data volumes.
        {
            "id": 1301,
            "product": "1NCE High Data IoT Add-on - 3 GB",
            "material": "1NCE High Data IoT",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 12,
            "one_time_charges": [],
            "recurring_charges": [{"name": "monthlyCharge", "amount_net": 2.99, "currency": "EUR"}],
        },
        {
            "id": 1302,
            "product": "1NCE High Data IoT Add-on - 5 GB",
            "material": "1NCE High Data IoT",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 12,
            "one_time_charges": [],
            "recurring_charges": [{"name": "monthlyCharge", "amount_net": 4.49, "currency": "EUR"}],
        },
        {
            # Irregular: a single charge object where the schema says an array.
            "id": 1303,
            "product": "1NCE High Data IoT Add-on - 10 GB",
            "material": "1NCE High Data IoT",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1000,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 12,
            "one_time_charges": [{"name": "setupCharge", "amount_net": 5, "currency": "EUR"}],
            "recurring_charges": {"name": "monthlyCharge", "amount_net": 7.99, "currency": "EUR"},
        },
        {
            "id": 1304,
            "product": "1NCE High Data IoT Add-on - 25 GB",
            "material": "1NCE High Data IoT",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 500,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 24,
            "one_time_charges": [{"name": "setupCharge", "amount_net": 5, "currency": "EUR"}],
            "recurring_charges": [
                {"name": "monthlyCharge", "amount_net": 14.99, "currency": "EUR"}
            ],
        },
        # 1NCE OS service entitlements, charged per device and month.
        {
            "id": 1401,
            "product": "1NCE OS Device Locator",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0.05, "currency": "EUR"}],
        },
        {
            "id": 1402,
            "product": "1NCE OS Device Inspector",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0, "currency": "EUR"}],
        },
        {
            "id": 1403,
            "product": "1NCE OS Device Controller",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0.1, "currency": "EUR"}],
        },
        {
            # Irregular: fields the schema does not know.
            "id": 1404,
            "product": "1NCE OS Energy Saver",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0.02, "currency": "EUR"}],
            "description": "Turns compact device payloads into JSON in the cloud.",
            "availability": {"status": "GA", "regions": ["EU", "US"]},
        },
        {
            "id": 1405,
            "product": "1NCE OS Device Integrator",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0.05, "currency": "EUR"}],
        },
        {
            "id": 1406,
            "product": "1NCE OS Cloud Integrator",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0.03, "currency": "EUR"}],
        },
        {
            "id": 1407,
            "product": "1NCE OS Device Authenticator",
            "material": "1NCE OS",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 1,
            "one_time_charges": [],
            "recurring_charges": [{"name": "serviceCharge", "amount_net": 0.08, "currency": "EUR"}],
        },
        # Products of no family the proxy knows, which it must still list.
        {
            "id": 1501,
            "product": "1NCE Premium Support",
            "material": "Support Plan",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": 1,
            "min_contract_duration": 12,
            "one_time_charges": [],
            "recurring_charges": [{"name": "monthlyCharge", "amount_net": 49, "currency": "EUR"}],
        },
        {
            "id": 1502,
            "product": "1NCE Express Shipping",
            "material": "Shipping",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 1,
            "maxQuantityPerCustomer": None,
            "min_contract_duration": 0,
            "one_time_charges": [{"name": "shippingCharge", "amount_net": 24.9, "currency": "EUR"}],
            "recurring_charges": [],
        },
    ]


# 1NCE's published Product and Charge schemas, field by field, in their order.
_PRODUCT_FIELDS = (
    "id",
    "product",
    "material",
    "package_size",
    "minQuantity",
    "maxQuantity",
    "maxQuantityPerCustomer",
    "min_contract_duration",
    "one_time_charges",
    "recurring_charges",
)
_CHARGE_LISTS = ("one_time_charges", "recurring_charges")
_CHARGE_FIELDS = ("name", "amount_net", "currency")


def builtin_catalog(style: CatalogStyle) -> list[dict[str, Any]]:
    """Return a fresh copy of the built-in catalog in ``style``.

    Both styles hold the same products, so drift and the tests' ids work on either.
    """
    products = default_catalog()
    return products if style == "irregular" else [strict_product(item) for item in products]


def strict_product(product: dict[str, Any]) -> dict[str, Any]:
    """Return ``product`` as 1NCE's published ``Product`` schema allows it.

    Only the schema's fields, no nulls (an absent optional field instead; no charges are an
    empty list), and a single charge object becomes a list of one.
    """
    strict: dict[str, Any] = {}
    for name in _PRODUCT_FIELDS:
        value = product.get(name)
        if name in _CHARGE_LISTS:
            charges = [] if value is None else value if isinstance(value, list) else [value]
            strict[name] = [
                {key: charge[key] for key in _CHARGE_FIELDS if charge.get(key) is not None}
                for charge in charges
            ]
        elif value is not None:
            strict[name] = value
    return strict


def drift_product() -> dict[str, Any]:
    """Return a fresh copy of the product drift adds: a 50 GB High Data IoT add-on.

    It is valid against 1NCE's published schema, so drift keeps a ``strict`` catalog strict.
    """
    return {
        "id": DRIFT_NEW_PRODUCT,
        "product": "1NCE High Data IoT Add-on - 50 GB",
        "material": "1NCE High Data IoT",
        "package_size": 1,
        "minQuantity": 1,
        "maxQuantity": 500,
        "min_contract_duration": 24,
        "one_time_charges": [{"name": "setupCharge", "amount_net": 5, "currency": "EUR"}],
        "recurring_charges": [{"name": "monthlyCharge", "amount_net": 24.99, "currency": "EUR"}],
    }


def drifted(catalog: list[dict[str, Any]], step: int) -> tuple[list[dict[str, Any]], str]:
    """Return a copy of ``catalog`` with drift step ``step`` (from 1) applied, and one line on it.

    Steps go round a cycle of `DRIFT_CYCLE`: (1) product `DRIFT_PRICE_PRODUCT`'s first one-time
    charge rises by `DRIFT_PRICE_STEP`; (2) product `DRIFT_LIMIT_PRODUCT`'s ``maxQuantity`` moves
    by `DRIFT_LIMIT_STEP`, up in the first cycle, down in the second, and so on; (3)
    `drift_product` is added; (4) it is removed. The same catalog and step always give the same
    result. When a step's product is missing, or its field is not a number, the copy is
    unchanged and the line says so. ``catalog`` itself is never changed.
    """
    if step < 1:
        raise ValueError("drift steps count from 1")
    cycle, phase = divmod(step - 1, DRIFT_CYCLE)
    return _DRIFT_STEPS[phase](copy.deepcopy(catalog), cycle)


def _find(catalog: list[dict[str, Any]], product_id: int) -> dict[str, Any] | None:
    return next((product for product in catalog if product.get("id") == product_id), None)


def _raise_price(catalog: list[dict[str, Any]], _cycle: int) -> tuple[list[dict[str, Any]], str]:
    product = _find(catalog, DRIFT_PRICE_PRODUCT)
    charges = None if product is None else product.get("one_time_charges")
    charge = charges[0] if isinstance(charges, list) and charges else None
    before = None if not isinstance(charge, dict) else charge.get("amount_net")
    if charge is None or not isinstance(before, int | float) or isinstance(before, bool):
        return catalog, f"product {DRIFT_PRICE_PRODUCT} has no priced one-time charge: no change"
    # Decimal arithmetic, so repeated steps give 10.5, 11.0, 11.5 and never 11.000000000001.
    after = float(Decimal(str(before)) + DRIFT_PRICE_STEP)
    charge["amount_net"] = after
    name, currency = charge.get("name"), charge.get("currency")
    line = f"product {DRIFT_PRICE_PRODUCT} one-time {name}: {before} -> {after} {currency}"
    return catalog, line


def _move_limit(catalog: list[dict[str, Any]], cycle: int) -> tuple[list[dict[str, Any]], str]:
    product = _find(catalog, DRIFT_LIMIT_PRODUCT)
    before = None if product is None else product.get("maxQuantity")
    if product is None or not isinstance(before, int) or isinstance(before, bool):
        return catalog, f"product {DRIFT_LIMIT_PRODUCT} has no maxQuantity: no change"
    by = DRIFT_LIMIT_STEP if cycle % 2 == 0 else -DRIFT_LIMIT_STEP
    # An order limit stays at least 1, whatever catalog drift is applied to.
    after = max(1, before + by)
    product["maxQuantity"] = after
    return catalog, f"product {DRIFT_LIMIT_PRODUCT} maxQuantity: {before} -> {after}"


def _add_product(catalog: list[dict[str, Any]], _cycle: int) -> tuple[list[dict[str, Any]], str]:
    added = drift_product()
    kept = [product for product in catalog if product.get("id") != DRIFT_NEW_PRODUCT]
    return [*kept, added], f"product {DRIFT_NEW_PRODUCT} added: {added['product']}"


def _remove_product(catalog: list[dict[str, Any]], _cycle: int) -> tuple[list[dict[str, Any]], str]:
    kept = [product for product in catalog if product.get("id") != DRIFT_NEW_PRODUCT]
    if len(kept) == len(catalog):
        return catalog, f"product {DRIFT_NEW_PRODUCT} is not in the catalog: no change"
    return kept, f"product {DRIFT_NEW_PRODUCT} removed"


# In the order of the cycle; each changes the copy it is given and may return a new list.
_DRIFT_STEPS = (_raise_price, _move_limit, _add_product, _remove_product)
