"""The compensatable steps that store blobs, each key entered in the saga's ledger first.

Inline bytes: one upload. A seekable source: hash where it lives, then upload to the
content-addressed key. A one-pass stream: stage while hashing, then copy into place.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from largeattr import keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import SourceUnavailable
    from largeattr.messages import (
        BlobInput,
        PrepareBlobArgs,
        PromoteBlobArgs,
        StageBlobArgs,
        StoredBlob,
        UploadBlobArgs,
    )
    from largeattr.transfer import human_size
    from largeattr.workflows.policies import (
        BEFORE_PIVOT,
        CLIENT_PICKUP,
        LARGE_TRANSFER,
        ONE_PASS,
        SMALL_UPLOAD,
        TRANSFER_HEARTBEAT,
        WAIT,
    )
    from largeattr.workflows.saga import STEP_FAILURES, Saga, nothing_written


async def store_blobs(saga: Saga, blobs: Sequence[BlobInput]) -> list[StoredBlob]:
    """Upload every blob in parallel; wait for all to settle before reporting a failure,
    so that compensation never races an upload still in flight."""

    async def counted(blob: BlobInput) -> StoredBlob:
        return saga.stored(await store_blob(saga, blob))

    results = await asyncio.gather(*(counted(b) for b in blobs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, StoredBlob)]


async def store_blob(saga: Saga, blob: BlobInput) -> StoredBlob:
    if blob.inline_b64 is not None:
        return await _upload_inline(saga, blob)
    if blob.source is None:
        raise SourceUnavailable(f"blob {blob.attribute!r} has neither inline bytes nor a source")
    if blob.seekable:
        return await _upload_seekable(saga, blob)
    return await _stage_and_promote(saga, blob)


def _object_key(saga: Saga, blob: BlobInput, sha256: str) -> str:
    return saga.will_write(keys.object_key(saga.table, saga.key, blob.attribute, sha256))


async def _upload_inline(saga: Saga, blob: BlobInput) -> StoredBlob:
    sha256 = blob.sha256 or hashlib.sha256(blob.inline_bytes()).hexdigest()
    object_key = _object_key(saga, blob, sha256)
    try:
        stored: StoredBlob = await saga.run_step(
            SagaActivities.upload_blob,
            UploadBlobArgs(saga.table, saga.key, blob, object_key, saga.saga_id, saga.updated_at),
            summary=f"upload {blob.attribute} ({human_size(blob.size)}, inline)",
            per_attempt=SMALL_UPLOAD,
            retry=BEFORE_PIVOT,
            wait=True,
        )
    except STEP_FAILURES as err:
        if nothing_written(err):
            saga.written.remove(object_key)  # refused on its first attempt: nothing to undo
        raise
    return stored


def _transfer(blob: BlobInput) -> dict[str, Any]:
    """Options of a step that moves a large blob: it runs where the bytes are (a client
    that vanished is noticed by the pickup timeout), for hours, heartbeating."""
    return {
        "task_queue": blob.task_queue,
        "schedule_to_start_timeout": CLIENT_PICKUP if blob.task_queue else None,
        "start_to_close_timeout": LARGE_TRANSFER,
        "heartbeat_timeout": TRANSFER_HEARTBEAT,
        "cancellation_type": WAIT,
    }


async def _upload_seekable(saga: Saga, blob: BlobInput) -> StoredBlob:
    hashing = f"hash {blob.attribute} ({human_size(blob.size)})"
    prepared = await saga.tracked(
        f"{hashing}, progress in its heartbeats",
        workflow.execute_activity_method(
            SagaActivities.prepare_blob,
            PrepareBlobArgs(blob),
            retry_policy=BEFORE_PIVOT,
            summary=hashing,
            **_transfer(blob),
        ),
    )
    uploading = f"upload {blob.attribute} ({human_size(prepared.size)})"
    upload = workflow.execute_activity_method(
        SagaActivities.upload_blob,
        UploadBlobArgs(
            saga.table,
            saga.key,
            blob,
            _object_key(saga, blob, prepared.sha256),
            saga.saga_id,
            saga.updated_at,
            prepared,
        ),
        retry_policy=BEFORE_PIVOT,
        summary=uploading,
        **_transfer(blob),
    )
    return await saga.tracked(f"{uploading}, progress in its heartbeats", upload)


async def _stage_and_promote(saga: Saga, blob: BlobInput) -> StoredBlob:
    staging = saga.will_stage(keys.staging_key(saga.table, saga.saga_id, blob.attribute))
    staging_step = f"stage {blob.attribute} (stream)"
    prepared = await saga.tracked(
        f"{staging_step}, progress in its heartbeats",
        workflow.execute_activity_method(
            SagaActivities.stage_blob,
            StageBlobArgs(saga.table, saga.key, blob, staging, saga.saga_id, saga.updated_at),
            retry_policy=ONE_PASS,
            summary=staging_step,
            **_transfer(blob),
        ),
    )
    promoting = f"promote {blob.attribute} ({human_size(prepared.size)}, server-side copy)"
    promote = workflow.execute_activity_method(
        SagaActivities.promote_blob,
        PromoteBlobArgs(
            saga.table,
            saga.key,
            blob,
            staging,
            _object_key(saga, blob, prepared.sha256),
            prepared,
            saga.saga_id,
            saga.updated_at,
        ),
        start_to_close_timeout=LARGE_TRANSFER,
        heartbeat_timeout=TRANSFER_HEARTBEAT,
        retry_policy=BEFORE_PIVOT,
        cancellation_type=WAIT,
        summary=promoting,
    )
    return await saga.tracked(promoting, promote)
