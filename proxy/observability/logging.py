"""structlog set-up: one JSON object a line (or console lines), stdlib logs routed through it."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import Processor

from proxy.observability.context import REQUEST

# Keys whose values are dropped from every log line, whatever logged them.
_SENSITIVE = ("authorization", "token", "secret", "password", "api_key")


def _redact(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in event:
        lowered = key.lower()
        if any(word in lowered for word in _SENSITIVE) and key != "token_state":
            event[key] = "[redacted]"
    return event


def _add_request_context(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Every line written while serving a request (or a fetch it started) says which, for
    # whom, and in which trace (docs/observability.md, "Log fields").
    context = REQUEST.get()
    if context is not None:
        event.setdefault("request_id", context.request_id)
        event.setdefault("caller", context.caller)
        trace = context.trace
        if trace is not None:
            event.setdefault("trace_id", trace.trace_id)
            event.setdefault("span_id", trace.span_id)
    return event


class _ParserErrors(logging.Filter):
    """Turns aiohttp's reports of unparseable requests into one short line without traceback.

    Every handler failure is caught by the request pipeline (``proxy.web.pipeline``), so what
    reaches aiohttp's server logger with an HTTP parsing error is malformed client traffic,
    which must not be able to flood the logs with tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "malformed_request_refused"
            record.args = ()
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.__dict__["error"] = type(error).__name__
        return True


def configure_logging(
    level: str, fmt: str, *, stream: TextIO | None = None, cache_loggers: bool = True
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) as JSON or console lines."""
    shared: list[Processor] = [
        _add_request_context,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    # The console renderer formats exceptions itself (and some structlog releases warn when
    # format_exc_info runs ahead of it); JSON lines need them as a plain string field.
    renderers: list[Processor] = (
        [structlog.dev.ConsoleRenderer(colors=False)]
        if fmt == "console"
        else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=cache_loggers,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    server_logger = logging.getLogger("aiohttp.server")
    for existing in [f for f in server_logger.filters if isinstance(f, _ParserErrors)]:
        server_logger.removeFilter(existing)
    server_logger.addFilter(_ParserErrors())
