"""1NCE's published schemas, from the in-repo copies in tests/data, as JSON Schema validators."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from jsonschema import Draft4Validator, Draft202012Validator

from tests.support.settings import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
PRODUCT_DOCUMENT = DATA / "1nce-product-information.openapi.yml"
"""1NCE's OpenAPI document for ``GET /v1/products``, copied unchanged."""
TOKEN_ERROR_SCHEMA = DATA / "1nce-token-error.schema.json"
"""The error answer of 1NCE's token endpoint, transcribed from its Authorization API."""
# Every keyword the product document's schemas use. OpenAPI 3.0 schemas are JSON Schema Draft 4
# plus a few keywords of their own (nullable, discriminator...); with only these, a Draft 4
# validator checks all the document says, and a keyword added to the copy fails the test.
PRODUCT_SCHEMA_KEYWORDS = frozenset(
    {"title", "type", "properties", "items", "$ref", "description", "example"}
)


def product_document() -> dict[str, Any]:
    """Return the in-repo copy of 1NCE's Product Information OpenAPI document."""
    document: dict[str, Any] = yaml.safe_load(PRODUCT_DOCUMENT.read_text())
    return document


def products_validator(*, extra_fields: bool = True) -> Draft4Validator:
    """Return a validator for a ``GET /v1/products`` answer as 1NCE's document defines it.

    The schema is the document's own (a JSON array of ``Product``); ``extra_fields=False``
    also refuses fields it does not name, as strict generated models do.
    """
    document = product_document()
    answer = document["paths"]["/v1/products"]["get"]["responses"]["200"]["content"]
    components = copy.deepcopy(document["components"])
    if not extra_fields:
        for schema in components["schemas"].values():
            schema["additionalProperties"] = False
    # The document's references are "#/components/...": the root must hold the components.
    schema = {**answer["application/json"]["schema"], "components": components}
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def token_error_schema() -> dict[str, Any]:
    """Return the in-repo copy of 1NCE's token endpoint error answer (JSON Schema 2020-12)."""
    schema: dict[str, Any] = json.loads(TOKEN_ERROR_SCHEMA.read_text())
    return schema


def token_error_validator() -> Draft202012Validator:
    """Return a validator for 1NCE's token endpoint error answer."""
    schema = token_error_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_keywords(node: object) -> set[str]:
    """Return every keyword used in the schemas under ``node`` (property names excluded)."""
    if isinstance(node, list):
        return set().union(*(schema_keywords(item) for item in node))
    if not isinstance(node, dict):
        return set()
    keywords = set(node)
    for keyword, value in node.items():
        children = value.values() if keyword == "properties" else [value]
        keywords |= set().union(*(schema_keywords(child) for child in children))
    return keywords
