"""OpenTelemetry tracing (largeattr.tracing): one trace per operation, from the caller's
start through the workflow to every step, also across processes over OTLP."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable, tracing
from largeattr.errors import InvalidInput, TableNotFound
from largeattr.failures import data_converter
from largeattr.transfer import TransferConfig
from tests.conftest import client_with_worker
from tests.test_ui_and_worker import _worker


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
async def traced(temporal_address: str, spans: InMemorySpanExporter) -> Client:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("largeattr-tests")
    client: Client = await Client.connect(
        temporal_address,
        data_converter=data_converter(),
        interceptors=tracing.interceptors("global", tracer=tracer),
    )
    return client


def by_trace(finished: tuple[ReadableSpan, ...], root: str) -> dict[int, list[ReadableSpan]]:
    """The finished spans of each trace that has a span named ``root``."""
    roots = {s.context.trace_id for s in finished if s.name == root}
    traces: dict[int, list[ReadableSpan]] = {t: [] for t in roots}
    for span in finished:
        if span.context.trace_id in traces:
            traces[span.context.trace_id].append(span)
    return traces


async def test_one_trace_runs_from_the_caller_through_every_step(
    traced: Client,
    spans: InMemorySpanExporter,
    aws: AwsConfig,
    new_table: Any,
    test_transfer: TransferConfig,
) -> None:
    table = new_table()
    # Sandboxed, as `worker.py --sandboxed` runs: the interceptor must work there too.
    async with client_with_worker(traced, aws, test_transfer, "traced", sandboxed=True) as la:
        spans.clear()
        await la.create(table, "doc", blobs={"html": b"<p>traced</p>"})
        missing = LargeAttrTable(**{**table.__dict__, "table_name": table.table_name + "-x"})
        with pytest.raises(TableNotFound):
            await la.create(missing, "doc", blobs={"html": b"<p>undone</p>"})

    traces = by_trace(spans.get_finished_spans(), "StartWorkflow:largeattr.CreateItem")
    assert len(traces) == 2
    names = [{s.name for s in trace} for trace in traces.values()]
    committed = next(
        n
        for n in names
        if "RunActivity:largeattr.put_item" in n and "RunActivity:largeattr.compensate" not in n
    )
    compensated = next(n for n in names if "RunActivity:largeattr.compensate" in n)
    for steps in (committed, compensated):
        assert {
            "StartWorkflow:largeattr.CreateItem",
            "RunWorkflow:largeattr.CreateItem",
            "StartActivity:largeattr.upload_blob",
            "RunActivity:largeattr.upload_blob",
        } <= steps
    assert "CompleteWorkflow:largeattr.CreateItem" in committed
    # Every span of a trace descends from the caller's start span.
    for trace in traces.values():
        ids = {s.context.span_id: s for s in trace}
        (start,) = [s for s in trace if s.name.startswith("StartWorkflow:")]
        for span in trace:
            node = span
            while node.parent is not None and node.parent.span_id in ids:
                node = ids[node.parent.span_id]
            assert node is start, f"{span.name} is not under {start.name}"


def test_tracing_modes_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing.interceptors("off") == []
    monkeypatch.setenv(tracing.TRACING_ENV, "jaeger")
    with pytest.raises(InvalidInput, match="one of off, otlp, console, global"):
        tracing.interceptors()


class Collector:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1: what a worker exported."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, bytes]] = []  # (name, trace id)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans += [(s.name, s.trace_id) for s in scope.spans]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.server.shutdown()
    found.server.server_close()


async def test_a_worker_process_exports_its_spans_into_the_callers_trace(
    traced: Client,
    spans: InMemorySpanExporter,
    temporal_address: str,
    aws: AwsConfig,
    table: LargeAttrTable,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    queue = f"otlp-{table.table_name}"
    process = _worker(temporal_address, aws, queue, "--tracing", "otlp")
    try:
        async with LargeAttrClient(traced, task_queue=queue, aws=aws) as la:
            spans.clear()
            # Bounded: a worker process that died at start would leave it waiting.
            await asyncio.wait_for(la.create(table, "doc", blobs={"html": b"<p>x</p>"}), 60)
        (start,) = [
            s for s in spans.get_finished_spans() if s.name == "StartWorkflow:largeattr.CreateItem"
        ]
        trace_id = start.context.trace_id.to_bytes(16, "big")
        wanted = {"RunWorkflow:largeattr.CreateItem", "RunActivity:largeattr.put_item"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            exported = {name for name, trace in collector.spans if trace == trace_id}
            if wanted <= exported:
                break
            await asyncio.sleep(0.2)
        assert wanted <= exported, collector.spans
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
