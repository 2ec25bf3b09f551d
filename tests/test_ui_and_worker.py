"""What a user sees in the Temporal Web UI, and the worker process's lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from tests.conftest import steps

ROOT = Path(__file__).resolve().parent.parent


def summary_of(event: Any) -> str:
    payload = event.user_metadata.summary
    return json.loads(payload.data) if payload.data else ""


async def test_history_reads_as_the_saga(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Client
) -> None:
    await la.create(table, "doc", blobs={"html": b"<p>1</p>", "image": b"x" * 12_000})
    handle = await la.start_update(table, "doc", blobs={"html": b"<p>2</p>"}, set={"t": 1})
    await la.result(handle)
    history = await handle.fetch_history()
    started = history.events[0]
    assert summary_of(started) == f"update {table.table_name} pk=doc: html (8 B), set t"
    # Each step shows with its summary; the short ones ran as local activities (markers),
    # after the client read the item (its version is the pivot's condition).
    assert steps(history) == [
        ("largeattr.upload_blob", "upload html (8 B, inline)", 1),
        ("largeattr.update_item", "pivot: update item (if version 1)", 1),
        ("largeattr.delete_objects", "delete 1 old object", 1),
    ]
    assert not any(e.HasField("activity_task_scheduled_event_attributes") for e in history.events)
    assert handle.id == f"largeattr/{table.table_name}/pk=doc"
    description = await handle.describe()
    assert description.workflow_type == "largeattr.UpdateItem"


def _worker(
    temporal_address: str, aws: AwsConfig, queue: str, *extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    return subprocess.Popen(
        [
            *(sys.executable, "worker.py", "--address", temporal_address),
            *("--aws-endpoint-url", str(aws.endpoint_url), "--task-queue", queue),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_worker_process_serves_then_stops_gracefully(
    temporal: Client,
    temporal_address: str,
    aws: AwsConfig,
    table: LargeAttrTable,
    sig: signal.Signals,
) -> None:
    queue = f"worker-{table.table_name}"
    process = _worker(temporal_address, aws, queue)
    try:
        async with LargeAttrClient(temporal, task_queue=queue, aws=aws) as la:
            result = await la.create(table, "doc", blobs={"html": b"served"})
        assert result.version == 1
        process.send_signal(sig)
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        output = process.stdout.read().decode() if process.stdout else ""
        assert process.returncode == 0, output
        assert "worker stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("signals", [1, 2], ids=["grace-bounds-the-stop", "second-signal"])
async def test_a_worker_stuck_in_an_aws_call_still_stops(
    temporal: Client,
    temporal_address: str,
    aws: AwsConfig,
    table: LargeAttrTable,
    signals: int,
) -> None:
    """The worker's S3 endpoint accepts connections and never answers, so an upload hangs
    in its call (read timeout 60 s). SIGTERM with --shutdown-grace 2 ends the process within
    the grace and a little slack; a second signal ends it at once."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    hanging = AwsConfig(endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}")
    queue = f"stuck-{table.table_name}-{signals}"
    process = _worker(temporal_address, hanging, queue, "--shutdown-grace", "2")
    held: list[socket.socket] = []
    try:
        async with LargeAttrClient(temporal, task_queue=queue, aws=aws) as la:
            handle = await la.start_create(table, "doc", blobs={"html": b"stuck"})
            # The upload (a local activity: no activity task to see) connects to S3.
            connection = await asyncio.to_thread(_first_connection, silent, 30)
            assert connection is not None, "the worker never took the saga"
            held.append(connection)
            process.send_signal(signal.SIGTERM)
            if signals == 2:
                await asyncio.sleep(0.5)
                process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            while process.poll() is None and time.monotonic() - started < 20:
                await asyncio.sleep(0.1)
            took = time.monotonic() - started
            output = process.stdout.read().decode() if process.stdout else ""
            assert process.poll() is not None, f"still running after {took:.0f} s\n{output}"
            if signals == 2:
                assert process.returncode == 130, output
                assert took < 2.0, output
            else:
                assert process.returncode == 0, output
                assert took < 2 + 2.0 + 2.0, output  # grace, the SDK's slack, start-up noise
                assert "exiting (their attempts will time out" in output
            await handle.terminate("test over")
    finally:
        for connection in held:
            connection.close()
        silent.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def _first_connection(server: socket.socket, timeout: float) -> socket.socket | None:
    server.settimeout(timeout)
    try:
        return server.accept()[0]
    except TimeoutError:
        return None
