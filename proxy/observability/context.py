"""What every log line and upstream call of a request knows about it: id, caller and trace.

The request pipeline sets one :class:`RequestContext` per request in :data:`REQUEST`; asyncio
copies context variables into the tasks a request starts, so a fetch it starts (and that
others may join) carries its context on. The log configuration adds the fields to every line.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

# W3C Trace Context, version 00: lower-case hex; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# tracestate: at most 32 list members; kept only when it is plain, bounded text.
_TRACESTATE = re.compile(r"^[\x20-\x7e]{1,512}$")


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A W3C trace context: the trace, the span that is the parent of our work, and flags."""

    trace_id: str
    span_id: str
    flags: str
    state: str | None = None

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header value that carries this context on."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: str | None, state: str | None = None) -> TraceParent | None:
    """Read a caller's ``traceparent`` (and ``tracestate``); None when absent or invalid.

    Only version 00 in its exact form is taken (surrounding spaces and tabs aside); anything
    else is ignored, never echoed. A ``tracestate`` is kept only with a valid parent.
    """
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip(" \t"))
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if state is not None:
        state = state.strip(" \t")
        if not _TRACESTATE.match(state):
            state = None
    return TraceParent(trace_id, span_id, flags, state)


@dataclass(slots=True)
class RequestContext:
    """The request being served: its id, its caller's name, and its trace (None: none known).

    ``caller`` is one of the configured key names, ``anonymous`` or ``unauthenticated``.
    ``trace`` is the caller's context, or the server span's when tracing is on.
    """

    request_id: str
    caller: str
    trace: TraceParent | None = None


REQUEST: ContextVar[RequestContext | None] = ContextVar("proxy_request", default=None)
"""The request the current task serves (None outside a request)."""

ANONYMOUS = "anonymous"
"""The caller of a request that needs no key, or of any request while no keys are set."""
UNAUTHENTICATED = "unauthenticated"
"""The caller of a request refused for a missing or wrong key."""


def name_caller(caller: str) -> None:
    """Count and log the current request under ``caller`` (a handler that identifies its own)."""
    context = REQUEST.get()
    if context is not None:
        context.caller = caller
