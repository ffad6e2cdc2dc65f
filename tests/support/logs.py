"""Capturing the service's log output in tests, as JSON records or console lines."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import structlog

from proxy.observability.logging import configure_logging

# Written by the change feed's own task when a request's fetch stored a new catalog: never
# part of that request, so they carry no request id, caller or trace.
BACKGROUND_EVENTS = frozenset({"catalog_changed"})


class Captured:
    """Log output written to a string, read as lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def clear(self) -> None:
        self.stream.seek(0)
        self.stream.truncate()

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        """Every line, parsed: each one must be a JSON object."""
        records = []
        for line in self.lines():
            record = json.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
        return records

    def serving(self) -> list[dict[str, Any]]:
        """Every line but those background tasks write on their own (``BACKGROUND_EVENTS``)."""
        return [record for record in self.records() if record["event"] not in BACKGROUND_EVENTS]

    def requests(self) -> list[dict[str, Any]]:
        """The access-log lines."""
        return [record for record in self.records() if record["event"] == "request"]


@contextlib.contextmanager
def capture(level: str, fmt: str) -> Iterator[Captured]:
    captured = Captured()
    # pytest-aiohttp's test server keeps aiohttp's own access logger on; the service runs its
    # runner with access_log=None (proxy/server.py), so those lines are the harness's, not ours.
    harness = logging.getLogger("aiohttp.access")
    was_disabled = harness.disabled
    harness.disabled = True
    configure_logging(level, fmt, stream=captured.stream, cache_loggers=False)
    try:
        yield captured
    finally:
        configure_logging("warning", "console", cache_loggers=False)
        structlog.contextvars.clear_contextvars()
        harness.disabled = was_disabled
