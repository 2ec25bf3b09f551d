"""The reconcile workflow removes what sagas could not clean, and nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from largeattr import AccessDenied, LargeAttrClient, LargeAttrTable, SagaOptions, Storage, keys
from largeattr.check import check_storage
from largeattr.errors import InvalidInput
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


# ---------------------------------------------------------------- the batched pass (issue 12)


async def test_reconcile_batches_its_requests(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, dynamodb: Any
) -> None:
    steps = StepByStep(Storage(s3, dynamodb), table)
    for n in range(6):
        await la.create(table, f"doc-{n}", blobs={"html": f"live {n}".encode()})
        steps.put_blobs(f"doc-{n}", {"html": f"orphan {n}".encode(), "image": b"orphan"})
    steps.put_blobs("never-created", {"html": b"orphan of no item"})
    live = {(await la.get(table, f"doc-{n}")).blob("html").key for n in range(6)}  # type: ignore[union-attr]
    assert len(object_keys(s3, table)) == 6 + 12 + 1
    faults.clear()
    result = await la.reconcile(table, grace_seconds=0)
    assert (result.orphans_found, result.objects_deleted, result.items_busy) == (13, 13, 0)
    assert result.items_checked == 7
    assert result.objects_scanned == 19
    assert result.bytes_deleted == result.orphan_bytes > 0
    assert object_keys(s3, table) == live
    calls = faults.calls
    # What the key and the listing say is enough: no HEAD, no per-item GetItem.
    assert calls["s3.HeadObject"] == 0
    assert calls["dynamodb.GetItem"] == 0
    assert calls["s3.DeleteObject"] == 0
    assert calls["s3.DeleteObjects"] == 1  # 13 orphans of 7 items, one request
    assert calls["dynamodb.BatchGetItem"] == 2  # the pass, then again under the locks
    assert calls["s3.ListObjectsV2"] == 1


async def test_reconcile_unlocks_every_item_it_locked(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Any, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "doc", blobs={"html": b"v1"})
    StepByStep(Storage(s3, dynamodb), table).put_blobs("doc", {"html": b"orphan"})
    result = await la.reconcile(table, grace_seconds=0)
    assert result.objects_deleted == 1
    lock = await temporal.get_workflow_handle(table.workflow_id("doc")).describe()
    assert lock.workflow_type == "largeattr.CleanItem"
    assert lock.status is not None
    assert lock.status.name == "TERMINATED"
    updated = await la.update(table, "doc", blobs={"html": b"v2"}, on_busy="fail")
    assert updated.version == 2


async def test_reconcile_never_deletes_an_orphan_a_running_saga_reuses(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "doc", blobs={"html": b"v1"})
    # An orphan with the very content the next update writes: that update finds it in
    # place (If-None-Match) and references it without uploading it again.
    orphan = StepByStep(Storage(s3, dynamodb), table).put_blobs("doc", {"html": b"v2"})
    orphan_key = orphan.attributes()["html"].removeprefix(f"s3://{table.bucket}/")
    faults.slow("UpdateItem", 3.0, times=1)  # the saga sits before its pivot
    saga = await la.start_update(table, "doc", blobs={"html": b"v2"})
    await asyncio.sleep(1.0)
    during = await la.reconcile(table, grace_seconds=0)
    assert (during.orphans_found, during.items_busy, during.objects_deleted) == (1, 1, 0)
    assert during.sample_busy == (keys.item_path(table.spec, table.key("doc")),)
    assert orphan_key in object_keys(s3, table)
    await la.result(saga)
    after = await la.reconcile(table, grace_seconds=0)
    assert after.objects_deleted == 0  # referenced now
    item = await la.get(table, "doc")
    assert item is not None
    assert item.blob("html").key == orphan_key
    assert await la.read_blob(item.blob("html")) == b"v2"
    assert check_storage(Storage(s3, dynamodb), table.spec).ok()


async def test_reconcile_reports_dangling_references_and_deletes_nothing_for_them(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "doc", blobs={"html": b"html", "image": b"image"})
    item = await la.get(table, "doc")
    assert item is not None
    s3.delete_object(Bucket=table.bucket, Key=item.blob("html").key)  # behind our back
    StepByStep(Storage(s3, dynamodb), table).put_blobs("doc", {"html": b"young orphan"})
    result = await la.reconcile(table, grace_seconds=3600)
    assert result.dangling == 1
    assert result.sample_dangling == (item.blob("html").uri,)
    assert (result.orphans_found, result.objects_deleted) == (0, 0)  # too young
    assert len(object_keys(s3, table)) == 2  # the image and the young orphan
    assert await la.get(table, "doc") == item  # the item is left as it was
    report = await la.reconcile(table, grace_seconds=0)
    assert (report.dangling, report.objects_deleted) == (1, 1)
    assert object_keys(s3, table) == {item.blob("image").key}


async def test_reconcile_continues_as_new_over_many_chunks(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Any, s3: Any, dynamodb: Any
) -> None:
    from temporalio.api.sdk.v1 import WorkflowMetadata

    from largeattr.messages import ReconcileInput
    from largeattr.workflows import ReconcileWorkflow

    steps = StepByStep(Storage(s3, dynamodb), table)
    for n in range(5):
        await la.create(table, f"doc-{n}", blobs={"html": b"live", "image": f"{n}".encode()})
        steps.put_blobs(f"doc-{n}", {"html": f"orphan {n}".encode()})
    # Pages of 2 keys, 1 page a chunk: an item's 3 objects never fit one chunk whole.
    handle = await temporal.start_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(table=table.spec, grace_seconds=0, page_size=2, pages_per_chunk=1),
        id=f"recon-chunks-{table.table_name}",
        task_queue=la.task_queue,
    )
    result = await handle.result()
    # What the Web UI shows as the run's Current Details.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith("15 objects (")
    assert "5 orphans" in metadata.current_details
    assert (result.objects_scanned, result.orphans_found, result.objects_deleted) == (15, 5, 5)
    assert result.dangling == 0
    assert result.chunks >= 8
    assert len(object_keys(s3, table)) == 10
    assert check_storage(Storage(s3, dynamodb), table.spec).ok()


async def test_reconcile_schedule_created_triggered_updated_removed(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Any, s3: Any, dynamodb: Any
) -> None:
    from datetime import timedelta

    from temporalio.client import ScheduleActionExecutionStartWorkflow

    from largeattr.messages import ReconcileResult
    from largeattr.schedule import remove_reconcile_schedule, schedule_id, schedule_reconcile

    await la.create(table, "doc", blobs={"html": b"live"})
    StepByStep(Storage(s3, dynamodb), table).put_blobs("doc", {"html": b"orphan"})
    handle, created = await schedule_reconcile(
        temporal, table, timedelta(hours=6), task_queue=la.task_queue, grace_seconds=0
    )
    assert created
    assert handle.id == schedule_id(table.table_name)
    described = await handle.describe()
    assert (await described.memo())["table"] == table.table_name
    assert described.schedule.policy.overlap.name == "SKIP"
    await handle.trigger()
    for _ in range(200):
        described = await handle.describe()
        if described.info.recent_actions:
            break
        await asyncio.sleep(0.1)
    started = described.info.recent_actions[0].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    run = temporal.get_workflow_handle(
        started.workflow_id,
        run_id=started.first_execution_run_id,
        result_type=ReconcileResult,
    )
    result = await run.result()
    assert result.objects_deleted == 1
    assert len(object_keys(s3, table)) == 1

    handle, created = await schedule_reconcile(
        temporal, table, timedelta(hours=12), task_queue=la.task_queue
    )
    assert not created
    described = await handle.describe()
    assert described.schedule.spec.intervals[0].every == timedelta(hours=12)
    assert "grace 900 s" in (described.schedule.state.note or "")
    assert await remove_reconcile_schedule(temporal, table.table_name)
    assert not await remove_reconcile_schedule(temporal, table.table_name)


def test_schedule_command_line() -> None:
    from largeattr.cli import build_parser, run
    from largeattr.schedule import parse_every

    args = build_parser().parse_args(
        ["schedule", "reconcile", "docs", "--every", "6h", "--bucket", "b", "--prefix", "p",
         "--large", "html", "--grace", "60"]
    )  # fmt: skip
    assert (args.table, args.every, args.grace, args.remove) == ("docs", "6h", 60, False)
    assert parse_every("1h30m").total_seconds() == 5400
    for bad in ("6", "6 hours", "h", "30s"):
        with pytest.raises(InvalidInput):
            parse_every(bad)
    assert run(["schedule", "reconcile", "docs", "--every", "6h"]) == 2  # no bucket: refused


@pytest.mark.unit
async def test_a_cancelled_chunk_returns_only_once_its_work_has_let_go() -> None:
    from largeattr.reconcile import run_beating

    released: list[str] = []
    beats: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # e.g. DeleteObjects still on the wire, then unlock
            released.append("locks")

    task = asyncio.create_task(run_beating(work(), lambda: beats.append("beat"), every=0.05))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert released == ["locks"]
    assert beats  # it heartbeated while the work ran
