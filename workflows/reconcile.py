"""Reconcile: find objects under a table's prefix that no item references, and delete them.

Today's pass (``_batched``) is a loop of ``reconcile_chunk`` activities, each a few listing
pages judged from the keys and the listing, items read with BatchGetItem and orphans
deleted with DeleteObjects under per-item locks (``largeattr/reconcile.py`` says why that
never races a saga). Its totals are the workflow's result and its current details in the
Web UI; it continues as new when Temporal suggests it, so history stays bounded. Runs
started before it (no ``batched-reconcile`` patch marker) replay the per-page pass below.

Sagas compensate their own failures, so orphans only come from outside them: a workflow
terminated by hand, ``clean_up_on_failure=False``, the step-by-step API, a bug. Each item's
orphans are deleted by a ``CleanItem`` child workflow whose id is the item's workflow id:
Temporal then guarantees that no saga on that item runs meanwhile, so an object a saga has
just uploaded (not yet referenced) is never mistaken for garbage. Busy items are skipped and
picked up by the next pass.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from largeattr import keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.messages import (
        CleanItemInput,
        CleanupResult,
        FindOrphansArgs,
        OrphanGroup,
        ReconcileChunkArgs,
        ReconcileInput,
        ReconcileResult,
    )
    from largeattr.reconcile import describe, merged
    from largeattr.workflows.policies import (
        RECONCILE_CHUNK,
        RECONCILE_HEARTBEAT,
        RECONCILE_ITEM,
        RECONCILE_PAGE,
        UNTIL_DONE,
    )
    from largeattr.workflows.saga import plural

#: Items cleaned at once by one pass.
PARALLEL_ITEMS = 16
#: Chunks one run handles before it continues as new (history stays small either way).
CHUNKS_PER_RUN = 200


@workflow.defn(name="largeattr.CleanItem")
class CleanItemWorkflow:
    @workflow.run
    async def run(self, request: CleanItemInput) -> CleanupResult:
        return await workflow.execute_activity_method(
            SagaActivities.delete_unreferenced,
            request,
            start_to_close_timeout=RECONCILE_ITEM,
            retry_policy=UNTIL_DONE,
            summary=f"delete {plural(len(request.keys), 'unreferenced object')}",
        )


@workflow.defn(name="largeattr.Reconcile")
class ReconcileWorkflow:
    @workflow.run
    async def run(self, request: ReconcileInput) -> ReconcileResult:
        if workflow.patched("batched-reconcile"):
            return await self._batched(request)
        totals = request.totals or ReconcileResult()
        token = request.continuation_token
        while True:
            page = await workflow.execute_activity_method(
                SagaActivities.find_orphans,
                FindOrphansArgs(
                    request.table,
                    request.grace_seconds,
                    request.upload_grace_seconds,
                    request.page_size,
                    token,
                    staged_only=request.keep_old_versions,
                    dry_run=request.dry_run,
                ),
                start_to_close_timeout=RECONCILE_PAGE,
                retry_policy=UNTIL_DONE,
                summary=f"scan up to {request.page_size} objects for orphans",
            )
            found = sum(len(group.keys) for group in page.groups)
            deleted, busy = 0, 0
            if not request.dry_run:
                for start in range(0, len(page.groups), PARALLEL_ITEMS):
                    batch = page.groups[start : start + PARALLEL_ITEMS]
                    results = await asyncio.gather(*(self._clean(request, g) for g in batch))
                    deleted += sum(r for r in results if r is not None)
                    busy += sum(1 for r in results if r is None)
            totals = ReconcileResult(
                objects_scanned=totals.objects_scanned + page.scanned,
                orphans_found=totals.orphans_found + found,
                objects_deleted=totals.objects_deleted + deleted,
                uploads_aborted=totals.uploads_aborted + page.uploads_aborted,
                items_busy=totals.items_busy + busy,
                unattributed=totals.unattributed + len(page.unattributed),
            )
            token = page.next_token
            if token is None:
                return totals
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(replace(request, continuation_token=token, totals=totals))

    async def _batched(self, request: ReconcileInput) -> ReconcileResult:
        totals = request.totals or ReconcileResult()
        start_after = request.start_after
        for done in range(CHUNKS_PER_RUN):
            workflow.set_current_details(describe(totals, start_after))
            chunk = await workflow.execute_activity_method(
                SagaActivities.reconcile_chunk,
                ReconcileChunkArgs(
                    request.table,
                    request.grace_seconds,
                    request.upload_grace_seconds,
                    page_size=request.page_size,
                    pages=request.pages_per_chunk,
                    start_after=start_after,
                    staged_only=request.keep_old_versions,
                    dry_run=request.dry_run,
                    abort_uploads=start_after is None and totals.chunks == 0,
                ),
                start_to_close_timeout=RECONCILE_CHUNK,
                heartbeat_timeout=RECONCILE_HEARTBEAT,
                retry_policy=UNTIL_DONE,
                summary=(
                    f"reconcile {request.pages_per_chunk * request.page_size} objects"
                    + (f" after {start_after}" if start_after else "")
                )[:400],
            )
            totals = merged(totals, chunk.result)
            start_after = chunk.next_start_after
            if start_after is None:
                workflow.set_current_details(describe(totals))
                return totals
            if workflow.info().is_continue_as_new_suggested() or done == CHUNKS_PER_RUN - 1:
                break
        workflow.continue_as_new(replace(request, start_after=start_after, totals=totals))

    async def _clean(self, request: ReconcileInput, group: OrphanGroup) -> int | None:
        """Deleted count, or None when a saga holds the item (try again next pass)."""
        try:
            result = await workflow.execute_child_workflow(
                CleanItemWorkflow.run,
                CleanItemInput(request.table, group.item_key, group.keys),
                id=keys.workflow_id(request.table, group.item_key),
                static_summary=(
                    f"reconcile {request.table.table_name} "
                    f"{keys.item_path(request.table, group.item_key)}: "
                    f"{plural(len(group.keys), 'orphan')}"
                ),
            )
        except WorkflowAlreadyStartedError:
            return None
        return len(result.deleted)
