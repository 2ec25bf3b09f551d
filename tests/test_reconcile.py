"""The reconcile workflow removes what sagas could not clean, and nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from largeattr import AccessDenied, LargeAttrClient, LargeAttrTable, SagaOptions, Storage
from largeattr.check import check_storage
from largeattr.steps import StepByStep
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
    assert len(before.orphans) == 4

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
