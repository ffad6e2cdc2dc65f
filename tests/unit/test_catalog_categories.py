"""Categories, grades and form factors, told by product and material names."""

from __future__ import annotations

import pytest

from proxy.catalog.categories import Category, categorize, form_factor, grade
from proxy.sandbox import default_catalog

# id: (category, grade, form factor) of every product in the sandbox catalog.
EXPECTED: dict[int, tuple[Category, str | None, str | None]] = {
    1001: (Category.SIM, "industrial", "2ff/3ff/4ff"),
    1002: (Category.LIFETIME_FLAT, None, None),
    1003: (Category.LIFETIME_FLAT, None, None),
    1004: (Category.LIFETIME_FLAT, None, None),
    1005: (Category.LIFETIME_FLAT, "business", None),
    1006: (Category.LIFETIME_FLAT, None, None),
    1101: (Category.SIM, "industrial", "2ff/3ff/4ff"),
    1102: (Category.SIM, "industrial", "2ff/3ff/4ff"),
    1103: (Category.SIM, "industrial", "2ff/3ff/4ff"),
    1104: (Category.SIM, "business", "2ff/3ff/4ff"),
    1105: (Category.SIM, "business", "2ff/3ff/4ff"),
    1106: (Category.SIM, "industrial", "mff2"),
    1107: (Category.SIM, "industrial", "mff2"),
    1108: (Category.SIM, "business", "mff2"),
    1201: (Category.TOPUP, None, None),
    1202: (Category.TOPUP, None, None),
    1203: (Category.TOPUP, None, None),
    1301: (Category.HIGH_DATA_ADDON, None, None),
    1302: (Category.HIGH_DATA_ADDON, None, None),
    1303: (Category.HIGH_DATA_ADDON, None, None),
    1304: (Category.HIGH_DATA_ADDON, None, None),
    1401: (Category.OS_SERVICE, None, None),
    1402: (Category.OS_SERVICE, None, None),
    1403: (Category.OS_SERVICE, None, None),
    1404: (Category.OS_SERVICE, None, None),
    1405: (Category.OS_SERVICE, None, None),
    1406: (Category.OS_SERVICE, None, None),
    1407: (Category.OS_SERVICE, None, None),
    1501: (Category.OTHER, None, None),
    1502: (Category.OTHER, None, None),
}


def test_enum_values_and_order() -> None:
    assert [category.value for category in Category] == [
        "lifetime_flat",
        "sim",
        "topup",
        "high_data_addon",
        "os_service",
        "other",
    ]


def test_expectations_cover_the_whole_sandbox_catalog() -> None:
    assert sorted(item["id"] for item in default_catalog()) == sorted(EXPECTED)


@pytest.mark.parametrize("item", default_catalog(), ids=lambda item: str(item["id"]))
def test_sandbox_product(item: dict[str, object]) -> None:
    name, material = item["product"], item["material"]
    assert isinstance(name, str)
    assert isinstance(material, str)
    expected = EXPECTED[int(str(item["id"]))]

    found = categorize(name, material)
    assert (found, grade(name, material), form_factor(name, material)) == expected
    assert grade(name, material, category=found) == expected[1]
    assert form_factor(name, material, category=found) == expected[2]


@pytest.mark.parametrize(
    ("name", "material", "expected"),
    [
        # Precedence: the earlier family wins when names mention several.
        ("1NCE Lifetime Flat incl. FlexSIM", "1NCE Lifetime Flat", Category.LIFETIME_FLAT),
        ("Lifetime Flat incl. SIM chip", None, Category.LIFETIME_FLAT),
        ("FlexSIM Top-up", "1NCE Top-up", Category.SIM),
        ("Top-up with High Data", None, Category.TOPUP),
        ("High Data add-on for 1NCE OS", None, Category.HIGH_DATA_ADDON),
        ("Device Locator SIM bundle", None, Category.SIM),
        # Each rule on its own, in either name.
        ("LIFETIME FLAT", None, Category.LIFETIME_FLAT),
        ("lifetime-flat", None, Category.LIFETIME_FLAT),
        (None, "1NCE Lifetime Flat", Category.LIFETIME_FLAT),
        ("SIM card", None, Category.SIM),
        ("Spare SIMs", None, Category.SIM),
        ("sim", None, Category.SIM),
        ("1nce flexsim", None, Category.SIM),
        ("Embedded chip", None, Category.SIM),
        ("Solder-down MFF2", None, Category.SIM),
        (None, "SIM-Card", Category.SIM),
        ("Data top up", None, Category.TOPUP),
        ("Topup", None, Category.TOPUP),
        ("TOP-UP", None, Category.TOPUP),
        ("high data 50 GB", None, Category.HIGH_DATA_ADDON),
        ("Add-on", "High-Data IoT", Category.HIGH_DATA_ADDON),
        ("HighData 1 GB", None, Category.HIGH_DATA_ADDON),
        ("LifetimeFlat", None, Category.LIFETIME_FLAT),
        ("1NCE OS", None, Category.OS_SERVICE),
        ("1nce os entitlement", None, Category.OS_SERVICE),
        ("Device Locator", None, Category.OS_SERVICE),
        ("device inspector", None, Category.OS_SERVICE),
        ("Device Controller", None, Category.OS_SERVICE),
        ("Energy Saver", None, Category.OS_SERVICE),
        ("Device Integrator", None, Category.OS_SERVICE),
        ("Cloud Integrator", None, Category.OS_SERVICE),
        ("Device Authenticator", None, Category.OS_SERVICE),
        # Whole-word traps: none of these names a SIM, a chip or the OS.
        ("Simple Plan", "Simulation", Category.OTHER),
        ("Chipset Debugger", None, Category.OTHER),
        ("Microchips Inc. voucher", "Potato chipping", Category.OTHER),
        ("Mff20 adapter", None, Category.OTHER),
        ("1NCE OSLO office", None, Category.OTHER),
        ("Desktop upgrade", None, Category.OTHER),
        ("High-speed data", None, Category.OTHER),
        ("Lifetime warranty", "Flat rate", Category.OTHER),
        # Nothing to go on.
        (None, None, Category.OTHER),
        ("", "", Category.OTHER),
    ],
)
def test_categorize(name: str | None, material: str | None, expected: Category) -> None:
    assert categorize(name, material) is expected


def test_phrase_does_not_span_name_and_material() -> None:
    assert categorize("Support by 1NCE", "OS independent") is Category.OTHER
    assert categorize("Lifetime", "Flat") is Category.OTHER


@pytest.mark.parametrize(
    ("name", "material", "expected"),
    [
        ("SIM Industrial", None, "industrial"),
        ("SIM", "Business card", "business"),
        ("INDUSTRIAL chip", None, "industrial"),
        ("FlexSIM Business and Industrial", None, "business"),
        ("FlexSIM Industrial, not Business", None, "industrial"),
        ("FlexSIM Industrial", "SIM Business", "industrial"),
        ("FlexSIM", "SIM Business", "business"),
        ("FlexSIM - Standard", None, "industrial"),
        ("Lifetime Flat - Business", None, "business"),
        ("Lifetime Flat", None, None),
        ("Businesslike SIM", None, "industrial"),
        ("Businesslike support", None, None),
        (None, None, None),
    ],
)
def test_grade(name: str | None, material: str | None, expected: str | None) -> None:
    assert grade(name, material) == expected


@pytest.mark.parametrize(
    ("name", "material", "expected"),
    [
        ("FlexSIM", None, "2ff/3ff/4ff"),
        ("SIM 3-in-1", None, "2ff/3ff/4ff"),
        ("SIM", "3in1 plastic", "2ff/3ff/4ff"),
        ("SIM 3 in 1", None, "2ff/3ff/4ff"),
        ("SIM (2FF/3FF/4FF)", None, "2ff/3ff/4ff"),
        ("SIM chip", None, "mff2"),
        ("MFF2", None, "mff2"),
        ("FlexSIM MFF2 chip", "FlexSIM", "mff2"),
        ("FlexSIM", "SIM Chip", "mff2"),
        ("SIM card", None, None),
        # Only SIM hardware has a form factor.
        ("Lifetime Flat incl. FlexSIM", None, None),
        ("Lifetime Flat on MFF2 chip", None, None),
        ("Device Locator 3-in-1", None, None),
        (None, None, None),
    ],
)
def test_form_factor(name: str | None, material: str | None, expected: str | None) -> None:
    assert form_factor(name, material) == expected


def test_explicit_category_is_trusted() -> None:
    assert grade("Standard", None, category=Category.SIM) == "industrial"
    assert form_factor("FlexSIM", None, category=Category.OTHER) is None
    assert form_factor("MFF2", None, category=Category.SIM) == "mff2"
