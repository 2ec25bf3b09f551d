"""The saga engine: one saga's phase, its ledger of writes, its pivot and its compensation.

    saga = Saga.begin(request.table, request.key, request.options)
    async with saga.compensating():   # a failure in here undoes what the ledger holds
        state = await saga.read()                        # before the pivot
        stored = await store_blobs(saga, request.blobs)  # each key enters the ledger
        pivot = await saga.pivot(SagaActivities.put_item, args, expected=state, summary=...)
    deleted = await saga.clean_up(pivot, "old object")   # after the pivot: until done

The phase answers the one question that matters when something fails: could the pivot
have committed? Before it, compensation deletes the objects in the ledger that no committed
item references. At it, an answer that never came (retries ran out, a cancel between
attempts) is settled by reading the item. After it, nothing is undone; clean-up is retried
until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from largeattr import keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import (
        ItemAlreadyExists,
        ItemNotFound,
        LargeAttrError,
        SagaFailed,
        VersionConflict,
    )
    from largeattr.failures import our_error
    from largeattr.messages import (
        CleanupResult,
        CompensateArgs,
        DeleteObjectsArgs,
        ItemChanges,
        ItemKey,
        ItemResult,
        ItemState,
        PivotResult,
        ReadItemArgs,
        SagaOptions,
        StoredBlob,
        TableSpec,
    )
    from largeattr.workflows.policies import (
        BEFORE_PIVOT,
        CLEAN_UP,
        DYNAMODB_CALL,
        PIVOT_CALL,
        UNTIL_DONE,
        WAIT,
    )

T = TypeVar("T")

#: What a failed step of the saga raised: an activity's failure, our own verdict, a cancel.
STEP_FAILURES = (ActivityError, LargeAttrError, asyncio.CancelledError)
#: The pivot's own verdicts: its condition failed and, looking at the item it got back, the
#: pivot saw that no earlier attempt of its own had committed (``la_saga``).
CONDITION_FAILED = (ItemAlreadyExists, ItemNotFound, VersionConflict)


class Phase(enum.Enum):
    BEFORE_PIVOT = "before the pivot"
    AT_PIVOT = "at the pivot"
    AFTER_PIVOT = "after the pivot"


@dataclass
class Saga:
    """One saga on one item: where it stands, and every object it may have written."""

    table: TableSpec
    key: ItemKey
    options: SagaOptions
    saga_id: str
    updated_at: str
    phase: Phase = Phase.BEFORE_PIVOT
    #: The compensation ledger: content-addressed keys and staging keys this saga writes.
    written: list[str] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)

    @staticmethod
    def begin(table: TableSpec, key: ItemKey, options: SagaOptions) -> Saga:
        info = workflow.info()
        return Saga(table, key, options, info.run_id, workflow.now().isoformat())

    @property
    def item(self) -> str:
        return keys.item_path(self.table, self.key)

    # ------------------------------------------------------------ the ledger

    def will_write(self, object_key: str) -> str:
        """Record a key before the step that may write it, so compensation knows it."""
        self.written.append(object_key)
        return object_key

    def will_stage(self, staging_key: str) -> str:
        self.staged.append(staging_key)
        return staging_key

    # ------------------------------------------------------------ the steps

    async def read(self, changes: ItemChanges | None = None) -> ItemState:
        """The item as it is now (consistent read); with ``changes``, also checks that the
        item will still fit once they are applied."""
        return await workflow.execute_activity_method(
            SagaActivities.read_item,
            ReadItemArgs(self.table, self.key, changes),
            start_to_close_timeout=DYNAMODB_CALL,
            retry_policy=BEFORE_PIVOT,
            summary=f"read {self.item}",
        )

    async def pivot(
        self,
        step: Callable[[Any, Any], Any],
        args: Any,
        *,
        expected: ItemState,
        summary: str,
        deleting: bool = False,
    ) -> PivotResult:
        """Run the pivot. A failure that may follow a committed attempt is settled by
        reading the item: committed, the saga goes on as committed."""
        stop_if_cancelled()
        self.phase = Phase.AT_PIVOT
        try:
            result: PivotResult = await workflow.execute_activity_method(
                step,
                args,
                start_to_close_timeout=PIVOT_CALL,
                retry_policy=BEFORE_PIVOT,
                cancellation_type=WAIT,
                summary=f"pivot: {summary}",
            )
        except (ActivityError, asyncio.CancelledError) as err:
            if definite(err):
                raise
            settled = await self._settle(expected, deleting)
            if settled is None:
                raise
            result = settled
        self.phase = Phase.AFTER_PIVOT
        return result

    async def _settle(self, before: ItemState, deleting: bool) -> PivotResult | None:
        """The pivot ended without an answer, yet an attempt may have committed before its
        response was lost. Read the item (until a read succeeds): the pivot's result if it
        committed, None if not. Nothing of the pivot is on the wire any more (PIVOT_CALL)."""
        now = await run_to_completion(
            workflow.start_activity_method(
                SagaActivities.read_item,
                ReadItemArgs(self.table, self.key),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=UNTIL_DONE,
                summary=f"settle: did the pivot commit? read {self.item}",
            )
        )
        if deleting:
            if now.exists:
                return None
            still: set[str] = set()
            version = before.version
        else:
            if not now.exists or now.saga_id != self.saga_id:
                return None
            still = set(now.refs.values())
            version = now.version
        superseded = [
            uri
            for uri in dict.fromkeys(before.refs.values())
            if uri not in still and keys.under_prefix(self.table, uri)
        ]
        workflow.logger.info("the pivot committed although its response was lost")
        return PivotResult(version=version, superseded=tuple(superseded))

    @contextlib.asynccontextmanager
    async def compensating(self) -> AsyncIterator[None]:
        """The steps up to and including the pivot: if one fails, undo what the ledger
        holds and end the saga with the step's error (or as cancelled)."""
        try:
            yield
        except STEP_FAILURES as err:
            await self.compensate()
            if is_cancelled_exception(err):
                raise
            raise final_error(err) from err

    async def compensate(self) -> CleanupResult:
        """Remove what this saga wrote before its pivot failed; retried until done."""
        if not self.options.clean_up_on_failure or not (self.written or self.staged):
            return CleanupResult()
        written = tuple(dict.fromkeys(self.written))
        staged = tuple(dict.fromkeys(self.staged))
        return await run_to_completion(
            workflow.start_activity_method(
                SagaActivities.compensate,
                CompensateArgs(self.table, self.key, self.saga_id, written, staged),
                start_to_close_timeout=CLEAN_UP,
                retry_policy=UNTIL_DONE,
                summary=f"compensate: delete {plural(len(written) + len(staged), 'object')}",
            )
        )

    async def clean_up(self, pivot: PivotResult, what: str) -> tuple[str, ...]:
        """After the pivot: delete the objects it superseded (unless the table keeps old
        versions), retried until done."""
        if not self.options.delete_old_objects:
            return ()
        object_keys = tuple(
            keys.parse_s3_uri(uri)[1]
            for uri in pivot.superseded
            if keys.under_prefix(self.table, uri)
        )
        if not object_keys:
            return ()
        deleted: tuple[str, ...] = await run_to_completion(
            workflow.start_activity_method(
                SagaActivities.delete_objects,
                DeleteObjectsArgs(self.table.bucket, object_keys, self.table),
                start_to_close_timeout=CLEAN_UP,
                retry_policy=UNTIL_DONE,
                summary=f"delete {plural(len(object_keys), what)}",
            )
        )
        return tuple(keys.s3_uri(self.table.bucket, k) for k in deleted)

    def result(
        self,
        operation: str,
        pivot: PivotResult,
        deleted: tuple[str, ...],
        stored: Sequence[StoredBlob] = (),
    ) -> ItemResult:
        return ItemResult(
            operation=operation,
            table_name=self.table.table_name,
            key=self.key,
            version=pivot.version,
            blobs=tuple(stored),
            deleted_objects=deleted,
            saga_id=self.saga_id,
        )


# ---------------------------------------------------------------- failures


def activity_cause(err: BaseException) -> BaseException | None:
    """What a failed activity raised, under the ActivityError(s) that carry it."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError):
        cause = cause.cause
    return None if cause is None else our_error(cause)


def definite(err: BaseException) -> bool:
    """True if a failed pivot certainly did not commit. Any other failure (retries run
    out, cancelled between attempts, AccessDenied on a retry...) may follow an attempt
    that committed and lost its response: ``Saga._settle`` finds out."""
    return isinstance(err, LargeAttrError) or isinstance(activity_cause(err), CONDITION_FAILED)


def final_error(err: BaseException) -> LargeAttrError:
    """The saga's failure for a failed step: the error the step raised (a new instance,
    so that ``raise ... from err`` holds no cycle)."""
    cause = err if isinstance(err, LargeAttrError) else activity_cause(err)
    if isinstance(cause, LargeAttrError):
        return type(cause)(cause.message, **cause.details)
    if isinstance(cause, ApplicationError):
        return SagaFailed(f"{cause.type or 'error'}: {cause.message}")
    if isinstance(cause, TimeoutError):
        return SagaFailed(f"a step timed out ({cause.type}); the saga was compensated")
    if cause is not None and is_cancelled_exception(cause):
        return SagaFailed("the saga was cancelled before its pivot; nothing was changed")
    return SagaFailed(str(cause) or type(cause).__name__)


def stop_if_cancelled() -> None:
    """Steps that may write are waited for when the saga is cancelled, not abandoned, so a
    cancel request can arrive while one runs to completion. It still stops the saga here,
    before its pivot (and so gets compensated)."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError("cancellation requested before the pivot")


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


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
