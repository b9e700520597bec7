"""Optional OpenTelemetry trace-context propagation (W3C ``traceparent`` / ``tracestate``).

Only when the ``opentelemetry`` package is importable; this library does not depend on it. With it,
:func:`trace_headers` returns the headers that carry the caller's current span, so server-side work
joins the caller's trace; without it (or with no active span) it returns ``{}`` at the cost of one
``None`` check. The module is looked up once, lazily, never at import of this library.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["otel_available", "reset", "trace_headers"]

_UNSET: Any = object()
_propagate: Any = _UNSET


def _propagator() -> Any:
    global _propagate
    if _propagate is _UNSET:
        try:
            _propagate = importlib.import_module("opentelemetry.propagate")
        except ImportError:
            _propagate = None
    return _propagate


def otel_available() -> bool:
    """Whether ``opentelemetry`` could be imported."""
    return _propagator() is not None


def trace_headers() -> dict[str, str]:
    """The trace-context headers of the current span (``{}`` without OpenTelemetry). Never raises."""
    propagate = _propagator()
    if propagate is None:
        return {}
    carrier: dict[str, str] = {}
    try:
        propagate.inject(carrier)
    except Exception:  # a misconfigured tracer must not break a request
        return {}
    return {str(name): str(value) for name, value in carrier.items()}


def reset() -> None:
    """Forget the lookup (for tests that install or remove a fake ``opentelemetry``)."""
    global _propagate
    _propagate = _UNSET
