"""parse_query: the list query's parameters, checked, and every way they can be wrong."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from multidict import MultiDict, MultiDictProxy

from proxy.catalog.categories import Category
from proxy.catalog.query import (
    MAX_IDS,
    ProductQuery,
    QueryError,
    SortKey,
    parse_query,
)

CATEGORIES = "lifetime_flat, sim, topup, high_data_addon, os_service, other"
NAMES = "category, material, q, id, sort"
SORTS = "id, name, price, -id, -name, -price"
IDS = "up to 100 positive integer ids (1 to 9223372036854775807), one per repeated 'id'"


def multi(*pairs: tuple[str, str]) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(pairs))


def error_for(params: dict[str, Sequence[str]] | MultiDictProxy[str]) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse_query(params)
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(error).endswith(f"; allowed: {error.allowed}")
    return error


def test_no_parameters_is_everything_by_id() -> None:
    query = parse_query(multi())
    assert query == ProductQuery()
    assert query.categories == frozenset()
    assert query.ids == frozenset()
    assert query.material is None
    assert query.q is None
    assert query.sort is SortKey.ID
    assert query.descending is False


def test_all_parameters_from_a_multidict() -> None:
    query = parse_query(
        multi(
            ("category", "sim"),
            ("material", "1NCE OS"),
            ("q", "flex"),
            ("id", "1001"),
            ("sort", "-price"),
            ("category", "topup"),
            ("id", "1002"),
            ("id", "1003"),
        )
    )
    assert query == ProductQuery(
        categories=frozenset({Category.SIM, Category.TOPUP}),
        material="1NCE OS",
        q="flex",
        ids=frozenset({1001, 1002, 1003}),
        sort=SortKey.PRICE,
        descending=True,
    )


def test_plain_mapping_of_lists() -> None:
    query = parse_query({"category": ["sim", "other"], "id": ["7"], "sort": ["name"]})
    assert query.categories == {Category.SIM, Category.OTHER}
    assert query.ids == {7}
    assert query.sort is SortKey.NAME


def test_plain_mapping_with_bare_string_is_one_value() -> None:
    assert parse_query({"q": "flex"}).q == "flex"
    assert parse_query({"q": []}).q is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["sim"], {Category.SIM}),
        (["sim", "topup", "other"], {Category.SIM, Category.TOPUP, Category.OTHER}),
        (["sim", "sim"], {Category.SIM}),
        ([category.value for category in Category], set(Category)),
    ],
)
def test_category(values: list[str], expected: set[Category]) -> None:
    assert parse_query(multi(*(("category", value) for value in values))).categories == expected


@pytest.mark.parametrize(
    # No case folding, trimming or comma lists: the OpenAPI enum is the whole truth.
    "value",
    ["foo", "", "sim,", ",sim", "sims", "lifetime flat", "1", "SIM", " sim ", "sim,topup"],
)
def test_bad_category(value: str) -> None:
    error = error_for(multi(("category", value)))
    assert error.parameter == "category"
    assert error.allowed == CATEGORIES
    assert "for 'category'" in str(error)


def test_bad_category_message() -> None:
    error = error_for(multi(("category", "foo")))
    assert str(error) == f"invalid value 'foo' for 'category'; allowed: {CATEGORIES}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1"], {1}),
        (["1001", "1002"], {1001, 1002}),
        ([str(2**63 - 1)], {2**63 - 1}),
        (["5", "5"], {5}),
    ],
)
def test_id(values: list[str], expected: set[int]) -> None:
    assert parse_query(multi(*(("id", value) for value in values))).ids == expected


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "-1",
        "+1",
        "1.0",
        "1e3",
        "abc",
        "",
        "1,",
        "1,,2",
        "1_000",
        "0x10",
        "١٢",
        "1 2",
        "007",
        " 1001",
        "1001,1002",
        str(2**63),
        "9" * 19,
        "1" * 20,
    ],
)
def test_bad_id(value: str) -> None:
    error = error_for(multi(("id", value)))
    assert error.parameter == "id"
    assert error.allowed == IDS
    assert str(error).startswith("invalid value '")


def test_id_count_limit() -> None:
    ids = [("id", str(number)) for number in range(1, MAX_IDS + 1)]
    assert len(parse_query(multi(*ids)).ids) == MAX_IDS

    error = error_for(multi(*ids, ("id", "101")))
    assert error.parameter == "id"
    assert error.allowed == IDS
    assert str(error) == f"101 ids given, too many; allowed: {IDS}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("id", (SortKey.ID, False)),
        ("-id", (SortKey.ID, True)),
        ("name", (SortKey.NAME, False)),
        ("-name", (SortKey.NAME, True)),
        ("price", (SortKey.PRICE, False)),
        ("-price", (SortKey.PRICE, True)),
    ],
)
def test_sort(value: str, expected: tuple[SortKey, bool]) -> None:
    query = parse_query(multi(("sort", value)))
    assert (query.sort, query.descending) == expected


@pytest.mark.parametrize(
    "value", ["", "-", "--id", "+id", "cost", "name,id", "- name", "idd", " price ", "-NAME"]
)
def test_bad_sort(value: str) -> None:
    error = error_for(multi(("sort", value)))
    assert error.parameter == "sort"
    assert error.allowed == SORTS


def test_material_and_q_are_kept_as_given() -> None:
    query = parse_query(multi(("material", "  1NCE OS "), ("q", " ")))
    assert query.material == "  1NCE OS "
    assert query.q == " ", "a lone space is a search for names with a space"


@pytest.mark.parametrize("name", ["material", "q"])
@pytest.mark.parametrize("value", ["", "x" * 201, " " * 201])
def test_bad_text(name: str, value: str) -> None:
    error = error_for(multi((name, value)))
    assert error.parameter == name
    assert "1 to 200 characters" in error.allowed


@pytest.mark.parametrize("name", ["material", "q"])
def test_text_length_limit(name: str) -> None:
    assert getattr(parse_query(multi((name, "x" * 200))), name) == "x" * 200


def test_empty_q_message() -> None:
    error = error_for(multi(("q", "")))
    assert str(error).startswith("empty value for 'q'; allowed: ")


@pytest.mark.parametrize(
    ("name", "value"), [("material", "1NCE OS"), ("q", "flex"), ("sort", "id")]
)
def test_single_parameters_given_twice(name: str, value: str) -> None:
    error = error_for(multi((name, value), (name, value)))
    assert error.parameter == name
    assert f"'{name}' given 2 times, at most once" in str(error)


@pytest.mark.parametrize("name", ["foo", "Category", "ids", "", "sort "])
def test_unknown_parameter(name: str) -> None:
    error = error_for(multi((name, "x")))
    assert error.parameter == name
    assert error.allowed == NAMES
    assert str(error) == f"unknown parameter '{name}'; allowed: {NAMES}"


def test_unknown_parameter_in_a_plain_mapping() -> None:
    error = error_for({"category": ["sim"], "limit": ["10"]})
    assert error.parameter == "limit"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("category", "sim\n"),
        ("material", "1NCE\tOS"),
        ("q", "flex\x00"),
        ("q", "\x1f"),
        ("q", "a\x7fb"),
        ("id", "1001\r"),
        ("sort", "id\x0b"),
    ],
)
def test_control_characters(name: str, value: str) -> None:
    error = error_for(multi((name, value)))
    assert error.parameter == name
    assert "control character" in str(error)
    # The message itself stays printable, the offending character escaped.
    assert str(error).isprintable()


def test_long_values_are_shortened_in_messages() -> None:
    error = error_for(multi(("category", "x" * 1000)))
    assert len(str(error)) < 200


def test_query_error_from_a_value() -> None:
    error = QueryError("id", "a positive integer", "a\x00b")
    assert str(error) == "invalid value 'a\\x00b' for 'id'; allowed: a positive integer"
    assert (error.parameter, error.allowed) == ("id", "a positive integer")
    assert str(QueryError("x", "y")) == "invalid value for 'x'; allowed: y"
    assert str(QueryError("x", "y", "v", problem="bad")) == "bad; allowed: y"


def test_invalid_value_is_shown_as_given() -> None:
    error = error_for(multi(("sort", " cost ")))
    assert str(error) == f"invalid value ' cost ' for 'sort'; allowed: {SORTS}"


def test_unknown_name_with_control_character_is_escaped() -> None:
    error = error_for(multi(("a\nb", "1")))
    assert error.parameter == "a\nb"
    assert "'a\\nb'" in str(error)
