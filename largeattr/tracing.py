"""OpenTelemetry tracing of the sagas (optional extra ``largeattr[otel]``).

The Temporal SDK's ``TracingInterceptor`` on the client carries the caller's trace into the
workflow and its activities: one trace per operation, from ``StartWorkflow:largeattr.
CreateItem`` in the caller through ``RunWorkflow`` to each ``StartActivity`` / ``RunActivity``
step (uploads, the pivot, compensation, clean-up), in whichever worker ran it. Workers built
from a client with the interceptor use it too.

``LARGEATTR_TRACING`` (or ``worker.py --tracing``, ``LargeAttrClient.connect(tracing=...)``):

- ``off`` (default): no interceptor, nothing imported.
- ``otlp``: this process exports its spans over OTLP/HTTP; the exporter reads the standard
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, headers, and
  ``OTEL_SERVICE_NAME`` (default ``largeattr``) variables.
- ``console``: spans as JSON on stderr (to look, not to keep).
- ``global``: only the interceptor; spans go to the tracer provider your application set.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from largeattr.errors import InvalidInput

MODES = ("off", "otlp", "console", "global")
TRACING_ENV = "LARGEATTR_TRACING"

_installed: str | None = None
_lock = threading.Lock()


def tracing_mode(explicit: str | None = None) -> str:
    mode = (explicit or os.environ.get(TRACING_ENV) or "off").strip().lower()
    if mode not in MODES:
        raise InvalidInput(f"tracing must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def interceptors(mode: str | None = None, tracer: Any = None) -> list[Any]:
    """The client interceptors for ``mode`` (see the module doc): empty when off. With
    ``tracer``, spans go to it (tests pass an in-memory one)."""
    mode = tracing_mode(mode)
    if mode == "off" and tracer is None:
        return []
    try:
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError:
        raise InvalidInput("tracing needs OpenTelemetry: pip install 'largeattr[otel]'") from None
    if tracer is None and mode in ("otlp", "console"):
        _install_provider(mode)
    return [TracingInterceptor(tracer)]


def _install_provider(mode: str) -> None:
    """Set this process's tracer provider once (a second mode is refused: one provider)."""
    global _installed
    with _lock:
        if _installed == mode:
            return
        if _installed is not None:
            raise InvalidInput(f"tracing is already set up as {_installed!r} in this process")
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )

        service = os.environ.get("OTEL_SERVICE_NAME") or "largeattr"
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        if mode == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        _installed = mode


def flush() -> None:
    """Export the spans still buffered (before a process exits)."""
    if _installed is None:
        return
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(5_000)
