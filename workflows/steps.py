"""Saga steps shared by the three workflows, with their timeouts and retry policies.

Each function here is one step of the table in DESIGN.md and awaits only activities.
Retry policies name the errors that are final: before and at the pivot a business error
(``ItemAlreadyExists``, ``VersionConflict``...) ends the saga and runs compensation; after
the pivot nothing is final, so clean-up is retried until it succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.saga import SagaActivities
    from largeattr import keys
    from largeattr.errors import (
        BUSINESS_ERROR_NAMES,
        InvalidInput,
        ItemNotFound,
        LargeAttrError,
        SagaFailed,
        SourceUnavailable,
        VersionConflict,
        error_class,
    )
    from largeattr.messages import (
        BlobInput,
        CleanupResult,
        CompensateArgs,
        DeleteObjectsArgs,
        ItemKey,
        ItemState,
        PrepareBlobArgs,
        PromoteBlobArgs,
        SagaOptions,
        StageBlobArgs,
        StoredBlob,
        TableSpec,
        UploadBlobArgs,
    )
    from largeattr.transfer import human_size

T = TypeVar("T")

# ---------------------------------------------------------------- retry policies

#: Steps before the pivot, and the pivot: transient AWS errors retry with backoff; a
#: business error is final and triggers compensation.
BEFORE_PIVOT = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=list(BUSINESS_ERROR_NAMES),
)
#: Reading a one-pass stream cannot be repeated once it has started.
ONE_PASS = RetryPolicy(maximum_attempts=1)
#: After the pivot, and compensation: retried until done; never fails the saga.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
)

# Each attempt is bounded tightly: a worker that dies mid-activity is only noticed when the
# attempt times out, so these bound how long a crash stalls a saga.
DYNAMODB_CALL = timedelta(seconds=10)
SMALL_UPLOAD = timedelta(seconds=30)
CLEAN_UP = timedelta(seconds=30)
LARGE_TRANSFER = timedelta(hours=12)
TRANSFER_HEARTBEAT = timedelta(seconds=30)
#: A blob held by a client process: if nobody serves its queue this long, the client is
#: gone and the saga compensates (a Schedule-To-Start timeout is never retried).
CLIENT_PICKUP = timedelta(seconds=60)


def check_workflow_id(table: TableSpec, key: ItemKey) -> None:
    """The workflow id is the per-item lock: a saga under any other id could run beside
    another saga on the same item (and delete an object that one just referenced)."""
    expected = keys.workflow_id(table, key)
    if workflow.info().workflow_id != expected:
        raise InvalidInput(
            f"this saga must run with workflow id {expected!r} (LargeAttrTable.workflow_id), "
            f"not {workflow.info().workflow_id!r}: the id keeps operations on one item apart"
        )


def require_version(state: ItemState, expected: int | None, item: str, if_missing: str) -> None:
    """The read step's verdict: the item exists, at the version the caller expects."""
    if not state.exists:
        raise ItemNotFound(f"item {item} does not exist; {if_missing}")
    if expected is not None and expected != state.version:
        raise VersionConflict(
            f"item {item} is at version {state.version}, not {expected}; re-read it and retry",
            expected=expected,
            found=state.version,
        )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def final_error(err: BaseException) -> LargeAttrError:
    """The user-facing error for a failed step: same class as the activity raised."""
    if isinstance(err, LargeAttrError):
        return type(err)(err.message, **err.details)  # a new one: `raise ... from err` holds
    cause: BaseException | None = err
    while isinstance(cause, ActivityError):
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        cls = error_class(cause.type)
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        if cls is not None:
            return cls(cause.message, **details)
        return SagaFailed(f"{cause.type or 'error'}: {cause.message}")
    if isinstance(cause, TimeoutError):
        return SagaFailed(f"a step timed out ({cause.type}); the saga was compensated")
    if isinstance(cause, asyncio.CancelledError):
        return SagaFailed("the saga was cancelled before its pivot; nothing was changed")
    return SagaFailed(str(cause) or type(cause).__name__)


# ---------------------------------------------------------------- the compensatable steps


@dataclass
class Saga:
    """One saga's identity, and every key it may have written (for compensation)."""

    table: TableSpec
    key: ItemKey
    saga_id: str
    updated_at: str
    object_keys: list[str] = field(default_factory=list)
    staging_keys: list[str] = field(default_factory=list)

    def object_key(self, attribute: str, sha256: str) -> str:
        key = keys.object_key(self.table, self.key, attribute, sha256)
        self.object_keys.append(key)
        return key


async def store_blobs(saga: Saga, blobs: Sequence[BlobInput]) -> list[StoredBlob]:
    """Upload every blob in parallel; wait for all to settle before reporting a failure,
    so that compensation never races an upload still in flight."""
    results = await asyncio.gather(*(store_blob(saga, b) for b in blobs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, StoredBlob)]


async def store_blob(saga: Saga, blob: BlobInput) -> StoredBlob:
    """Inline bytes: one upload. A seekable source: hash where it lives, then upload to
    the content-addressed key. A one-pass stream: stage while hashing, then copy."""
    if blob.inline_b64 is not None:
        sha256 = blob.sha256 or hashlib.sha256(blob.inline_bytes()).hexdigest()
        return await workflow.execute_activity_method(
            SagaActivities.upload_blob,
            UploadBlobArgs(
                saga.table,
                saga.key,
                blob,
                saga.object_key(blob.attribute, sha256),
                saga.saga_id,
                saga.updated_at,
            ),
            start_to_close_timeout=SMALL_UPLOAD,
            retry_policy=BEFORE_PIVOT,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"upload {blob.attribute} ({human_size(blob.size)}, inline)",
        )
    if blob.source is None:
        raise SourceUnavailable(f"blob {blob.attribute!r} has neither inline bytes nor a source")
    # Run where the bytes are; a client that vanished is noticed by the pickup timeout.
    queue = blob.task_queue
    pickup = CLIENT_PICKUP if queue else None
    wait = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    if blob.seekable:
        prepared = await workflow.execute_activity_method(
            SagaActivities.prepare_blob,
            PrepareBlobArgs(blob),
            retry_policy=BEFORE_PIVOT,
            summary=f"hash {blob.attribute} ({human_size(blob.size)})",
            task_queue=queue,
            schedule_to_start_timeout=pickup,
            start_to_close_timeout=LARGE_TRANSFER,
            heartbeat_timeout=TRANSFER_HEARTBEAT,
            cancellation_type=wait,
        )
        return await workflow.execute_activity_method(
            SagaActivities.upload_blob,
            UploadBlobArgs(
                saga.table,
                saga.key,
                blob,
                saga.object_key(blob.attribute, prepared.sha256),
                saga.saga_id,
                saga.updated_at,
                prepared,
            ),
            retry_policy=BEFORE_PIVOT,
            summary=f"upload {blob.attribute} ({human_size(prepared.size)})",
            task_queue=queue,
            schedule_to_start_timeout=pickup,
            start_to_close_timeout=LARGE_TRANSFER,
            heartbeat_timeout=TRANSFER_HEARTBEAT,
            cancellation_type=wait,
        )
    staging = keys.staging_key(saga.table, saga.saga_id, blob.attribute)
    saga.staging_keys.append(staging)
    prepared = await workflow.execute_activity_method(
        SagaActivities.stage_blob,
        StageBlobArgs(saga.table, saga.key, blob, staging, saga.saga_id, saga.updated_at),
        retry_policy=ONE_PASS,
        summary=f"stage {blob.attribute} (stream)",
        task_queue=queue,
        schedule_to_start_timeout=pickup,
        start_to_close_timeout=LARGE_TRANSFER,
        heartbeat_timeout=TRANSFER_HEARTBEAT,
        cancellation_type=wait,
    )
    return await workflow.execute_activity_method(
        SagaActivities.promote_blob,
        PromoteBlobArgs(
            saga.table,
            saga.key,
            blob,
            staging,
            saga.object_key(blob.attribute, prepared.sha256),
            prepared,
            saga.saga_id,
            saga.updated_at,
        ),
        start_to_close_timeout=LARGE_TRANSFER,
        retry_policy=BEFORE_PIVOT,
        summary=f"promote {blob.attribute} ({human_size(prepared.size)}, server-side copy)",
    )


async def compensate(saga: Saga, options: SagaOptions) -> CleanupResult:
    """Remove what this saga wrote before its pivot failed; retried until done."""
    if not options.clean_up_on_failure or not (saga.object_keys or saga.staging_keys):
        return CleanupResult()
    count = len(set(saga.object_keys)) + len(set(saga.staging_keys))
    return await run_to_completion(
        workflow.start_activity_method(
            SagaActivities.compensate,
            CompensateArgs(
                saga.table,
                saga.key,
                saga.saga_id,
                tuple(dict.fromkeys(saga.object_keys)),
                tuple(dict.fromkeys(saga.staging_keys)),
            ),
            start_to_close_timeout=CLEAN_UP,
            retry_policy=UNTIL_DONE,
            summary=f"compensate: delete {plural(count, 'object')}",
        )
    )


# ---------------------------------------------------------------- the retriable steps


async def delete_objects(table: TableSpec, uris: Sequence[str], what: str) -> tuple[str, ...]:
    """After the pivot: delete unreferenced objects, retried until done."""
    object_keys = tuple(keys.parse_s3_uri(uri)[1] for uri in uris if keys.owned_by(table, uri))
    if not object_keys:
        return ()
    await run_to_completion(
        workflow.start_activity_method(
            SagaActivities.delete_objects,
            DeleteObjectsArgs(table.bucket, object_keys),
            start_to_close_timeout=CLEAN_UP,
            retry_policy=UNTIL_DONE,
            summary=f"delete {plural(len(object_keys), what)}",
        )
    )
    return tuple(keys.s3_uri(table.bucket, k) for k in object_keys)


async def run_to_completion(step: asyncio.Task[T]) -> T:
    """Await a clean-up step even if the workflow is cancelled meanwhile: once the saga
    committed (or must compensate), leaving clean-up half done would leave orphans."""
    while True:
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            if step.done():
                raise
            workflow.logger.info("cancellation requested; finishing clean-up first")
