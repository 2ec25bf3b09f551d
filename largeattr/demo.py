"""``largeattr demo``: the whole story on the embedded stack, end to end.

Starts Temporal (with its Web UI) and an S3 + DynamoDB endpoint on 127.0.0.1, creates the
bucket and table, runs a worker, then creates, updates, reads and deletes an item with two
large attributes, printing each workflow's id and Web UI link.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

from largeattr.client import Blob, LargeAttrClient
from largeattr.cliout import result_lines
from largeattr.config import AwsConfig, connect_temporal
from largeattr.devstack import (
    EMULATOR_REGION,
    Stack,
    connect_when_serving,
    embedded_stack,
    workflow_url,
)
from largeattr.messages import ItemResult
from largeattr.provision import setup
from largeattr.table import LargeAttrTable

DEMO_TABLE = LargeAttrTable(
    table_name="largeattr-demo",
    partition_key="pk",
    large_attributes=("html", "image"),
    bucket="largeattr-demo",
    prefix="documents",
)


def _image(seed: str, size: int) -> bytes:
    """Deterministic pseudo-image bytes (big enough to go by reference, not inline)."""
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@dataclass(frozen=True)
class Target:
    """Where the demo runs: the embedded stack, or one already running (``--address``,
    ``--aws-endpoint-url``)."""

    temporal_address: str
    aws: AwsConfig
    ui_url: str | None
    namespace: str = "default"
    embedded: bool = True

    @staticmethod
    def of(stack: Stack) -> Target:
        return Target(stack.temporal_address, stack.aws(), stack.ui_url, stack.namespace)


async def _step(
    target: Target, title: str, handle: WorkflowHandle[Any, ItemResult], la: LargeAttrClient
) -> ItemResult:
    result = await la.result(handle)
    run_id = handle.result_run_id or ""
    url = (
        workflow_url(target.ui_url, target.namespace, handle.id, run_id) if target.ui_url else None
    )
    print(f"\n{title}")
    for line in result_lines(result, handle.id, url):
        print(line)
    return result


async def run_demo(target: Target, keep: bool) -> int:
    from largeattr.worker import build_worker

    aws = target.aws
    s3, dynamodb = aws.clients()
    setup(s3, dynamodb, DEMO_TABLE, region=s3.meta.region_name or EMULATOR_REGION)
    if target.embedded:
        temporal = await connect_when_serving(target.temporal_address)
    else:
        temporal = await connect_temporal(target.temporal_address, target.namespace)
    worker, executor = build_worker(temporal, aws=aws)
    table = DEMO_TABLE
    key = "doc-1"
    async with worker, LargeAttrClient(temporal, aws=aws) as la:
        # A demo run starts clean (the emulator keeps data only while it runs).
        existing = await la.get(table, key)
        if existing is not None:
            await la.delete(table, key)
        html_v1 = b"<html><body><h1>Hello, Alice</h1></body></html>"
        image_v1 = _image("cat", 300_000)
        await _step(
            target,
            "1. create: html inline, image (300 KB) uploaded from this process",
            await la.start_create(
                table,
                key,
                blobs={"html": Blob(html_v1, content_type="text/html"), "image": image_v1},
                attributes={"title": "Greeting", "tags": {"demo"}},
            ),
            la,
        )
        html_v2 = b"<html><body><h1>Hello, Bob</h1></body></html>"
        await _step(
            target,
            "2. update: new html, image unchanged; the old html object is deleted",
            await la.start_update(
                table,
                key,
                blobs={"html": Blob(html_v2, content_type="text/html")},
                set={"title": "Greeting, revised"},
            ),
            la,
        )
        item = await la.get(table, key)
        assert item is not None
        html = await la.read_blob(item.blob("html"))
        image = await la.read_blob(item.blob("image"))
        ok = html == html_v2 and image == image_v1
        print("\n3. read back (bytes verified against their SHA-256)")
        print(f"  item        : version {item.version}, attributes {item.attributes}")
        print(f"  html        : {html.decode()}")
        print(f"  image       : {len(image):,} bytes, equal to what was written: {ok}")
        print(f"  presigned   : {la.presigned_url(item.blob('image'), expires_in=600)[:80]}...")
        await _step(
            target,
            "4. delete: the item, then its objects",
            await la.start_delete(table, key, expected_version=item.version),
            la,
        )
        left = s3.list_objects_v2(Bucket=table.bucket, Prefix=f"{table.prefix}/").get("KeyCount", 0)
        print(f"\nobjects left under s3://{table.bucket}/{table.prefix}/: {left}")
        ok = ok and left == 0 and await la.get(table, key) is None
        if target.ui_url:
            print(f"Web UI: {target.ui_url}/namespaces/{target.namespace}/workflows")
        if keep:
            print("\nThe stack and the worker keep running; press Ctrl-C to stop.")
            await _until_signal()
        elif target.embedded:
            print(
                "\nThe embedded stack stops with the demo, and the links with it: run "
                "`largeattr demo --keep` to keep them alive (Ctrl-C stops)."
            )
    executor.shutdown(wait=False)
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(
    keep: bool = False,
    data_dir: str | os.PathLike[str] = ".largeattr",
    existing: Target | None = None,
) -> int:
    """The demo on its own embedded stack, or on ``existing`` (nothing is started then)."""
    if existing is not None:
        print(f"Temporal    : {existing.temporal_address} (namespace {existing.namespace})")
        print(f"S3+DynamoDB : {existing.aws.endpoint_url or 'AWS'}")
        return asyncio.run(run_demo(existing, keep))
    with embedded_stack(Path(data_dir)) as stack:
        print(f"Temporal    : {stack.temporal_address} (Web UI {stack.ui_url})")
        print(f"S3+DynamoDB : {stack.aws_endpoint} (moto server)")
        return asyncio.run(run_demo(Target.of(stack), keep))
