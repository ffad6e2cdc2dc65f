"""The products endpoint and lenient models of its JSON (see ``upstream-openapi.yml``).

Real bodies stray from the published schema: ``null`` or a single object where an array is
documented, unknown fields, missing optional fields. All of that parses; only a body that is
not a non-empty JSON array of objects with integer ids is refused.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, TypeAdapter
from pydantic import ValidationError as _ValidationError

from proxy.upstream.client import Endpoint


def _as_list(value: Any) -> Any:
    """Accept ``null`` and a lone object where a list of charges is documented."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _lenient(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _opt_int(value: Any) -> Any:
    return _lenient(value, int)


def _opt_str(value: Any) -> Any:
    return _lenient(value, str)


def _opt_amount(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, str, Decimal)):
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            return None
        # NaN or Infinity is no price; one such charge must not make the whole body unusable.
        return amount if amount.is_finite() else None
    return None


OptInt = Annotated[int | None, BeforeValidator(_opt_int)]
OptStr = Annotated[str | None, BeforeValidator(_opt_str)]


class Charge(BaseModel):
    """One price line of a product."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: OptStr = None
    amount_net: Annotated[Decimal | None, BeforeValidator(_opt_amount)] = None
    currency: OptStr = None


Charges = Annotated[tuple[Charge, ...], BeforeValidator(_as_list)]


class Product(BaseModel):
    """One 1NCE product as the upstream describes it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: StrictInt
    product: OptStr = None
    material: OptStr = None
    package_size: OptInt = None
    min_quantity: OptInt = Field(default=None, alias="minQuantity")
    max_quantity: OptInt = Field(default=None, alias="maxQuantity")
    max_quantity_per_customer: OptInt = Field(default=None, alias="maxQuantityPerCustomer")
    min_contract_duration: OptInt = None
    one_time_charges: Charges = ()
    recurring_charges: Charges = ()


_CATALOG = TypeAdapter(list[Product])


class InvalidCatalogError(ValueError):
    """The body is not a JSON array of products."""


def parse_catalog(body: bytes) -> tuple[Product, ...]:
    """Parse an upstream products body, refusing anything that is not a usable catalog."""
    try:
        products = _CATALOG.validate_json(body)
    except _ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidCatalogError(f"{where}: {first['msg']}") from None
    if not products:
        # An empty catalog from 1NCE is a fault on their side; it must not replace a good one.
        raise InvalidCatalogError("body: empty product list")
    return tuple(products)


PRODUCTS = Endpoint("products", "/v1/products", parse_catalog)
"""``GET /v1/products``: the whole catalog, validated by :func:`parse_catalog`."""
