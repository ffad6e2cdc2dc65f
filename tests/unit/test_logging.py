"""``_redact``: secrets never reach a log line, whatever logged them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from proxy.observability.logging import _redact, configure_logging


def redact(event: dict[str, Any]) -> dict[str, Any]:
    return dict(_redact(None, "info", dict(event)))


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "Token",
        "client_secret",
        "SECRET",
        "authorization",
        "Authorization",
        "password",
        "redis_password",
        "api_key",
        "api_keys",
        "x_api_key",
    ],
)
def test_sensitive_keys_are_redacted(key: str) -> None:
    event = redact({"event": "something", key: "super-sensitive-value"})

    assert event[key] == "[redacted]"
    assert event["event"] == "something"


def test_other_keys_untouched() -> None:
    original = {
        "event": "catalog_stored",
        "etag": '"abc"',
        "size": 123,
        "user": "alice",
        "path": "/v1/products",
        "key": "1nce-proxy:abc:catalog:v1",
        "token_state": "valid",
    }

    assert redact(original) == original


def test_mixed_event_redacts_only_sensitive() -> None:
    event = redact(
        {"event": "e", "status": 401, "token": "t0k3n", "secret_hint": None, "method": "GET"}
    )
    assert event == {
        "event": "e",
        "status": 401,
        "token": "[redacted]",
        "secret_hint": "[redacted]",
        "method": "GET",
    }


def test_redaction_applies_to_rendered_lines() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, cache_loggers=False)
    try:
        fields = {"access_token": "eyJ-secret", "expires_in": 3600}
        structlog.get_logger("test").info("token_refreshed", **fields)
    finally:
        configure_logging("warning", "console", cache_loggers=False)

    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "token_refreshed"
    assert line["access_token"] == "[redacted]"
    assert line["expires_in"] == 3600
    assert "eyJ-secret" not in stream.getvalue()
