"""What changed between two catalog versions, on the simplified products."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from proxy.catalog.view import CatalogView, SimplifiedProduct

logger = structlog.get_logger(__name__)

# Top-level keys of `SimplifiedProduct.to_json` holding money: lists of charge lines (whose
# ``amount`` is money) and per-currency totals (whose every value is money).
_CHARGE_LISTS = frozenset({"one_time", "recurring"})
_TOTALS = frozenset({"one_time_total", "recurring_total"})
# A warning about repeated ids names this many of them; the count says how many there are.
_LISTED_DUPLICATES = 10

_Segments = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    """How many products a version added, removed and changed against the one before it."""

    added: int
    removed: int
    changed: int

    def to_json(self) -> dict[str, int]:
        """Return ``{"added": n, "removed": n, "changed": n}``."""
        return {"added": self.added, "removed": self.removed, "changed": self.changed}

    @classmethod
    def from_json(cls, data: object) -> Summary:
        """Read what :meth:`to_json` wrote; ``ValueError`` for anything else."""
        if not isinstance(data, dict):
            raise ValueError("a summary is an object")  # noqa: TRY004 - one error for bad data
        counts = [data.get(kind) for kind in ("added", "removed", "changed")]
        if not all(type(count) is int and count >= 0 for count in counts):
            raise ValueError("a summary has three counts")
        added, removed, changed = counts
        return cls(added=added, removed=removed, changed=changed)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed value of a product, at a dotted path into `SimplifiedProduct.to_json`.

    ``field`` names object members by key and list items by index (``"order.max"``,
    ``"one_time.0.amount"``, ``"one_time_total.EUR"``). ``before`` and ``after`` are JSON values;
    ``None`` also stands for a path that did not exist on that side (a list item or total that
    appeared or disappeared is one change holding the whole item).
    """

    field: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        """Return ``{"field", "before", "after"}``, a fresh object on every call."""
        return {
            "field": self.field,
            "before": copy.deepcopy(self.before),
            "after": copy.deepcopy(self.after),
        }


@dataclass(frozen=True, slots=True)
class ProductChange:
    """The changes of one product present in both versions, sorted by path.

    Paths sort segment by segment, numeric segments by number (``one_time.9`` before
    ``one_time.10``), the others as strings after the numeric ones.
    """

    id: int
    changes: tuple[FieldChange, ...]

    def to_json(self) -> dict[str, Any]:
        """Return ``{"id": ..., "changes": [...]}``."""
        return {"id": self.id, "changes": [change.to_json() for change in self.changes]}


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    """What changed between two catalog versions: products added, removed and changed.

    Products are matched by id; each tuple is sorted by id.
    """

    added: tuple[SimplifiedProduct, ...]
    removed: tuple[SimplifiedProduct, ...]
    changed: tuple[ProductChange, ...]

    @property
    def summary(self) -> Summary:
        """Return how many products were added, removed and changed."""
        return Summary(added=len(self.added), removed=len(self.removed), changed=len(self.changed))

    def to_json(self) -> dict[str, Any]:
        """Return ``{"added": [...], "removed": [...], "changed": [...], "summary": {...}}``."""
        return {
            "added": [product.to_json() for product in self.added],
            "removed": [product.to_json() for product in self.removed],
            "changed": [change.to_json() for change in self.changed],
            "summary": self.summary.to_json(),
        }


def diff_views(before: CatalogView | None, after: CatalogView) -> CatalogDiff:
    """Return what changed from ``before`` to ``after``; ``None`` before means all is added.

    Products are matched by id through `CatalogView.by_id`, so of a repeated id only the first
    product counts; a view with repeated ids is reported with a ``catalog_duplicate_ids``
    warning. Money (charge amounts and totals) compares as exact decimals: ``"1.5"`` and
    ``"1.50"`` are the same amount.
    """
    if before is not None:
        _warn_duplicates(before, "before")
    _warn_duplicates(after, "after")
    old: Mapping[int, SimplifiedProduct] = {} if before is None else before.by_id
    new = after.by_id
    changed: list[ProductChange] = []
    for product_id in sorted(old.keys() & new.keys()):
        changes = _product_changes(old[product_id], new[product_id])
        if changes:
            changed.append(ProductChange(id=product_id, changes=changes))
    return CatalogDiff(
        added=tuple(new[product_id] for product_id in sorted(new.keys() - old.keys())),
        removed=tuple(old[product_id] for product_id in sorted(old.keys() - new.keys())),
        changed=tuple(changed),
    )


def _warn_duplicates(view: CatalogView, side: str) -> None:
    if len(view.products) == len(view.by_id):
        return
    counts = Counter(product.id for product in view.products)
    repeated = sorted(product_id for product_id, count in counts.items() if count > 1)
    logger.warning(
        "catalog_duplicate_ids",
        side=side,
        ids=repeated[:_LISTED_DUPLICATES],
        count=len(repeated),
    )


def _product_changes(
    before: SimplifiedProduct, after: SimplifiedProduct
) -> tuple[FieldChange, ...]:
    # Equal products have equal JSON; most products of two versions are, and this is cheaper.
    if before == after:
        return ()
    old, new = before.to_json(), after.to_json()
    found = sorted(_changes((), old, new), key=lambda pair: _path_key(pair[0]))
    return tuple(FieldChange(".".join(path), prior, current) for path, prior, current in found)


def _changes(
    path: _Segments, before: object, after: object
) -> Iterator[tuple[_Segments, object, object]]:
    """Yield ``(path, before, after)`` for every differing value under ``path``."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before.keys() | after.keys():
            yield from _changes((*path, key), before.get(key), after.get(key))
    elif isinstance(before, list) and isinstance(after, list):
        for index in range(max(len(before), len(after))):
            prior = before[index] if index < len(before) else None
            current = after[index] if index < len(after) else None
            yield from _changes((*path, str(index)), prior, current)
    elif not _same(path, before, after):
        yield path, before, after


def _same(path: _Segments, before: object, after: object) -> bool:
    # The type check keeps JSON apart what Python equates (1 and 1.0, 0 and false).
    if type(before) is not type(after):
        return False
    if before == after:
        return True
    if isinstance(before, str) and isinstance(after, str) and _is_money(path):
        return _same_amount(before, after)
    return False


def _is_money(path: _Segments) -> bool:
    if len(path) == 2:
        return path[0] in _TOTALS
    return len(path) == 3 and path[0] in _CHARGE_LISTS and path[2] == "amount"


def _same_amount(before: str, after: str) -> bool:
    try:
        return Decimal(before) == Decimal(after)
    except InvalidOperation:
        # Not a decimal string (never what `format_amount` writes): unequal strings differ.
        return False


def _path_key(path: _Segments) -> tuple[tuple[int, int, str], ...]:
    """Order paths segment by segment, numbers numerically and ahead of names."""
    return tuple(
        (0, int(segment), segment) if segment.isascii() and segment.isdigit() else (1, 0, segment)
        for segment in path
    )
