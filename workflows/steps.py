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
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from largeattr import keys, table
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import (
        BUSINESS_ERROR_NAMES,
        InvalidInput,
        ItemAlreadyExists,
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
        PivotResult,
        PrepareBlobArgs,
        PromoteBlobArgs,
        ReadItemArgs,
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
#: The pivot's attempts outlast the worker's whole DynamoDB call, botocore retries included
#: (``AwsConfig.dynamodb_call_bound``, 20 s by default): when an attempt has timed out, its
#: write is no longer on the wire, so reading the item tells whether the pivot committed.
PIVOT_CALL = timedelta(seconds=30)
#: An activity that may write is waited for when the saga is cancelled; cancelling it
#: blindly would let it commit after compensation ran.
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
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


def check_request(
    spec: TableSpec,
    key: ItemKey,
    blobs: Sequence[BlobInput] = (),
    plain: dict[str, Sequence[str]] | None = None,
    removed_blobs: Sequence[str] = (),
) -> None:
    """The input checks the client makes, made again here: a saga can be started directly.
    Pure, so deterministic; a failure ends the saga before it reads or writes anything."""
    try:
        check_workflow_id(spec, key)
        names = [b.attribute for b in blobs] + list(removed_blobs)
        table.check_request(spec, key, names, plain)
    except LargeAttrError as err:
        raise as_failure(err) from err


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def activity_cause(err: BaseException) -> BaseException | None:
    """What a failed activity raised, under the ActivityError(s) that carry it."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError):
        cause = cause.cause
    return cause


def as_failure(err: LargeAttrError) -> ApplicationError:
    """How a saga fails with one of our errors: its class name, message and details travel,
    and the client raises that class again (``largeattr.client.user_error``)."""
    details = (err.details,) if err.details else ()
    return ApplicationError(err.message, *details, type=err.type_name, non_retryable=True)


def final_error(err: BaseException) -> ApplicationError:
    """The saga's failure for a failed step: the error the step raised."""
    return as_failure(_user_error(err))


def _user_error(err: BaseException) -> LargeAttrError:
    if isinstance(err, LargeAttrError):
        return type(err)(err.message, **err.details)  # a new one: `raise ... from err` holds
    cause = activity_cause(err)
    if isinstance(cause, ApplicationError):
        cls = error_class(cause.type)
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        if cls is not None:
            return cls(cause.message, **details)
        return SagaFailed(f"{cause.type or 'error'}: {cause.message}")
    if isinstance(cause, TimeoutError):
        return SagaFailed(f"a step timed out ({cause.type}); the saga was compensated")
    if cause is not None and is_cancelled_exception(cause):
        return SagaFailed("the saga was cancelled before its pivot; nothing was changed")
    return SagaFailed(str(cause) or type(cause).__name__)


#: The pivot's own verdicts: its condition failed and, looking at the item it got back,
#: the pivot saw that no earlier attempt of its own had committed (``la_saga``).
_CONDITION_FAILED = (ItemAlreadyExists.__name__, ItemNotFound.__name__, VersionConflict.__name__)


def stop_if_cancelled() -> None:
    """Steps that may write are waited for when the saga is cancelled, not abandoned, so a
    cancel request can arrive while one runs to completion. It still stops the saga here,
    before its pivot (and so gets compensated)."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError("cancellation requested before the pivot")


def definite(err: BaseException) -> bool:
    """True if a failed pivot certainly did not commit. Any other failure (retries run
    out, cancelled between attempts, AccessDenied on a retry...) may follow an attempt
    that committed and lost its response: ``settle_pivot`` finds out."""
    if isinstance(err, LargeAttrError):
        return True
    cause = activity_cause(err)
    return isinstance(cause, ApplicationError) and cause.type in _CONDITION_FAILED


async def after_failure(
    saga: Saga, options: SagaOptions, err: BaseException, pivot_read: ItemState | None
) -> PivotResult:
    """A step of ``saga`` failed with ``err``. If it was the pivot (``pivot_read``: the item
    as the saga read it) and it may have committed, settle it: committed, the saga goes on
    with the returned result. Otherwise compensate, and end the saga with the step's error,
    or as cancelled."""
    if pivot_read is not None and not definite(err):
        pivot = await settle_pivot(saga.table, saga.key, saga.saga_id, pivot_read)
        if pivot is not None:
            return pivot
    await compensate(saga, options)
    if is_cancelled_exception(err):
        raise err
    raise final_error(err) from err


async def settle_pivot(
    spec: TableSpec, key: ItemKey, saga_id: str, before: ItemState, deleting: bool = False
) -> PivotResult | None:
    """The pivot ended without an answer (its retries ran out, or the saga was cancelled
    between attempts), yet an attempt may have committed before its response was lost. Read
    the item (until a read succeeds) and tell: the pivot's result if it committed, None if
    not. Nothing of the pivot is on the wire any more (``PIVOT_CALL``)."""
    now = await run_to_completion(
        workflow.start_activity_method(
            SagaActivities.read_item,
            ReadItemArgs(spec, key),
            start_to_close_timeout=DYNAMODB_CALL,
            retry_policy=UNTIL_DONE,
            summary=f"settle: did the pivot commit? read {keys.item_path(spec, key)}",
        )
    )
    if deleting:
        if now.exists:
            return None
        still: set[str] = set()
        version = before.version
    else:
        if not now.exists or now.saga_id != saga_id:
            return None
        still = set(now.refs.values())
        version = now.version
    superseded = [
        uri
        for uri in dict.fromkeys(before.refs.values())
        if uri not in still and keys.owned_by(spec, uri)
    ]
    workflow.logger.info("the pivot committed although its response was lost")
    return PivotResult(version=version, superseded=tuple(superseded))


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
        heartbeat_timeout=TRANSFER_HEARTBEAT,
        retry_policy=BEFORE_PIVOT,
        cancellation_type=wait,
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
