"""Which family of the 1NCE catalog a product belongs to, told by its product and material names.

Every rule is a case-insensitive regular expression tried against the product name and against
the material name separately (so a phrase never spans the end of one and the start of the
other); a rule matches when either name matches it.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Category(StrEnum):
    """A catalog family; the declaration order is the matching precedence and the listing order."""

    LIFETIME_FLAT = "lifetime_flat"
    SIM = "sim"
    TOPUP = "topup"
    HIGH_DATA_ADDON = "high_data_addon"
    OS_SERVICE = "os_service"
    OTHER = "other"


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Word boundaries keep "Simple", "Chipset" or "Topupper" from counting; plurals ("SIMs",
# "chips") still count. "FlexSIM" is a brand name and matches anywhere.
_SIM_WORD = r"\bsims?\b"
_CHIP_WORD = r"\bchips?\b"
_MFF2_WORD = r"\bmff2\b"
_OS_SERVICES = (
    "device locator",
    "device inspector",
    "device controller",
    "energy saver",
    "device integrator",
    "cloud integrator",
    "device authenticator",
)
_OS_SERVICE_NAMES = "|".join(name.replace(" ", r"[\s-]+") for name in _OS_SERVICES)

_RULES: tuple[tuple[Category, re.Pattern[str]], ...] = (
    (Category.LIFETIME_FLAT, _rule(r"\blifetime[\s-]*flat\b")),
    (Category.SIM, _rule(rf"{_SIM_WORD}|flexsim|{_CHIP_WORD}|{_MFF2_WORD}")),
    (Category.TOPUP, _rule(r"\btop[\s-]?ups?\b")),
    (Category.HIGH_DATA_ADDON, _rule(r"\bhigh[\s-]*data\b")),
    (Category.OS_SERVICE, _rule(rf"\b1nce\s+os\b|\b(?:{_OS_SERVICE_NAMES})\b")),
)
_GRADE = _rule(r"\b(industrial|business)\b")
_MFF2 = _rule(rf"{_MFF2_WORD}|{_CHIP_WORD}")
_PLASTIC_3IN1 = _rule(r"\b3[\s-]?in[\s-]?1\b|\b2ff\s*/\s*3ff\s*/\s*4ff\b|flexsim")

GRADE_INDUSTRIAL = "industrial"
"""The grade of SIM hardware built for harsh conditions (the grade 1NCE's standard FlexSIM has)."""
FORM_FACTOR_MFF2 = "mff2"
"""The form factor of a SIM soldered on the board (MFF2 chip)."""
FORM_FACTOR_3IN1 = "2ff/3ff/4ff"
"""The form factor of the 3-in-1 plastic SIM card that breaks out to 2FF, 3FF or 4FF."""


def _names(name: str | None, material: str | None) -> tuple[str, ...]:
    return tuple(text for text in (name, material) if text)


def categorize(name: str | None, material: str | None) -> Category:
    """Return the category the product and material names place a product in.

    The first matching rule wins, in this precedence: ``lifetime_flat`` ("Lifetime Flat"),
    ``sim`` (the whole word "SIM", "FlexSIM", the whole word "chip", or "MFF2"), ``topup``
    ("Top-up", "Top up", "Topup"), ``high_data_addon`` ("High Data"), ``os_service`` ("1NCE OS"
    or an OS service name such as "Device Locator"); anything else is ``other``. So "Lifetime
    Flat incl. FlexSIM" is a Lifetime Flat and "FlexSIM Top-up" is a SIM.
    """
    texts = _names(name, material)
    for category, pattern in _RULES:
        if any(pattern.search(text) for text in texts):
            return category
    return Category.OTHER


def grade(
    name: str | None, material: str | None, *, category: Category | None = None
) -> str | None:
    """Return the hardware grade the names tell: ``"industrial"``, ``"business"`` or ``None``.

    The whole word "Industrial" or "Business" decides, the first occurrence winning (the product
    name is read before the material name), whatever the category. When neither word appears, a
    product of category ``sim`` is ``"industrial"``: 1NCE's standard FlexSIM is an
    industrial-grade card. ``category`` may be passed when already known; it is worked out from
    the names otherwise.
    """
    for text in _names(name, material):
        found = _GRADE.search(text)
        if found is not None:
            return found.group(1).lower()
    if category is None:
        category = categorize(name, material)
    return GRADE_INDUSTRIAL if category is Category.SIM else None


def form_factor(
    name: str | None, material: str | None, *, category: Category | None = None
) -> str | None:
    """Return the SIM form factor the names tell: ``"mff2"``, ``"2ff/3ff/4ff"`` or ``None``.

    Only products of category ``sim`` have a form factor; for every other category (a Lifetime
    Flat or a top-up that mentions a FlexSIM in passing is not hardware) it is ``None``. "MFF2"
    or the whole word "chip" means ``"mff2"``; otherwise "3-in-1", "3in1", "2FF/3FF/4FF" or
    "FlexSIM" means ``"2ff/3ff/4ff"``, since a FlexSIM with no chip mentioned is the 3-in-1
    plastic card. ``category`` may be passed when already known.
    """
    if category is None:
        category = categorize(name, material)
    if category is not Category.SIM:
        return None
    texts = _names(name, material)
    if any(_MFF2.search(text) for text in texts):
        return FORM_FACTOR_MFF2
    if any(_PLASTIC_3IN1.search(text) for text in texts):
        return FORM_FACTOR_3IN1
    return None
