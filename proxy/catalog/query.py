"""The list query of the simplified catalog: its parameters, checked, as a `ProductQuery`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from proxy.catalog.categories import Category


class QueryError(ValueError):
    """A query parameter that is unknown, repeated, or has a value outside what it allows.

    ``parameter`` names it and ``allowed`` describes what it accepts, for the caller to read.
    """

    def __init__(
        self, parameter: str, allowed: str, value: str | None = None, *, problem: str | None = None
    ) -> None:
        """Refuse ``value`` of ``parameter``, or say its ``problem`` when that is not one value.

        The message is ``"<problem>; allowed: <allowed>"``; without ``problem`` it reads
        ``"invalid value '<value>' for '<parameter>'; allowed: <allowed>"``, the value shortened
        and its control characters escaped.
        """
        if problem is None:
            shown = "" if value is None else f" {_show(value)}"
            problem = f"invalid value{shown} for '{parameter}'"
        super().__init__(f"{problem}; allowed: {allowed}")
        self.parameter = parameter
        self.allowed = allowed


class SortKey(StrEnum):
    """What the product list is ordered by."""

    ID = "id"
    NAME = "name"
    PRICE = "price"


@dataclass(frozen=True, slots=True)
class ProductQuery:
    """A checked list query: filters that all must hold, and the order of the result.

    ``categories`` and ``ids`` match any of their members and match everything when empty;
    ``material`` and ``q`` match everything when ``None``.
    """

    categories: frozenset[Category] = frozenset()
    material: str | None = None
    q: str | None = None
    ids: frozenset[int] = frozenset()
    sort: SortKey = SortKey.ID
    descending: bool = False


@runtime_checkable
class MultiParams(Protocol):
    """Query parameters that may repeat, like aiohttp's ``request.query`` (a ``MultiDictProxy``)."""

    def keys(self) -> Iterable[str]:
        """Each parameter name (repeated names may appear more than once)."""
        ...

    def getall(self, key: str, /) -> list[str]:
        """Every value given for ``key``, in order."""
        ...


PARAMETERS = ("category", "material", "q", "id", "sort")
"""The names the list query accepts, exactly (names are case-sensitive)."""
MAX_TEXT_LENGTH = 200
"""The longest ``material`` or ``q`` value, in characters."""
MAX_IDS = 100
"""The most ids one query may name."""
_MAX_ID = 2**63 - 1

_ALLOWED_NAMES = ", ".join(PARAMETERS)
_ALLOWED_CATEGORIES = ", ".join(category.value for category in Category)
_ALLOWED_MATERIAL = f"one material name of 1 to {MAX_TEXT_LENGTH} characters"
_ALLOWED_Q = f"one search text of 1 to {MAX_TEXT_LENGTH} characters"
_ALLOWED_IDS = f"up to {MAX_IDS} positive integer ids (1 to {_MAX_ID}), one per repeated 'id'"
_ALLOWED_SORT = ", ".join([key.value for key in SortKey] + [f"-{key.value}" for key in SortKey])
# Only ASCII digits: int() would also take other scripts' digits, signs and underscores.
_ID = re.compile(r"[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Echoed values are cut short so an error message stays one readable line.
_SHOWN_LENGTH = 60


def _show(value: str) -> str:
    """Return ``value`` quoted for an error message, shortened, control characters escaped."""
    shown = value if len(value) <= _SHOWN_LENGTH else value[:_SHOWN_LENGTH] + "..."
    escaped = "".join(char if char.isprintable() else repr(char)[1:-1] for char in shown)
    return f"'{escaped}'"


def _values(params: MultiParams | Mapping[str, Sequence[str]], name: str) -> list[str]:
    if isinstance(params, MultiParams):
        return list(params.getall(name))
    given = params[name]
    # A bare string is one value, not a sequence of one-letter values.
    return [given] if isinstance(given, str) else list(given)


def _checked(name: str, allowed: str, value: str) -> str:
    """Return ``value`` if it holds no control character, else raise `QueryError`."""
    if _CONTROL.search(value) is not None:
        problem = f"invalid value {_show(value)} for '{name}': control character"
        raise QueryError(name, allowed, problem=problem)
    return value


def _single(name: str, allowed: str, values: list[str]) -> str:
    if len(values) > 1:
        raise QueryError(name, allowed, problem=f"'{name}' given {len(values)} times, at most once")
    return _checked(name, allowed, values[0])


def _items(name: str, allowed: str, values: list[str]) -> list[str]:
    """Check each value of a repeatable parameter."""
    return [_checked(name, allowed, value) for value in values]


def _text(name: str, allowed: str, values: list[str]) -> str:
    value = _single(name, allowed, values)
    if not value:
        raise QueryError(name, allowed, problem=f"empty value for '{name}'")
    if len(value) > MAX_TEXT_LENGTH:
        problem = f"value for '{name}' has {len(value)} characters, too long"
        raise QueryError(name, allowed, problem=problem)
    return value


def _categories(values: list[str]) -> frozenset[Category]:
    found: set[Category] = set()
    for item in _items("category", _ALLOWED_CATEGORIES, values):
        try:
            found.add(Category(item))
        except ValueError:
            raise QueryError("category", _ALLOWED_CATEGORIES, item) from None
    return frozenset(found)


def _ids(values: list[str]) -> frozenset[int]:
    items = _items("id", _ALLOWED_IDS, values)
    if len(items) > MAX_IDS:
        raise QueryError("id", _ALLOWED_IDS, problem=f"{len(items)} ids given, too many")
    found: set[int] = set()
    for item in items:
        number = int(item) if _ID.fullmatch(item) else 0
        if not 0 < number <= _MAX_ID:
            raise QueryError("id", _ALLOWED_IDS, item)
        found.add(number)
    return frozenset(found)


def _sort(values: list[str]) -> tuple[SortKey, bool]:
    value = _single("sort", _ALLOWED_SORT, values)
    descending = value.startswith("-")
    try:
        key = SortKey(value.removeprefix("-"))
    except ValueError:
        raise QueryError("sort", _ALLOWED_SORT, value) from None
    return key, descending


def refuse_unknown(params: MultiParams, allowed: Sequence[str]) -> None:
    """Raise `QueryError` for the first parameter not in ``allowed``.

    For the operations that take a few parameters, or none, rather than the product list's.
    """
    for name in params.keys():  # noqa: SIM118 - the MultiParams protocol has keys() only
        if name not in allowed:
            takes = ", ".join(allowed) or "none: this operation takes no query parameters"
            raise QueryError(name, takes, problem=f"unknown parameter {name[:60]!r}")


def parse_positive(raw: str, name: str, allowed: str) -> int:
    """Return ``raw`` as an integer from 1 to 2**63 - 1 (ASCII digits only), else raise."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= _MAX_ID):
        raise QueryError(name, allowed, raw)
    return int(raw)


def parse_query(params: MultiParams | Mapping[str, Sequence[str]]) -> ProductQuery:
    """Check the list query parameters and return them as a `ProductQuery`.

    ``params`` is aiohttp's ``request.query`` or a mapping of each name to its values. Accepted,
    exactly as the OpenAPI document describes them (no case folding, no trimming, no comma
    lists, so the document and the code cannot disagree): ``category`` (repeatable), ``material``
    and ``q`` (once each, 1 to 200 characters), ``id`` (repeatable, ASCII-digit ids from 1 to
    2**63 - 1 without leading zeros, at most 100 given), ``sort`` (once: ``id``, ``name`` or
    ``price``, ``-`` first for descending; ``id`` ascending when absent). Raises `QueryError`
    for an unknown name, a repeated single parameter, a control character (or DEL) in a
    value, or a value outside what the parameter allows.
    """
    names = list(dict.fromkeys(params.keys()))
    for name in names:
        if name not in PARAMETERS:
            raise QueryError(name, _ALLOWED_NAMES, problem=f"unknown parameter {_show(name)}")
    given = {name: _values(params, name) for name in names}
    # A name listed with no values (possible in a plain mapping) counts as not given.
    given = {name: values for name, values in given.items() if values}
    sort, descending = _sort(given["sort"]) if "sort" in given else (SortKey.ID, False)
    return ProductQuery(
        categories=_categories(given.get("category", [])),
        material=_text("material", _ALLOWED_MATERIAL, given["material"])
        if "material" in given
        else None,
        q=_text("q", _ALLOWED_Q, given["q"]) if "q" in given else None,
        ids=_ids(given.get("id", [])),
        sort=sort,
        descending=descending,
    )
