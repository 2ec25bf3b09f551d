"""A worker process's metrics (Prometheus) and logs (one JSON line per saga outcome)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig

from largeattr import (
    AwsConfig,
    ItemAlreadyExists,
    LargeAttrClient,
    LargeAttrTable,
    SagaFailed,
    keys,
)
from largeattr.activities import SagaActivities
from largeattr.errors import AccessDenied
from largeattr.failures import data_converter
from largeattr.sources import SourceRegistry
from largeattr.transfer import TransferConfig
from tests.conftest import client_with_worker, object_keys, steps
from tests.faults import Faults, client_error
from tests.test_ui_and_worker import _worker

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Sample = tuple[str, dict[str, str], float]


def scrape(port: int) -> list[Sample]:
    """Every sample of the Prometheus text exposition at /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(LABEL.findall(match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(
        value
        for metric, have, value in samples
        if metric == name and all(have.get(k) == v for k, v in labels.items())
    )


async def scrape_until(
    port: int, done: Callable[[list[Sample]], bool], timeout: float = 30
) -> list[Sample]:
    """Scrape until ``done`` holds (the exporter is read as it is: a saga's count may land
    just after its result), or until ``timeout``; the last scrape either way."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await asyncio.to_thread(scrape, port)
        if done(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


def ours(samples: list[Sample]) -> list[str]:
    return sorted({n for n, _, _ in samples if n.startswith("largeattr")})


async def test_worker_serves_saga_metrics_and_logs_one_json_line_per_outcome(
    temporal: Client, temporal_address: str, aws: AwsConfig, table: LargeAttrTable
) -> None:
    port = free_port()
    queue = f"metrics-{table.table_name}"
    process = _worker(
        temporal_address, aws, queue, "--metrics-port", str(port), "--log-format", "json"
    )
    try:
        async with LargeAttrClient(temporal, task_queue=queue, aws=aws) as la:
            await la.create(table, "doc", blobs={"html": b"<p>one</p>"})
            await la.update(table, "doc", blobs={"html": b"<p>two</p>"})
            with pytest.raises(ItemAlreadyExists):  # nothing written: refused
                await la.create(table, "doc", attributes={"title": "again"})
            with pytest.raises(ItemAlreadyExists):  # uploaded first, then undone
                await la.create(table, "doc", blobs={"html": b"<p>three</p>"})

        wanted = {("create", "committed"), ("update", "committed"), ("create", "refused")}
        wanted.add(("create", "compensated"))

        def seen(samples: list[Sample]) -> set[tuple[str, str]]:
            return {
                (op, out)
                for op, out in wanted
                if total(samples, "largeattr_sagas", operation=op, outcome=out) >= 1
            }

        samples = await scrape_until(port, lambda samples: seen(samples) == wanted)
        assert seen(samples) == wanted, ours(samples)
        sagas = [s for s in samples if s[0] == "largeattr_sagas"]
        assert {labels["task_queue"] for _, labels, _ in sagas} == {queue}
        assert {labels["workflow_type"] for _, labels, _ in sagas} == {
            "largeattr.CreateItem",
            "largeattr.UpdateItem",
        }
        assert total(samples, "largeattr_compensations", operation="create") == 1
        # create, update and the compensated create each sent one blob.
        sent = len(b"<p>one</p>") + len(b"<p>two</p>") + len(b"<p>three</p>")
        assert total(samples, "largeattr_bytes_uploaded") == sent
        assert total(samples, "largeattr_objects_deleted", reason="clean_up") == 1
        assert total(samples, "largeattr_objects_deleted", reason="compensation") == 1
        # The SDK's own metrics share the endpoint.
        assert total(samples, "temporal_workflow_completed", task_queue=queue) >= 2
        assert total(samples, "temporal_request") >= 1
        # Verdicts on the item are BENIGN failures: not in the SDK's failure counters.
        assert total(samples, "temporal_workflow_failed") == 0
        assert total(samples, "temporal_local_activity_execution_failed") == 0

        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, None, 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    outcomes = [line for line in lines if line.get("event") == "saga"]
    assert [(o["operation"], o["outcome"]) for o in outcomes] == [
        ("create", "committed"),
        ("update", "committed"),
        ("create", "refused"),
        ("create", "compensated"),
    ], text
    item = keys.item_path(table.spec, table.key("doc"))
    workflow_id = keys.workflow_id(table.spec, table.key("doc"))
    for outcome in outcomes:
        assert outcome["logger"] == "largeattr.saga"
        assert outcome["workflow_id"] == workflow_id
        assert outcome["item"] == item
        assert outcome["table"] == table.table_name
        assert isinstance(outcome["duration_s"], float)
        assert outcome["duration_s"] >= 0
        assert outcome["level"] == "INFO"  # committed, or a verdict on the item
        assert workflow_id in outcome["message"]
    assert "error" not in outcomes[0]
    assert outcomes[2]["error"] == outcomes[3]["error"] == "ItemAlreadyExists"
    compensations = [line for line in lines if line.get("event") == "compensation"]
    assert [
        (c["operation"], c["objects"], c["deleted"], c["missing"], c["kept"]) for c in compensations
    ] == [("create", 1, 1, 0, 0)]
    deleted = "compensation deleted 1 of 1 object"
    assert compensations[0]["message"] == f"{workflow_id} create: {deleted}"
    # An item that already exists is a verdict, not a crash: no traceback anywhere.
    assert "Traceback" not in text
    assert not [line for line in lines if "exception" in line]
    assert not [line for line in lines if line["level"] in ("WARNING", "ERROR")], text


async def test_a_settled_pivot_is_counted_with_whether_it_had_committed(
    temporal: Client, temporal_address: str, aws: AwsConfig, table: LargeAttrTable, s3: Any
) -> None:
    """A cancel request already in the history when the saga's first workflow task runs:
    the steps run, and the pivot, seeing the request, first settles whether an earlier run
    of them committed (a read: it did not), then the saga compensates and ends cancelled."""
    port = free_port()
    queue = f"settle-{table.table_name}"
    async with LargeAttrClient(temporal, task_queue=queue, aws=aws) as la:
        # No worker polls the queue yet, so the request is in before the first task.
        handle = await la.start_create(table, "doc", blobs={"html": b"<p>never</p>"})
        await handle.cancel()
        process = _worker(temporal_address, aws, queue, "--metrics-port", str(port))
        try:
            with pytest.raises(SagaFailed, match="did not finish"):
                await la.result(handle)
            samples = await scrape_until(
                port, lambda samples: total(samples, "largeattr_sagas", outcome="compensated") >= 1
            )
        finally:
            process.kill()
            process.wait()
    settled = [s for s in samples if s[0] == "largeattr_settled_pivots"]
    assert settled, ours(samples)
    assert total(samples, "largeattr_settled_pivots", operation="create", committed="false") == 1
    assert total(samples, "largeattr_settled_pivots", committed="true") == 0
    assert {(labels["task_queue"], labels["workflow_type"]) for _, labels, _ in settled} == {
        (queue, "largeattr.CreateItem")
    }
    assert total(samples, "largeattr_sagas", operation="create", outcome="compensated") == 1
    assert total(samples, "largeattr_objects_deleted", reason="compensation") == 1
    history = await handle.fetch_history()
    assert (
        "largeattr.read_item",
        f"settle: did the pivot commit? read {keys.item_path(table.spec, table.key('doc'))}",
        1,
    ) in steps(history)
    assert object_keys(s3, table) == set()


def test_a_metrics_port_in_use_is_refused_with_what_to_do(
    temporal_address: str, aws: AwsConfig
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _worker(temporal_address, aws, "unused", "--metrics-port", str(port))
        output, _ = process.communicate(timeout=60)
    text = output.decode()
    assert process.returncode == 2, text
    assert f"cannot serve metrics on 127.0.0.1:{port}" in text
    assert "choose another --metrics-port" in text
    assert "Traceback" not in text


@pytest.fixture(scope="module")
async def buffered_la(
    temporal_address: str,
    aws: AwsConfig,
    worker_faults: Faults,
    allowed_dir: Path,
    test_transfer: TransferConfig,
) -> AsyncIterator[tuple[LargeAttrClient, MetricBuffer]]:
    """A worker in this process whose metrics go to a buffer (no endpoint to scrape) and
    whose AWS clients carry the session's fault hooks: a pivot can lose its response."""
    buffer = MetricBuffer(100_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    temporal = await Client.connect(
        temporal_address, runtime=runtime, data_converter=data_converter()
    )
    s3, dynamodb = aws.clients()
    worker_faults.attach(s3, dynamodb)
    activities = SagaActivities(s3, dynamodb, test_transfer, SourceRegistry([allowed_dir]))
    async with client_with_worker(
        temporal, aws, test_transfer, "buffered", activities=activities
    ) as la:
        yield la, buffer


def settled(buffer: MetricBuffer) -> Counter[tuple[str, str]]:
    """The ``largeattr_settled_pivots`` increments drained from ``buffer``, by labels."""
    counts: Counter[tuple[str, str]] = Counter()
    for update in buffer.retrieve_updates():
        if update.metric.name == "largeattr_settled_pivots":
            labels = update.attributes
            counts[(str(labels["operation"]), str(labels["committed"]))] += int(update.value)
    return counts


async def test_a_pivot_whose_lost_answer_had_committed_is_counted_as_committed(
    buffered_la: tuple[LargeAttrClient, MetricBuffer], table: LargeAttrTable, faults: Faults
) -> None:
    """The pivot's first attempt commits and loses its response, later attempts are refused:
    the settling read finds the saga's own write (``committed="true"``). A first attempt
    that fails before it is sent, then refusals: the read finds the item as it was
    (``committed="false"``)."""
    la, buffer = buffered_la
    await la.create(table, "won", blobs={"html": b"v1"})
    await la.create(table, "lost", blobs={"html": b"v1"})
    settled(buffer)  # drop what the creates recorded

    def refuse_after_the_first(key: str) -> None:
        calls = itertools.count()
        faults.fail(
            "UpdateItem",
            times=-1,
            error=lambda: client_error("AccessDenied", 403),
            match=lambda params: params["Key"]["pk"] == {"S": key} and next(calls) >= 1,
        )

    faults.fail(
        "UpdateItem",
        times=1,
        error=lambda: client_error("InternalError", 500),
        phase="after",
        match=lambda params: params["Key"]["pk"] == {"S": "won"},
    )
    refuse_after_the_first("won")
    assert (await la.update(table, "won", blobs={"html": b"v2"})).version == 2
    assert settled(buffer) == Counter({("update", "true"): 1})

    faults.clear()
    faults.fail(
        "UpdateItem",
        times=1,
        error=lambda: client_error("InternalError", 500),
        match=lambda params: params["Key"]["pk"] == {"S": "lost"},
    )
    refuse_after_the_first("lost")
    with pytest.raises(AccessDenied):
        await la.update(table, "lost", blobs={"html": b"v2"})
    assert settled(buffer) == Counter({("update", "false"): 1})
