"""Fault switches of the 1NCE emulator: what goes wrong, and for how long."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# The switches grouped by the kind of value they take, to validate settings sent over HTTP.
_SECONDS = frozenset({"products_latency", "token_latency"})
_STATUSES = frozenset({"products_status", "token_status"})
_COUNTS = frozenset({"rate_limit_retry_after", "token_rate_limit_retry_after", "times"})
_SIZES = frozenset({"oversized_body", "gzip_bomb", "token_oversized_body"})
_FLAGS = frozenset({"hang", "malformed_body", "wrong_shape", "reject_all_tokens", "token_hang"})
_LOCATIONS = frozenset({"redirect_to", "token_redirect_to"})
_HEADER_VALUES = frozenset({"retry_after_header"})
_TEXTS = _LOCATIONS | _HEADER_VALUES

# The switches that act on the products endpoint; `times` switches them off together.
_PRODUCTS_FAULTS = (
    "products_latency",
    "products_status",
    "rate_limit_retry_after",
    "hang",
    "malformed_body",
    "wrong_shape",
    "reject_all_tokens",
    "redirect_to",
    "oversized_body",
    "gzip_bomb",
)

_LOWEST_ERROR_STATUS = 400
_HIGHEST_STATUS = 599


@dataclass
class Faults:
    """The faults the emulator injects; every switch defaults to off.

    `times`, when set, limits the products faults to the next N products requests: after them
    every products fault (and `times` itself) switches off. Token faults and
    `retry_after_header` are not limited by it.
    """

    products_latency: float = 0.0
    """Seconds added before answering a products request."""
    token_latency: float = 0.0
    """Seconds added before answering a token request."""
    products_status: int | None = None
    """HTTP error status every products request gets (401/403/404/429 with an empty body)."""
    rate_limit_retry_after: int | None = None
    """Answer products requests with 429 and `Retry-After` set to this many seconds."""
    hang: bool = False
    """Products requests never get an answer (until the client leaves or the app stops)."""
    malformed_body: bool = False
    """Products requests get 200 with a body that is not valid JSON."""
    wrong_shape: bool = False
    """Products requests get 200 with valid JSON that is not an array of products."""
    reject_all_tokens: bool = False
    """Products requests get 401 whatever the token, while tokens are still issued."""
    redirect_to: str | None = None
    """Answer products requests with 302 and this `Location`, whatever the token."""
    oversized_body: int | None = None
    """Products requests get 200 with a JSON-looking body of this many bytes, sent chunked
    (no `Content-Length`) and generated as it is sent."""
    gzip_bomb: int | None = None
    """Products requests get 200 with `Content-Encoding: gzip`, sent chunked, whose body
    inflates to this many bytes (zeros, about 1000 times smaller on the wire)."""
    token_status: int | None = None
    """HTTP error status every token request gets (400 with the CognitoAuthenticationError body)."""
    token_rate_limit_retry_after: int | None = None
    """Answer token requests with 429 and `Retry-After` set to this many seconds."""
    token_hang: bool = False
    """Token requests never get an answer (until the client leaves or the app stops)."""
    token_redirect_to: str | None = None
    """Answer token requests with 302 and this `Location`, whatever the credentials."""
    token_oversized_body: int | None = None
    """Token requests with valid credentials get 200 with a JSON-looking body of this many
    bytes, sent chunked (no `Content-Length`) and generated as it is sent."""
    retry_after_header: str | None = None
    """The exact `Retry-After` value of every 429 the emulator sends (products and token),
    instead of the number of seconds; e.g. an HTTP-date, a negative number or garbage."""
    times: int | None = None
    """How many more products requests suffer the products faults; None means no limit."""

    def reset(self) -> None:
        """Switch every fault off."""
        for field in fields(self):
            setattr(self, field.name, field.default)

    def load(self, settings: object) -> None:
        """Replace every switch with those of a JSON object; switches it leaves out go off.

        Raises TypeError or ValueError, changing nothing, when the object names an unknown
        switch or gives a value of the wrong type or range.
        """
        if not isinstance(settings, dict):
            raise TypeError("faults must be a JSON object")
        known = {field.name for field in fields(self)}
        unknown = sorted(str(name) for name in settings if name not in known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        checked = {name: _checked(name, value) for name, value in settings.items()}
        self.reset()
        for name, value in checked.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """Return the switches as a JSON-ready mapping."""
        return asdict(self)

    def products_faulted(self) -> bool:
        """Whether any fault acting on the products endpoint is on."""
        defaults = Faults()
        return any(getattr(self, name) != getattr(defaults, name) for name in _PRODUCTS_FAULTS)

    def for_products_request(self) -> Faults:
        """Return the faults one products request suffers, counting it against `times`."""
        if self.times is not None and self.times <= 0:
            self._clear_products_faults()
        applied = replace(self)
        if self.times is not None and self.products_faulted():
            self.times -= 1
            if self.times <= 0:
                self._clear_products_faults()
        return applied

    def _clear_products_faults(self) -> None:
        defaults = Faults()
        for name in (*_PRODUCTS_FAULTS, "times"):
            setattr(self, name, getattr(defaults, name))


def _checked(name: str, value: object) -> object:
    """Return a switch's value from JSON, or raise TypeError/ValueError naming the switch."""
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false")
        return value
    if name in _TEXTS:
        return _header_value(name, value, empty_ok=name in _HEADER_VALUES)
    # bool is an int subclass in Python, but `true` is no number of seconds, status or count.
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not true or false")
    if name in _SECONDS:
        seconds = float(value) if isinstance(value, int | float) else math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0")
        return seconds
    if value is None:
        return None
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an integer or null")
    return _integer(name, value)


def _integer(name: str, value: int) -> int:
    """Return a status, count or size after checking its range; raise naming the switch."""
    if name in _STATUSES and not _LOWEST_ERROR_STATUS <= value <= _HIGHEST_STATUS:
        raise ValueError(f"{name} must be an HTTP error status (400-599) or null")
    if (name in _COUNTS or name in _SIZES) and value < 0:
        raise ValueError(f"{name} must be >= 0 or null")
    return value


def _header_value(name: str, value: object, *, empty_ok: bool) -> str | None:
    """Return a string that can be sent as a header value, or None; raise naming the switch."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string or null")
    if not value and not empty_ok:
        raise ValueError(f"{name} must not be empty")
    # A line break would end the header; aiohttp refuses to send one anyway.
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"{name} must be printable ASCII on one line")
    return value
