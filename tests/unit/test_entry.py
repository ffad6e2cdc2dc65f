"""CatalogEntry: ETag derivation and the shared-store byte format."""

from __future__ import annotations

import json

import pytest

from proxy.cache.entry import CatalogEntry, CorruptEntryError

BODY = b'[{"id": 1, "product": "Caf\xc3\xa9 SIM"}]\n[second line]\r\n\x00\xff\xfe end'


def test_etag_is_quoted_and_stable_for_same_body() -> None:
    first = CatalogEntry.create(b"[1]", "application/json", 1.0)
    second = CatalogEntry.create(b"[1]", "text/plain", 99.0)

    assert first.etag == second.etag
    assert first.etag.startswith('"')
    assert first.etag.endswith('"')
    assert len(first.etag) == 34  # 16-byte digest in hex, quoted
    assert '"' not in first.etag[1:-1]


def test_etag_differs_for_different_body() -> None:
    assert (
        CatalogEntry.create(b"[1]", "application/json", 1.0).etag
        != CatalogEntry.create(b"[2]", "application/json", 1.0).etag
    )


def test_create_keeps_fields() -> None:
    entry = CatalogEntry.create(BODY, "application/json; charset=utf-8", 1700000000.25)

    assert entry.body == BODY
    assert entry.content_type == "application/json; charset=utf-8"
    assert entry.fetched_at == 1700000000.25


def test_round_trip_keeps_body_bytes_exactly() -> None:
    entry = CatalogEntry.create(BODY, "application/json; charset=utf-8", 1700000000.25)

    decoded = CatalogEntry.from_bytes(entry.to_bytes())

    assert decoded == entry
    assert decoded.body == BODY


def test_round_trip_empty_body_and_integer_time() -> None:
    entry = CatalogEntry.create(b"", "application/json", 5)

    decoded = CatalogEntry.from_bytes(entry.to_bytes())

    assert decoded.body == b""
    assert decoded.fetched_at == 5.0
    assert isinstance(decoded.fetched_at, float)


def test_serialised_form_is_header_line_then_body() -> None:
    entry = CatalogEntry.create(b"a\nb", "application/json", 2.5)

    header, _, body = entry.to_bytes().partition(b"\n")

    assert body == b"a\nb"
    assert json.loads(header) == {
        "v": 1,
        "ct": "application/json",
        "etag": entry.etag,
        "at": 2.5,
    }


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"no newline at all",
        b"[1,2,3]",
        b"not json\nbody",
        b"\xff\xfe\xfd\nbody",
        b"[1]\nbody",
        b"null\nbody",
        b'{"v": 2, "ct": "a", "etag": "\\"e\\"", "at": 1}\nbody',
        b'{"ct": "a", "etag": "\\"e\\"", "at": 1}\nbody',
        b'{"v": 1, "etag": "\\"e\\"", "at": 1}\nbody',
        b'{"v": 1, "ct": "a", "at": 1}\nbody',
        b'{"v": 1, "ct": "a", "etag": "\\"e\\""}\nbody',
        b'{"v": 1, "ct": "a", "etag": "\\"e\\"", "at": "yesterday"}\nbody',
        b'{"v": 1, "ct": 7, "etag": "\\"e\\"", "at": 1}\nbody',
        b'{"v": 1, "ct": "a", "etag": null, "at": 1}\nbody',
    ],
)
def test_corrupt_or_foreign_bytes_raise(data: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        CatalogEntry.from_bytes(data)


def test_corrupt_entry_error_is_value_error() -> None:
    assert issubclass(CorruptEntryError, ValueError)


def test_deeply_nested_header_is_corrupt_not_a_crash() -> None:
    with pytest.raises(CorruptEntryError):
        CatalogEntry.from_bytes(b"[" * 100_000 + b"\n[]")
