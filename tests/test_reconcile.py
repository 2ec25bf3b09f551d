"""The reconcile workflow removes what sagas could not clean, and nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from largeattr import AccessDenied, LargeAttrClient, LargeAttrTable, SagaOptions, Storage
from largeattr.check import check_storage
from largeattr.provision import ensure_table
from largeattr.stepbystep import StepByStep
from tests.conftest import object_keys, open_uploads
from tests.faults import Faults, client_error


async def test_reconcile_deletes_orphans_and_keeps_live_objects(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "live", blobs={"html": b"live", "image": b"live image"})
    live = object_keys(s3, table)
    # 1. A saga told not to clean up after itself.
    faults.fail("PutItem", times=-1, error=lambda: client_error("AccessDenied", 403))
    with pytest.raises(AccessDenied):
        await la.create(
            table,
            "failed",
            blobs={"html": b"left behind"},
            options=SagaOptions(clean_up_on_failure=False),
        )
    faults.clear()
    # 2. A step-by-step writer that crashed before its DynamoDB write.
    StepByStep(Storage(s3, dynamodb), table).put_blobs("live", {"html": b"never written"})
    # 3. An object nobody can attribute (no item key in its metadata).
    s3.put_object(Bucket=table.bucket, Key=f"{table.prefix}/foreign/thing", Body=b"?")
    # 4. A multipart upload nobody finished.
    s3.create_multipart_upload(Bucket=table.bucket, Key=f"{table.prefix}/half")
    before = check_storage(Storage(s3, dynamodb), table.spec)
    assert len(before.orphans) == 3
    assert [o.key for o in before.unattributed] == [f"{table.prefix}/foreign/thing"]

    dry = await la.reconcile(table, grace_seconds=0, upload_grace_seconds=0, dry_run=True)
    assert dry.orphans_found == 2
    assert dry.objects_deleted == 0
    result = await la.reconcile(table, grace_seconds=0, upload_grace_seconds=0)
    assert result.orphans_found == 2
    assert result.objects_deleted == 2
    assert result.unattributed == 1
    assert result.uploads_aborted == 1
    assert object_keys(s3, table) == live | {f"{table.prefix}/foreign/thing"}
    assert open_uploads(s3, table) == []
    item = await la.get(table, "live")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == b"live"


async def test_reconcile_respects_grace_and_busy_items(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "busy", blobs={"html": b"v1"})
    steps = StepByStep(Storage(s3, dynamodb), table)
    steps.put_blobs("busy", {"image": b"orphan of a busy item"})
    young = await la.reconcile(table, grace_seconds=3600)
    assert young.orphans_found == 0  # too young to judge
    faults.slow("PutObject", 3.0, times=1)
    slow = await la.start_update(table, "busy", blobs={"html": b"v2"})
    await asyncio.sleep(0.5)
    result = await la.reconcile(table, grace_seconds=0)
    assert result.items_busy == 1
    assert result.objects_deleted == 0
    await la.result(slow)
    again = await la.reconcile(table, grace_seconds=0)
    assert again.objects_deleted == 1
    assert check_storage(Storage(s3, dynamodb), table.spec).ok()


async def test_reconcile_keeps_old_versions_when_the_table_does(
    la: LargeAttrClient, new_table: Any, s3: Any
) -> None:
    table = new_table(options=SagaOptions(delete_old_objects=False))
    await la.create(table, "doc", blobs={"html": b"v1"})
    await la.update(table, "doc", blobs={"html": b"v2"})
    assert len(object_keys(s3, table)) == 2
    result = await la.reconcile(table, grace_seconds=0)
    assert result.objects_deleted == 0
    assert len(object_keys(s3, table)) == 2


async def test_reconcile_leaves_a_nested_tables_objects_alone(
    la: LargeAttrClient, new_table: Any, s3: Any, dynamodb: Any
) -> None:
    outer: LargeAttrTable = new_table(large=("html",))
    inner = LargeAttrTable(
        table_name=f"{outer.table_name}-v2",
        partition_key="pk",
        large_attributes=("html",),
        bucket=outer.bucket,
        prefix=f"{outer.prefix}/v2",  # the outer table's listing includes these objects
    )
    ensure_table(dynamodb, inner)
    await la.create(outer, "a", blobs={"html": b"outer a"})
    await la.create(inner, "a", blobs={"html": b"inner a"})  # same key, other table
    await la.create(inner, "b", blobs={"html": b"inner b"})  # no such item in outer
    StepByStep(Storage(s3, dynamodb), outer).put_blobs("a", {"html": b"outer orphan"})
    inner_objects = object_keys(s3, inner)
    assert len(inner_objects) == 2

    result = await la.reconcile(outer, grace_seconds=0)
    assert (result.orphans_found, result.objects_deleted) == (1, 1)
    assert result.unattributed == 0  # the inner table's folder: skipped, not ours to judge
    assert object_keys(s3, inner) == inner_objects
    for key, data in (("a", b"inner a"), ("b", b"inner b")):
        item = await la.get(inner, key)
        assert item is not None
        assert await la.read_blob(item.blob("html")) == data
    item = await la.get(outer, "a")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == b"outer a"


async def test_reconcile_attributes_objects_of_keys_too_long_for_metadata(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    long_key = "é" * 150  # 900 bytes escaped in the S3 key, 1,200 in la-item: only hashed
    await la.create(table, long_key, blobs={"html": b"live"})
    StepByStep(Storage(s3, dynamodb), table).put_blobs(long_key, {"html": b"orphan"})
    live = object_keys(s3, table)
    hashed_only = [
        k
        for k in object_keys(s3, table)
        if "la-item" not in s3.head_object(Bucket=table.bucket, Key=k)["Metadata"]
    ]
    assert len(hashed_only) == 2  # both objects carry la-item-sha256 only
    result = await la.reconcile(table, grace_seconds=0)
    assert (result.orphans_found, result.objects_deleted, result.unattributed) == (1, 1, 0)
    item = await la.get(table, long_key)
    assert item is not None
    assert object_keys(s3, table) == {item.blob("html").key}
    assert item.blob("html").key in live
    assert await la.read_blob(item.blob("html")) == b"live"
