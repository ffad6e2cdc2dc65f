"""Optional OpenTelemetry traces: a server span per request, client spans for what it causes.

Tracing is on only when the ``otel`` extra is installed and the standard variables ask for
it (``OTEL_TRACES_EXPORTER`` set to ``otlp`` or ``console``, ``OTEL_SDK_DISABLED`` not
``true``); :func:`start_tracing` then returns an :class:`OtelTracing`, else `NO_TRACING`, a
:class:`Tracing` whose every method does nothing. OpenTelemetry is imported only by
:func:`start_tracing` once it has decided to trace, never at import time, so a service without
the extra, or with tracing off, pays nothing for this module.

The parts that make spans take a ``tracing`` argument (`NO_TRACING` by default) rather than
reading a global tracer: several services, each with its own provider, can share one process
(tests).
The public methods speak the proxy's own types (:class:`TraceParent`), so callers need no
OpenTelemetry import of their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from proxy import __version__
from proxy.observability.context import REQUEST, TraceParent

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, SpanContext, SpanKind, Tracer
    from opentelemetry.util.types import AttributeValue

logger = structlog.get_logger(__name__)

SERVICE_NAME = "product-proxy"
"""``service.name`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` name one."""
INSTRUMENTATION = "proxy"
"""The instrumentation scope of every span the service makes."""

_EXPORTERS = frozenset({"otlp", "console"})
_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"
_OTLP_PROTOCOL = "http/protobuf"
# Methods HTTP semantic conventions name as they are; any other is "_OTHER" (bounded names).
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


def start_tracing(*, processor: SpanProcessor | None = None) -> Tracing:
    """Start tracing if the environment asks for it and the SDK is installed; else `NO_TRACING`.

    ``processor`` replaces the exporter the environment names (tests pass an in-memory
    one); it turns tracing on by itself, unless ``OTEL_SDK_DISABLED`` is ``true``. The
    sampler (``OTEL_TRACES_SAMPLER``, ``_ARG``), the resource (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``) and the OTLP endpoint, headers and timeouts
    (``OTEL_EXPORTER_OTLP_*``) are read by the SDK itself.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return NO_TRACING
    exporters: list[str] = []
    if processor is None:
        exporters = _exporters(os.environ.get("OTEL_TRACES_EXPORTER", ""))
        if not exporters:
            return NO_TRACING
    try:
        provider = _provider()
        processors = [_batch_processor(name) for name in exporters]
    except ImportError as exc:
        logger.warning(
            "tracing_unavailable",
            reason="OTEL_TRACES_EXPORTER is set but the otel extra is not installed",
            missing=exc.name,
        )
        return NO_TRACING
    if processor is not None:
        processors.insert(0, processor)
    for each in processors:
        provider.add_span_processor(each)
    logger.info("tracing_started", exporters=exporters or ["custom"])
    return OtelTracing(provider)


def _exporters(value: str) -> list[str]:
    """Return the exporters ``OTEL_TRACES_EXPORTER`` names that this service can use, in order."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in _EXPORTERS and name != "none"]
    if unknown:
        logger.warning("tracing_exporter_unknown", exporters=unknown, known=sorted(_EXPORTERS))
    return list(dict.fromkeys(name for name in names if name in _EXPORTERS))


def _provider() -> TracerProvider:
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - only when tracing
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - only when tracing

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours fill gaps.
    resource = Resource.create({})
    defaults: dict[str, str] = {}
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        defaults["service.name"] = SERVICE_NAME
    if "service.version" not in resource.attributes:
        defaults["service.version"] = __version__
    # No sampler given: the SDK takes it from OTEL_TRACES_SAMPLER (parent-based by default).
    return TracerProvider(resource=resource.merge(Resource(defaults)))


def _batch_processor(name: str) -> SpanProcessor:
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415 - only when tracing
        BatchSpanProcessor,
        ConsoleSpanExporter,
    )

    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol and protocol != _OTLP_PROTOCOL:
        logger.warning("tracing_protocol_unsupported", protocol=protocol, used=_OTLP_PROTOCOL)
    return BatchSpanProcessor(OTLPSpanExporter())


class SpanHandle:
    """What the code inside a span may do with it: record an answer or a failure, propagate.

    This one belongs to no span (tracing is off): it records nothing, and passes on the trace
    context of the request being served, if it came with one.
    """

    __slots__ = ()

    def inject(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """Return ``headers`` plus the trace context of the request being served, if any."""
        request = REQUEST.get()
        trace = None if request is None else request.trace
        if trace is None:
            return headers
        traced = {**headers, _TRACEPARENT: trace.traceparent}
        if trace.state is not None:
            traced[_TRACESTATE] = trace.state
        return traced

    def answered(self, status: int) -> None:
        """Record a client request's response status (nothing, here)."""

    def failed(self, error_type: str) -> None:
        """Mark the span failed (nothing, here)."""


_NO_SPAN = SpanHandle()


class Tracing:
    """What the service asks of tracing; this one is tracing off: every method does nothing.

    `NO_TRACING` is the one instance; :class:`OtelTracing` is tracing on. Code that could skip
    work when nothing is traced asks :attr:`enabled`.
    """

    enabled = False
    """Whether spans are made at all."""

    def wrap_handler(self, handler: Handler, route: str) -> Handler:  # noqa: ARG002 - off
        """Return ``handler`` as it is: no server span."""
        return handler

    @contextlib.contextmanager
    def client_span(
        self,
        method: str,  # noqa: ARG002 - tracing is off
        url: str,  # noqa: ARG002
        *,
        route: str,  # noqa: ARG002
        endpoint: str,  # noqa: ARG002
    ) -> Iterator[SpanHandle]:
        """Yield a handle that only passes on the served request's trace context."""
        yield _NO_SPAN

    @contextlib.contextmanager
    def store_span(
        self,
        command: str,  # noqa: ARG002 - tracing is off
        operation: str,  # noqa: ARG002
    ) -> Iterator[SpanHandle | None]:
        """Yield None: no span."""
        yield None

    @contextlib.contextmanager
    def span(self, name: str, **attributes: AttributeValue) -> Iterator[SpanHandle]:  # noqa: ARG002
        """Yield a handle of no span."""
        yield _NO_SPAN

    def current(self) -> TraceParent | None:
        """Return None: work runs in no span."""
        return None

    def link(self, target: TraceParent | None, reason: str) -> None:
        """Link nothing."""

    def shutdown(self) -> None:
        """Nothing to export."""


NO_TRACING = Tracing()
"""Tracing off: the default of every part that could make spans."""


class OtelTracing(Tracing):
    """The service's tracer: wraps request handlers in server spans, makes the spans below.

    Made by :func:`start_tracing` when tracing is on. :meth:`shutdown` exports what is left.
    """

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        """Trace through ``provider``'s processors."""
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        self._provider = provider
        self._tracer: Tracer = provider.get_tracer(INSTRUMENTATION, __version__)
        # W3C trace context only: baggage or vendor headers of a caller are never passed on.
        self._propagator = TraceContextTextMapPropagator()

    def wrap_handler(self, handler: Handler, route: str) -> Handler:
        """Return ``handler`` run inside a server span named after the method and ``route``.

        The span's parent is the caller's trace context of the request (``REQUEST``); the
        request's context then names the server span, so logs and upstream calls show it.
        A ``route`` that is no path template (the catch-all's) names no ``http.route``.
        """
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - only when tracing

        tracer = self._tracer
        templated = route.startswith("/")

        async def traced(request: web.Request) -> web.StreamResponse:
            context = REQUEST.get()
            method, attributes = _server_attributes(request, route if templated else None)
            with tracer.start_as_current_span(
                f"{method} {route}" if templated else method,
                context=None if context is None else _parent(context.trace),
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                if context is not None:
                    context.trace = _trace_parent(span.get_span_context())
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    _server_answered(span, exc.status)
                    raise
                except BaseException as exc:
                    _failed(span, exc)
                    raise
                finally:
                    if context is not None:
                        # Read last: the catch-all names its caller while it runs.
                        span.set_attribute("caller", context.caller)
                _server_answered(span, response.status)
                return response

        return traced

    @contextlib.contextmanager
    def client_span(
        self, method: str, url: str, *, route: str, endpoint: str
    ) -> Iterator[SpanHandle]:
        """Open a client span for one upstream request; the handle injects its trace context.

        ``url`` is recorded without user name or password; failures set ``error.type``.
        """
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - only when tracing

        target = URL(url)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.full": str(target.with_user(None)),
            "url.template": route,
            "upstream.endpoint": endpoint,
        }
        if target.host is not None:
            attributes["server.address"] = target.host
        if target.port is not None:
            attributes["server.port"] = target.port
        with self._span(f"{method} {route}", SpanKind.CLIENT, attributes, current=True) as span:
            yield span

    @contextlib.contextmanager
    def store_span(self, command: str, operation: str) -> Iterator[SpanHandle | None]:
        """Open a client span for one shared-store (Redis) command; None outside any trace.

        Store calls of no traced work (the keeper's polls, the subscriber) make no traces of
        their own: they would be many, and tell little.
        """
        from opentelemetry.trace import SpanKind, get_current_span  # noqa: PLC0415

        if not get_current_span().get_span_context().is_valid:
            yield None
            return
        attributes: dict[str, AttributeValue] = {
            "db.system.name": "redis",
            "db.operation.name": command,
            "store.operation": operation,
        }
        with self._span(command, SpanKind.CLIENT, attributes, current=False) as span:
            yield span

    @contextlib.contextmanager
    def span(self, name: str, **attributes: AttributeValue) -> Iterator[SpanHandle]:
        """Open an internal span, current while the block runs (a fill, a wait for another's)."""
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - only when tracing

        with self._span(name, SpanKind.INTERNAL, attributes, current=True) as span:
            yield span

    def current(self) -> TraceParent | None:
        """Return the span work runs in now, to link to later; None outside any."""
        from opentelemetry.trace import get_current_span  # noqa: PLC0415 - only when tracing

        context = get_current_span().get_span_context()
        return _trace_parent(context) if context.is_valid else None

    def link(self, target: TraceParent | None, reason: str) -> None:
        """Link the current span to ``target`` (work it waited for that another started)."""
        from opentelemetry.trace import get_current_span  # noqa: PLC0415 - only when tracing

        span = get_current_span()
        if target is not None and span.is_recording():
            span.add_link(_span_context(target), {"link.reason": reason})

    def shutdown(self) -> None:
        """Export the spans still held and stop the exporters (blocks up to their timeouts)."""
        self._provider.shutdown()

    @contextlib.contextmanager
    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue],
        *,
        current: bool,
    ) -> Iterator[SpanHandle]:
        from opentelemetry.trace import use_span  # noqa: PLC0415 - only when tracing

        span = self._tracer.start_span(name, kind=kind, attributes=attributes)
        try:
            if current:
                with use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ):
                    yield _OtelSpan(span, self._propagator)
            else:
                yield _OtelSpan(span, self._propagator)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()


class _OtelSpan(SpanHandle):
    """A handle on an OpenTelemetry span."""

    __slots__ = ("_propagator", "_span")

    def __init__(self, span: Span, propagator: TextMapPropagator) -> None:
        """Handle ``span``; ``propagator`` injects its trace context into headers."""
        self._span = span
        self._propagator = propagator

    def inject(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Return ``headers`` plus ``traceparent`` (and ``tracestate``) naming this span."""
        from opentelemetry.trace import set_span_in_context  # noqa: PLC0415 - tracing is on

        carrier = dict(headers)
        self._propagator.inject(carrier, context=set_span_in_context(self._span))
        return carrier

    def answered(self, status: int) -> None:
        """Record a client request's response status; a 4xx or 5xx is the span's error."""
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self.failed(str(status))

    def failed(self, error_type: str) -> None:
        """Mark the span failed with a low-cardinality ``error.type``."""
        from opentelemetry.trace import StatusCode  # noqa: PLC0415 - tracing is on

        self._span.set_attribute("error.type", error_type)
        self._span.set_status(StatusCode.ERROR)


def _failed(span: Span, exc: BaseException) -> None:
    """Record an exception leaving a span: its type as ``error.type``, an event for errors."""
    from opentelemetry.trace import StatusCode  # noqa: PLC0415 - tracing is on

    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(StatusCode.ERROR, type(exc).__qualname__)
    if isinstance(exc, Exception):
        span.record_exception(exc)


def _parent(caller: TraceParent | None) -> Context | None:
    """Return the context whose span is the caller's (remote) one; None: no caller's."""
    if caller is None:
        return None
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context  # noqa: PLC0415

    return set_span_in_context(NonRecordingSpan(_span_context(caller)))


def _span_context(parent: TraceParent) -> SpanContext:
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState  # noqa: PLC0415

    return SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
        trace_state=TraceState.from_header([parent.state]) if parent.state else None,
    )


def _server_answered(span: Span, status: int) -> None:
    from opentelemetry.trace import StatusCode  # noqa: PLC0415 - only when tracing

    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        # Server spans: only a 5xx is this service's error (semantic conventions).
        span.set_attribute("error.type", str(status))
        span.set_status(StatusCode.ERROR)


def _trace_parent(context: SpanContext) -> TraceParent:
    state = context.trace_state.to_header() if context.trace_state else None
    return TraceParent(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        flags=f"{int(context.trace_flags) & 0xFF:02x}",
        state=state or None,
    )


def _server_attributes(
    request: web.Request, route: str | None
) -> tuple[str, dict[str, AttributeValue]]:
    """Return the span name's method and a server span's attributes, from the request alone."""
    method = request.method
    attributes: dict[str, AttributeValue] = {
        "url.path": request.path,
        "url.scheme": request.scheme,
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if method in _KNOWN_METHODS:
        attributes["http.request.method"] = method
    else:
        attributes["http.request.method"] = "_OTHER"
        attributes["http.request.method_original"] = method
        method = "HTTP"
    if route is not None:
        attributes["http.route"] = route
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(local, tuple) and len(local) >= 2 and isinstance(local[1], int):
        attributes["server.port"] = local[1]
    if request.remote:
        attributes["client.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent
    return method, attributes
