"""The saga engine: one saga's phase, its ledger of writes, its pivot and its compensation.

    saga = Saga.begin(request.table, request.key, request.options)
    async with saga.compensating():   # a failure in here undoes what the ledger holds
        state = await saga.read()                        # before the pivot
        stored = await store_blobs(saga, request.blobs)  # each key enters the ledger
        pivot = await saga.pivot(SagaActivities.put_item, args, expected=state, summary=...)
    deleted = await saga.clean_up(pivot, "old object")   # after the pivot: until done

Short steps (the read, inline uploads, the pivot, compensation, clean-up) run as *local
activities* in sagas started since the fast path (``FAST_PATH``): the worker runs them inside
the workflow task, so a whole saga with inline blobs is one or two workflow tasks instead of a
server round trip per step. Each still shows in the history (a marker with its summary and
result) and keeps its retry policy; a worker that dies mid-task is replaced once the workflow
task times out, and the new one runs the steps again (each is idempotent). Steps that move
large blobs stay regular activities (heartbeats, resume, a client's own task queue). Sagas
recorded before the fast path replay on regular activities, as they ran.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from largeattr import keys, search_attributes, telemetry
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import (
        BUSINESS_ERRORS,
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
    from largeattr.transfer import human_size
    from largeattr.workflows.policies import (
        BEFORE_PIVOT,
        CLEAN_UP,
        DYNAMODB_CALL,
        PIVOT_CALL,
        UNTIL_DONE,
        WAIT,
    )

T = TypeVar("T")

#: Sagas started since this patch run their short steps as local activities, skip the read
#: before a plain create, and record their outcome in search attributes.
FAST_PATH = "largeattr-local-steps"

#: What a failed step of the saga raised: an activity's failure, our own verdict, a cancel.
#: A regular activity's failure arrives as an ``ActivityError`` around its cause; a local
#: activity's as the cause itself (our error class, an ``ApplicationError``, a timeout),
#: hence ``FailureError``, the base of all of Temporal's failures.
STEP_FAILURES = (FailureError, LargeAttrError, asyncio.CancelledError)
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
    #: Short steps as local activities (``FAST_PATH``); False when replaying older sagas.
    local: bool = False
    operation: str = ""
    #: The steps running now, and what the saga wrote: the current details, the state query.
    now: list[str] = field(default_factory=list)
    bytes_written: int = 0
    outcome: str = "running"
    #: What compensation found and did, once it ran.
    compensation: CleanupResult | None = None

    @staticmethod
    def begin(operation: str, table: TableSpec, key: ItemKey, options: SagaOptions) -> Saga:
        info = workflow.info()
        saga = Saga(table, key, options, info.run_id, workflow.now().isoformat())
        saga.operation = operation
        saga.local = workflow.patched(FAST_PATH)
        return saga

    @property
    def item(self) -> str:
        try:
            return keys.item_path(self.table, self.key)
        except (LargeAttrError, KeyError, TypeError, ValueError):  # a key the checks refuse
            return repr(self.key)

    # ------------------------------------------------------------ the ledger

    def will_write(self, object_key: str) -> str:
        """Record a key before the step that may write it, so compensation knows it."""
        self.written.append(object_key)
        return object_key

    def will_stage(self, staging_key: str) -> str:
        self.staged.append(staging_key)
        return staging_key

    def stored(self, blob: StoredBlob) -> StoredBlob:
        """Count an object a step reported as stored (for the details and LaBytesWritten)."""
        if blob.created:
            self.bytes_written += blob.meta.size
            self._show()
        return blob

    # ------------------------------------------------------------ what it does now

    def doing(self, step: str) -> None:
        """A step starts: show it in the Web UI's current details (and the ``state`` query)."""
        self.now.append(step)
        self._show()

    def did(self, step: str) -> None:
        """A step ended (done, failed or cancelled)."""
        if step in self.now:
            self.now.remove(step)
            self._show()

    async def tracked(self, step: str, running: Awaitable[T]) -> T:
        """Await a step that is not run by ``start_step`` (a large blob's transfer), shown
        as running meanwhile."""
        self.doing(step)
        try:
            return await running
        finally:
            self.did(step)

    def _show(self) -> None:
        written = len(self.objects)
        now = "; ".join(self.now) if self.now else self.outcome
        details = (
            f"**{self.operation}** `{self.item}`: {self.phase.name.lower().replace('_', ' ')}\n\n"
            f"- now: {now}\n"
            f"- objects written so far: {written} ({human_size(self.bytes_written)} new)"
        )
        if self.compensation is not None:
            details += f"\n- compensation: {self.undone}"
        workflow.set_current_details(details)

    def state(self) -> dict[str, Any]:
        """The ``state`` query's answer: the same as the current details, as data."""
        return {
            "operation": self.operation,
            "table": self.table.table_name,
            "item": self.item,
            "phase": self.phase.name.lower(),
            "now": list(self.now),
            "objects": list(self.objects),
            "bytes_written": self.bytes_written,
            "outcome": self.outcome,
            "compensation": self.undone,
        }

    @property
    def objects(self) -> tuple[str, ...]:
        """Every key in the ledger, once: what compensation would look at."""
        return tuple(dict.fromkeys(self.written + self.staged))

    @property
    def undone(self) -> str:
        """What compensation did, counted from its result ("" until it ran): the current
        details, the log line and a compensated saga's error all say this."""
        result = self.compensation
        if result is None:
            return ""
        said = [f"deleted {len(result.deleted)} of {plural(len(self.objects), 'object')}"]
        if result.missing:
            were = "was" if len(result.missing) == 1 else "were"
            said.append(f"{len(result.missing)} {were} not there (already gone, or never written)")
        if result.kept:
            said.append(f"{len(result.kept)} kept (referenced by the item, or another saga's)")
        if result.aborted_uploads:
            said.append(f"aborted {plural(result.aborted_uploads, 'unfinished upload')}")
        return "; ".join(said)

    def finish(self, outcome: str, error: BaseException | None = None) -> None:
        """Record the outcome (and the step failure that decided it, if any) in the search
        attributes, when the saga was started with them (``LargeAttrClient`` sets them; a
        plain client may not, and upserting an attribute the namespace lacks would fail the
        workflow task), and in its metrics and log line (never on replay)."""
        self.outcome = outcome
        self._show()
        telemetry.saga_finished(self, outcome, error)
        if not self.local:
            return
        if workflow.info().typed_search_attributes.get(search_attributes.OUTCOME) is None:
            return
        workflow.upsert_search_attributes(
            [
                search_attributes.OUTCOME.value_set(outcome),
                search_attributes.BYTES_WRITTEN.value_set(self.bytes_written),
            ]
        )

    # ------------------------------------------------------------ running a step

    def start_step(
        self,
        activity: Callable[..., Any],
        arg: Any,
        *,
        summary: str,
        per_attempt: timedelta,
        retry: Any,
        wait: bool = False,
    ) -> asyncio.Task[Any]:
        """Start a short step: a local activity on the fast path, else a regular one."""
        options: dict[str, Any] = {
            "start_to_close_timeout": per_attempt,
            "retry_policy": retry,
            "summary": summary,
        }
        if wait:
            options["cancellation_type"] = WAIT
        if self.local:
            step = workflow.start_local_activity_method(activity, arg, **options)
        else:
            step = workflow.start_activity_method(activity, arg, **options)
        self.doing(summary)
        step.add_done_callback(lambda _: self.did(summary))
        return step

    async def run_step(
        self,
        activity: Callable[..., Any],
        arg: Any,
        *,
        summary: str,
        per_attempt: timedelta,
        retry: Any,
        wait: bool = False,
    ) -> Any:
        step = self.start_step(
            activity, arg, summary=summary, per_attempt=per_attempt, retry=retry, wait=wait
        )
        if not self.local:
            return await step
        # A local step is never abandoned to a cancel request: it runs in this worker, so
        # waiting for it costs nothing, and its result (a committed pivot) is never lost.
        # The request stops the saga before its pivot (``stop_if_cancelled``).
        return await run_to_completion(step, "finishing the step first")

    # ------------------------------------------------------------ the steps

    async def read(self, changes: ItemChanges | None = None) -> ItemState:
        """The item as it is now (consistent read); with ``changes``, also checks that the
        item will still fit once they are applied. A regular activity even on the fast path:
        its result must be recorded before anything depends on it (see ``expect``)."""
        state: ItemState = await self.tracked(
            f"read {self.item}",
            workflow.execute_activity_method(
                SagaActivities.read_item,
                ReadItemArgs(self.table, self.key, changes),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"read {self.item}",
            ),
        )
        return state

    async def expect(self, read: ItemState | None, changes: ItemChanges | None) -> ItemState:
        """The item the pivot's condition names: as the client read it (part of the input),
        or else read now. On the fast path the steps are local activities, which a lost
        workflow task runs again; the "before" they compare against must not move then, or a
        pivot that committed the first time would be mistaken for someone else's change."""
        if self.local and read is not None:
            return read
        return await self.read(changes)

    async def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run the saga's steps. On the fast path a cancel request never interrupts them (each
        is short and runs here); the pivot looks at it (``pivot``), so that every run of
        these steps, a re-run after a lost workflow task too, decides the same way."""
        if not self.local:
            return await body()
        return await run_to_completion(
            asyncio.ensure_future(body()), "the saga stops at its pivot unless it committed"
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
        if self.local and workflow.cancellation_reason() is not None:
            # Cancelled before the pivot. An earlier run of these steps, whose workflow task
            # was lost (a worker crash, or this very cancel request arriving as it
            # completed), may have committed it: only the item can tell.
            self.phase = Phase.AT_PIVOT
            settled = await self._settle(expected, deleting)
            if settled is not None:
                self.phase = Phase.AFTER_PIVOT
                return settled
            self.phase = Phase.BEFORE_PIVOT
        stop_if_cancelled()
        self.phase = Phase.AT_PIVOT
        try:
            result: PivotResult = await self.run_step(
                step,
                args,
                summary=f"pivot: {summary}",
                per_attempt=PIVOT_CALL,
                retry=BEFORE_PIVOT,
                wait=True,
            )
        except STEP_FAILURES as err:
            if definite(err):
                self.phase = Phase.BEFORE_PIVOT  # it certainly did not commit
                raise
            settled = await self._settle(expected, deleting)
            if settled is None:
                self.phase = Phase.BEFORE_PIVOT
                raise
            result = settled
        self.phase = Phase.AFTER_PIVOT
        return result

    async def _settle(self, before: ItemState, deleting: bool) -> PivotResult | None:
        """The pivot ended without an answer, yet an attempt may have committed before its
        response was lost. Read the item (until a read succeeds): the pivot's result if it
        committed, None if not (either way counted in ``largeattr_settled_pivots``). Nothing
        of the pivot is on the wire any more (PIVOT_CALL)."""
        now = await run_to_completion(
            self.start_step(
                SagaActivities.read_item,
                ReadItemArgs(self.table, self.key),
                summary=f"settle: did the pivot commit? read {self.item}",
                per_attempt=DYNAMODB_CALL,
                retry=UNTIL_DONE,
            )
        )
        committed = not now.exists if deleting else now.exists and now.saga_id == self.saga_id
        telemetry.pivot_settled(self.operation, committed)
        if not committed:
            return None
        still: set[str] = set() if deleting else set(now.refs.values())
        version = before.version if deleting else now.version
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
            wrote = bool(self.written or self.staged) and self.options.clean_up_on_failure
            await self.compensate()
            self.finish(outcome_of(err, wrote), err)
            if is_cancelled_exception(err):
                raise
            raise final_error(err, self.undone) from err

    async def compensate(self) -> CleanupResult:
        """Remove what this saga wrote before its pivot failed; retried until done."""
        if not self.options.clean_up_on_failure or not (self.written or self.staged):
            return CleanupResult()
        written = tuple(dict.fromkeys(self.written))
        staged = tuple(dict.fromkeys(self.staged))
        # The ledger holds every key a step may have written: the count is what it looks at.
        result: CleanupResult = await run_to_completion(
            self.start_step(
                SagaActivities.compensate,
                CompensateArgs(self.table, self.key, self.saga_id, written, staged),
                summary=f"compensate: remove up to {plural(len(self.objects), 'object')} "
                "this saga wrote",
                per_attempt=CLEAN_UP,
                retry=UNTIL_DONE,
            )
        )
        self.compensation = result
        self._show()
        return result

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
            self.start_step(
                SagaActivities.delete_objects,
                DeleteObjectsArgs(self.table.bucket, object_keys, self.table),
                summary=f"delete {plural(len(object_keys), what)}",
                per_attempt=CLEAN_UP,
                retry=UNTIL_DONE,
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
        self.finish("committed")
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


def outcome_of(err: BaseException, wrote: bool) -> str:
    """A failed saga's outcome: compensated (it had written objects, now removed), refused
    (a verdict on the item or the input, nothing written), cancelled or failed."""
    if wrote:
        return "compensated"
    if is_cancelled_exception(err):
        return "cancelled"
    cause = err if isinstance(err, LargeAttrError) else activity_cause(err)
    return "refused" if isinstance(cause, BUSINESS_ERRORS) else "failed"


def definite(err: BaseException) -> bool:
    """True if a failed pivot certainly did not commit: its condition failed and, looking
    at the item, no earlier attempt of its own had committed; or its first attempt was
    refused (no table, no access, an item too large). Any other failure (retries run
    out, cancelled between attempts, AccessDenied on a retry...) may follow an attempt
    that committed and lost its response: ``Saga._settle`` finds out."""
    return isinstance(activity_cause(err), CONDITION_FAILED) or nothing_written(err)


def nothing_written(err: BaseException) -> bool:
    """True if a step was refused on its first attempt, before it wrote anything
    (``largeattr.activities.saga.refusal_on_first_attempt``)."""
    cause = activity_cause(err)
    return isinstance(cause, LargeAttrError) and cause.details.get("nothing_written") is True


def final_error(err: BaseException, undone: str = "") -> LargeAttrError:
    """The saga's failure for a failed step, and what compensation did if it ran."""
    error = step_failure(err)
    if not undone:
        return error
    return type(error)(f"{error.message.rstrip('.')}. Compensation {undone}.", **error.details)


def step_failure(err: BaseException) -> LargeAttrError:
    """The error a failed step raised (a new instance, so that ``raise ... from err`` holds
    no cycle)."""
    cause = err if isinstance(err, LargeAttrError) else activity_cause(err)
    if isinstance(cause, LargeAttrError):
        return type(cause)(cause.message, **cause.details)
    if isinstance(cause, ApplicationError):
        return SagaFailed(f"{cause.type or 'error'}: {cause.message}")
    if isinstance(cause, TimeoutError):
        return SagaFailed(f"a step timed out ({cause.type})")
    if cause is not None and is_cancelled_exception(cause):
        return SagaFailed("the saga was cancelled before its pivot; nothing was changed")
    return SagaFailed(str(cause) or type(cause).__name__)


def stop_if_cancelled() -> None:
    """Steps that may write are waited for when the saga is cancelled, not abandoned, so a
    cancel request can arrive while one runs to completion. It still stops the saga here,
    before its pivot (and so gets compensated)."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError("cancellation requested before the pivot")


async def run_to_completion(step: asyncio.Task[T], then: str = "finishing clean-up first") -> T:
    """Await a clean-up step even if the workflow is cancelled meanwhile: once the saga
    committed (or must compensate), leaving clean-up half done would leave orphans."""
    while True:
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            if step.done():
                raise
            workflow.logger.info("cancellation requested; %s", then)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class SagaWorkflow:
    """What the three saga workflows share: the ``state`` query over their ``Saga``."""

    saga: Saga | None = None

    def begin(self, operation: str, table: TableSpec, key: ItemKey, options: SagaOptions) -> Saga:
        self.saga = Saga.begin(operation, table, key, options)
        return self.saga

    @workflow.query(name="state")
    def state(self) -> dict[str, Any]:
        """Where the saga stands: operation, item, phase, step, objects written, outcome."""
        if self.saga is None:
            return {"now": ["checking the input"], "outcome": "running"}
        return self.saga.state()
