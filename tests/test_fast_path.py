"""The fast path (issue 8): short steps as local activities, what the history and the Web UI
then show, the ``state`` query, and a client that runs its own worker with eager start."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.transfer import TransferConfig
from largeattr.workflows.saga import FAST_PATH
from tests.conftest import object_keys, steps


def workflow_tasks(history: Any) -> int:
    return sum(e.HasField("workflow_task_completed_event_attributes") for e in history.events)


async def test_a_create_with_inline_blobs_is_one_workflow_task(
    la: LargeAttrClient, table: LargeAttrTable
) -> None:
    """Uploads and pivot run inside the first workflow task: one task, no activity task,
    each step a marker with its summary; the patch marker says which path the run took."""
    handle = await la.start_create(table, "doc", {"html": b"<p>1</p>", "image": b"x" * 1000})
    await la.result(handle)
    history = await handle.fetch_history()
    assert workflow_tasks(history) == 1
    assert not any(e.HasField("activity_task_scheduled_event_attributes") for e in history.events)
    assert sorted(steps(history)) == [
        ("largeattr.put_item", "pivot: put item (if absent)", 1),
        ("largeattr.upload_blob", "upload html (8 B, inline)", 1),
        ("largeattr.upload_blob", "upload image (1.0 KB, inline)", 1),
    ]
    patches = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert len(patches) == 1
    assert FAST_PATH.encode() in patches[0].SerializeToString()


async def test_the_state_query_answers_while_and_after_the_saga_runs(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Client
) -> None:
    await la.create(table, "doc", {"html": b"v1"})
    handle = await la.start_update(table, "doc", {"html": b"v2", "image": b"i" * 100})
    result = await la.result(handle)
    state = await temporal.get_workflow_handle(handle.id, run_id=result.saga_id).query("state")
    assert state["operation"] == "update"
    assert state["item"] == "pk=doc"
    assert state["phase"] == "after_pivot"
    assert state["outcome"] == "committed"
    assert state["now"] == []
    assert state["bytes_written"] == 102
    assert len(state["objects"]) == 2


async def test_a_client_with_its_own_worker_starts_sagas_eagerly(
    temporal: Client,
    aws: AwsConfig,
    test_transfer: TransferConfig,
    table: LargeAttrTable,
    s3: Any,
) -> None:
    """run_worker=True: no other worker polls this task queue, yet the sagas run, and the
    server handed each one's first workflow task back in the start call (eager start)."""
    queue = f"eager-{uuid.uuid4().hex[:8]}"
    async with LargeAttrClient(
        temporal, task_queue=queue, aws=aws, transfer=test_transfer, run_worker=True
    ) as la:
        handle = await la.start_create(table, "doc", {"html": b"v1"})
        assert getattr(handle, "__temporal_eagerly_started", False) is True
        await la.result(handle)
        updated = await la.update(table, "doc", {"html": b"v2"})
        assert updated.version == 2
        item = await la.get(table, "doc")
        assert item is not None
        assert await la.read_blob(item.blob("html")) == b"v2"
        await la.delete(table, "doc")
        assert await la.get(table, "doc") is None
    assert object_keys(s3, table) == set()
