"""The simplified catalog: products as the internal API shows them, filtered and sorted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from proxy.catalog.categories import Category, categorize, form_factor, grade
from proxy.catalog.money import format_amount, normalize_currency, sum_by_currency, usable_amount
from proxy.catalog.query import ProductQuery, SortKey
from proxy.upstream.models import Charge, Product, parse_catalog

PRICE_CURRENCY = "EUR"
"""The currency whose one-time total orders products by price."""


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One price line of a simplified product: amount as an exact decimal string or ``None``."""

    name: str | None
    amount: str | None
    currency: str | None

    @classmethod
    def from_charge(cls, charge: Charge) -> ChargeLine:
        """Return the line for an upstream charge, amount formatted and currency upper-cased.

        A charge with no usable amount keeps its line, with ``amount`` ``None``.
        """
        amount = usable_amount(charge.amount_net)
        return cls(
            name=charge.name,
            amount=None if amount is None else format_amount(amount),
            currency=normalize_currency(charge.currency),
        )

    def to_json(self) -> dict[str, str | None]:
        """Return the line as the internal API's JSON object."""
        return {"name": self.name, "amount": self.amount, "currency": self.currency}


@dataclass(frozen=True, slots=True)
class SimplifiedProduct:
    """One product as the internal API shows it (docs/api.md, "The simplified catalog").

    ``price_key`` (the one-time total in EUR, ``None`` without one) and ``search_text`` (name
    and material, case-folded, one per line) are derived from the other fields.
    """

    id: int
    name: str | None
    material: str | None
    category: Category
    grade: str | None
    form_factor: str | None
    package_size: int | None
    order_min: int | None
    order_max: int | None
    order_max_per_customer: int | None
    contract_months: int | None
    one_time: tuple[ChargeLine, ...]
    recurring: tuple[ChargeLine, ...]
    one_time_total: Mapping[str, str]
    recurring_total: Mapping[str, str]
    price_key: Decimal | None = field(init=False)
    search_text: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Derive the sort and search keys from the fields."""
        eur = self.one_time_total.get(PRICE_CURRENCY)
        object.__setattr__(self, "price_key", None if eur is None else Decimal(eur))
        # A line break between the names keeps a search from matching across them: the query
        # parser refuses control characters, so no search text contains one.
        text = f"{self.name or ''}\n{self.material or ''}".casefold()
        object.__setattr__(self, "search_text", text)

    def to_json(self) -> dict[str, Any]:
        """Return the product as the internal API's JSON object, a fresh one on every call."""
        return {
            "id": self.id,
            "name": self.name,
            "material": self.material,
            "category": self.category.value,
            "grade": self.grade,
            "form_factor": self.form_factor,
            "package_size": self.package_size,
            "order": {
                "min": self.order_min,
                "max": self.order_max,
                "max_per_customer": self.order_max_per_customer,
            },
            "contract_months": self.contract_months,
            "one_time": [line.to_json() for line in self.one_time],
            "recurring": [line.to_json() for line in self.recurring],
            "one_time_total": dict(self.one_time_total),
            "recurring_total": dict(self.recurring_total),
        }


def simplify(product: Product) -> SimplifiedProduct:
    """Return the simplified form of an upstream product; any product, however sparse, has one."""
    name, material = product.product, product.material
    category = categorize(name, material)
    return SimplifiedProduct(
        id=product.id,
        name=name,
        material=material,
        category=category,
        grade=grade(name, material, category=category),
        form_factor=form_factor(name, material, category=category),
        package_size=product.package_size,
        order_min=product.min_quantity,
        order_max=product.max_quantity,
        order_max_per_customer=product.max_quantity_per_customer,
        contract_months=product.min_contract_duration,
        one_time=tuple(ChargeLine.from_charge(charge) for charge in product.one_time_charges),
        recurring=tuple(ChargeLine.from_charge(charge) for charge in product.recurring_charges),
        one_time_total=MappingProxyType(sum_by_currency(product.one_time_charges)),
        recurring_total=MappingProxyType(sum_by_currency(product.recurring_charges)),
    )


def _by_id(products: list[SimplifiedProduct]) -> list[SimplifiedProduct]:
    return sorted(products, key=lambda product: product.id)


# Both sorts start from id order and rely on sort stability (which holds with reverse=True
# too), so ties keep ascending id in both directions.


def _sort_by_name(
    products: list[SimplifiedProduct], *, descending: bool
) -> list[SimplifiedProduct]:
    ordered = _by_id(products)
    named = [(product.name.casefold(), product) for product in ordered if product.name is not None]
    named.sort(key=lambda pair: pair[0], reverse=descending)
    return [product for _, product in named] + [p for p in ordered if p.name is None]


def _sort_by_price(
    products: list[SimplifiedProduct], *, descending: bool
) -> list[SimplifiedProduct]:
    ordered = _by_id(products)
    priced = [(p.price_key, p) for p in ordered if p.price_key is not None]
    priced.sort(key=lambda pair: pair[0], reverse=descending)
    return [product for _, product in priced] + [p for p in ordered if p.price_key is None]


@dataclass(frozen=True, slots=True)
class CatalogView:
    """The simplified form of one catalog version, built once and queried many times.

    ``products`` lists every upstream product, in upstream order, none dropped. ``by_id`` maps
    each id to its product; should the upstream repeat an id, the first product with it is the
    one ``by_id`` holds, while every duplicate stays listed in ``products`` (and is counted,
    filtered and sorted like any other). ``category_counts`` has every category in enum order
    with the number of listed products in it, zero included.
    """

    products: tuple[SimplifiedProduct, ...]
    by_id: Mapping[int, SimplifiedProduct]
    category_counts: tuple[tuple[Category, int], ...]

    @classmethod
    def build(cls, products: Iterable[Product]) -> CatalogView:
        """Return the view of a catalog as `parse_catalog` returns it."""
        simplified = tuple(simplify(product) for product in products)
        by_id: dict[int, SimplifiedProduct] = {}
        for product in simplified:
            by_id.setdefault(product.id, product)
        counts = Counter(product.category for product in simplified)
        return cls(
            products=simplified,
            by_id=MappingProxyType(by_id),
            category_counts=tuple((category, counts[category]) for category in Category),
        )

    @classmethod
    def parse(cls, body: bytes) -> CatalogView:
        """Return the view of a catalog's bytes; `InvalidCatalogError` if they do not parse."""
        return cls.build(parse_catalog(body))

    def select(self, query: ProductQuery) -> list[SimplifiedProduct]:
        """Return the products that pass every filter of ``query``, in its order.

        Filters combine with AND; ``categories`` and ``ids`` each match any of their members.
        ``material`` equals the product's material ignoring case and surrounding whitespace;
        ``q`` is a case-insensitive substring of the name or of the material.

        Orders: ``id`` numerically (products sharing an id keep upstream order); ``name``
        case-insensitively; ``price`` by the one-time total in EUR. Products without a name
        (for ``name``) or without an EUR one-time total (for ``price``) come after all others
        in both directions, in ascending id order; ties are broken by ascending id in both
        directions. Descending reverses only the order of the products that have the key.
        """
        selected = [product for product in self.products if _matches(product, query)]
        if query.sort is SortKey.NAME:
            return _sort_by_name(selected, descending=query.descending)
        if query.sort is SortKey.PRICE:
            return _sort_by_price(selected, descending=query.descending)
        return sorted(selected, key=lambda product: product.id, reverse=query.descending)


def _matches(product: SimplifiedProduct, query: ProductQuery) -> bool:
    if query.categories and product.category not in query.categories:
        return False
    if query.ids and product.id not in query.ids:
        return False
    if query.material is not None and (
        product.material is None
        or product.material.strip().casefold() != query.material.strip().casefold()
    ):
        return False
    return query.q is None or query.q.casefold() in product.search_text
