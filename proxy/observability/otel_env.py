"""The ``OTEL_*`` variables the tracing SDK reads, checked before it reads them.

The SDK raises on some bad values (a traceback at start-up) and logs others whole in a warning
(``OTEL_EXPORTER_OTLP_HEADERS`` carries credentials). Checked here first, a bad value is a
configuration error naming its variable, like any ``PROXY_*`` one, and never quoted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# Read by the SDK only when tracing starts: OTEL_TRACES_EXPORTER names an exporter.
_COUNTS = ("OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
_DURATIONS = (
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
)
_HEADERS = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
# The samplers whose argument is a ratio (others take other arguments, or none).
_RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})
# One header as OTLP's environment form writes it (W3C Baggage): an HTTP token, "=", and a
# value of printable ASCII but for space, '"', ',', ';' and '\' (others are percent-encoded).
_HEADER = re.compile(r"[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+[ \t]*=[ \t]*[!#-+\--:<-\[\]-~]*[ \t]*")


def otel_problems(environ: Mapping[str, str]) -> list[str]:
    """One ``OTEL_X: what is wrong`` line per bad variable (values never quoted); [] if none.

    Only while tracing is asked for (``OTEL_TRACES_EXPORTER`` names an exporter and
    ``OTEL_SDK_DISABLED`` is not ``true``): otherwise the SDK reads none of them.
    """
    named = environ.get("OTEL_TRACES_EXPORTER", "").split(",")
    exporters = {name.strip().lower() for name in named} - {"", "none"}
    if not exporters or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    return [
        *_count_problems(environ),
        *_duration_problems(environ),
        *_header_problems(environ),
        *_sampler_problems(environ),
    ]


def _count_problems(environ: Mapping[str, str]) -> list[str]:
    problems = [
        f"{name}: must be a whole number above 0"
        for name in _COUNTS
        if (value := environ.get(name, "").strip()) and not (value.isdigit() and int(value) > 0)
    ]
    queue, batch = (environ.get(name, "").strip() for name in _COUNTS)
    if queue.isdigit() and batch.isdigit() and 0 < int(queue) < int(batch):
        problems.append(f"{_COUNTS[1]}: must not exceed {_COUNTS[0]}")
    return problems


def _duration_problems(environ: Mapping[str, str]) -> list[str]:
    return [
        f"{name}: must be a number of milliseconds, 0 or more"
        for name in _DURATIONS
        if (value := environ.get(name, "").strip()) and _number(value) is None
    ]


def _header_problems(environ: Mapping[str, str]) -> list[str]:
    return [
        f"{name}: must be comma-separated key=value pairs, values percent-encoded"
        for name in _HEADERS
        if (value := environ.get(name, "")).strip()
        and not all(
            _HEADER.fullmatch(entry) for entry in re.split(r"[ \t]*,[ \t]*", value) if entry
        )
    ]


def _sampler_problems(environ: Mapping[str, str]) -> list[str]:
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    argument = environ.get(_SAMPLER_ARG, "").strip()
    if sampler not in _RATIO_SAMPLERS or not argument:
        return []
    ratio = _number(argument)
    return [] if ratio is not None and ratio <= 1 else [f"{_SAMPLER_ARG}: must be from 0 to 1"]


def _number(text: str) -> float | None:
    """``text`` as a finite number of 0 or more, else None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
