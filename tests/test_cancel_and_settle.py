"""A saga cancelled, or its pivot left without an answer, still loses nothing.

A write in flight is waited for, never abandoned: a saga cancelled during its pivot ends as
the pivot did (committed: the saga completes; refused: compensated). A cancel request that
arrives before the pivot compensates. A pivot whose attempts end without an answer after one
of them committed (its response lost) is settled by reading the item, and the saga goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from largeattr import AccessDenied, Blob, LargeAttrClient, LargeAttrTable, SagaFailed
from tests.conftest import no_change, object_keys
from tests.faults import Faults, client_error
from tests.invariants import assert_invariants


async def started(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 30), "the step never started"


async def read(la: LargeAttrClient, table: LargeAttrTable, key: str) -> bytes:
    item = await la.get(table, key)
    assert item is not None
    return await la.read_blob(item.blob("html"))


@pytest.mark.parametrize("operation", ["update", "create"])
async def test_cancel_during_the_pivot_waits_for_it(
    operation: str,
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """The pivot is on the wire when the cancel arrives: the saga waits for it, and as it
    committed, the saga completes (old object deleted, new one referenced)."""
    await la.create(table, "doc", {"html": b"v1"})
    old = object_keys(s3, table)
    call = "UpdateItem" if operation == "update" else "PutItem"
    sent = threading.Event()
    faults.before(call, lambda _: sent.set())
    faults.slow(call, 2.0, times=1)
    if operation == "update":
        handle = await la.start_update(table, "doc", {"html": b"v2"})
    else:
        handle = await la.start_create(table, "doc", {"html": b"v2"}, overwrite=True)
    await started(sent)
    await handle.cancel()
    result = await la.result(handle)
    assert result.version == 2
    assert await read(la, table, "doc") == b"v2"
    assert not old & object_keys(s3, table), "the replaced object was not deleted"
    assert len(result.deleted_objects) == 1
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_cancel_before_the_pivot_compensates(
    allowed_dir: Path,
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """The cancel arrives while the worker uploads a file (a regular activity, as every
    blob that is not inline): the upload finishes (it is waited for), then the saga stops
    before its pivot, removes what it wrote and ends cancelled."""
    source = allowed_dir / "v2.html"
    source.write_bytes(b"v2")
    await la.create(table, "doc", {"html": b"v1"})
    faults.calls.clear()
    sent = threading.Event()
    faults.before("PutObject", lambda _: sent.set())
    faults.slow("PutObject", 2.0, times=1)
    with no_change(s3, dynamodb, table, table.key("doc")):
        handle = await la.start_update(table, "doc", {"html": Blob.worker_file(source)})
        await started(sent)
        await handle.cancel()
        with pytest.raises(SagaFailed, match="did not finish"):
            await la.result(handle)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert faults.calls["s3.PutObject"] == 1  # the upload did happen, and was undone
    assert faults.calls["dynamodb.UpdateItem"] == 0
    assert await read(la, table, "doc") == b"v1"
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_cancel_during_local_steps_is_decided_at_the_pivot(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """Inline blobs: the upload and the pivot are local activities of one workflow task.
    A cancel sent during it reaches the workflow only when that task completes, which the
    server then refuses (a new event); the steps run again, see the request at the pivot,
    find by reading the item that the first run committed, and finish as committed: the
    caller gets the committed result, the replaced object is gone, nothing is orphaned."""
    await la.create(table, "doc", {"html": b"v1"})
    old = object_keys(s3, table)
    sent = threading.Event()
    faults.before("PutObject", lambda _: sent.set())
    faults.slow("PutObject", 2.0, times=1)
    handle = await la.start_update(table, "doc", {"html": b"v2"})
    await started(sent)
    await handle.cancel()
    result = await la.result(handle)
    assert result.version == 2
    assert await read(la, table, "doc") == b"v2"
    assert not old & object_keys(s3, table), "the replaced object was not deleted"
    assert faults.calls["dynamodb.UpdateItem"] == 1, "the pivot ran twice"
    events = [e async for e in handle.fetch_history_events()]
    assert any(e.HasField("workflow_task_failed_event_attributes") for e in events)
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_a_pivot_that_committed_but_never_answered_is_settled(
    operation: str,
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """Attempt 1 of the pivot commits and its response is lost; attempt 2 is refused with
    a final error. The saga reads the item, sees its own write, and finishes as committed
    instead of reporting a failure that did change the item (and orphaning old objects)."""
    await la.create(table, "doc", {"html": b"v1"})
    old = object_keys(s3, table)
    call = "UpdateItem" if operation == "update" else "DeleteItem"
    faults.fail(call, times=1, error=lambda: client_error("InternalError", 500), phase="after")
    calls = itertools.count()
    faults.fail(
        call,
        times=-1,
        error=lambda: client_error("AccessDenied", 403),
        match=lambda _: next(calls) >= 1,
    )
    if operation == "update":
        result = await la.update(table, "doc", {"html": b"v2"})
        assert result.version == 2
        assert await read(la, table, "doc") == b"v2"
    else:
        result = await la.delete(table, "doc")
        assert await la.get(table, "doc") is None
    assert faults.injected[f"after:dynamodb.{call}"] == 1
    assert faults.injected[f"before:dynamodb.{call}"] >= 1
    assert set(result.deleted_objects) == {f"s3://{table.bucket}/{k}" for k in old}
    assert not old & object_keys(s3, table)
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_a_pivot_that_never_committed_is_compensated_after_settling(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """The pivot's first attempt fails before it is sent (a 500), every later one is
    refused: as an attempt might have committed, settling reads the item, finds it as it
    was, so the saga compensates and reports the error. (A refusal on the first attempt
    needs no settling: nothing can have committed; test_bad_input covers it.)"""
    await la.create(table, "doc", {"html": b"v1"})
    faults.calls.clear()
    faults.fail("UpdateItem", times=1, error=lambda: client_error("InternalError", 500))
    calls = itertools.count()
    faults.fail(
        "UpdateItem",
        times=-1,
        error=lambda: client_error("AccessDenied", 403),
        match=lambda _: next(calls) >= 1,
    )
    with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(AccessDenied):
        await la.update(table, "doc", {"html": b"v2"})
    # The settling read and compensation's own read (the client read the item before it
    # started the saga, with its own clients).
    assert faults.calls["dynamodb.GetItem"] == 2
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])
