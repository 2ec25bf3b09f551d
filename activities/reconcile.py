"""The batched reconcile pass as an activity, and its per-item locks on Temporal.

The S3 and DynamoDB work is ``largeattr.reconcile.Reconciler``; this module adds what needs
the Temporal client of the worker (``activity.client()``): taking an item's workflow id (a
``largeattr.CleanItem`` start with a ``start_delay``, the lease) and giving it back
(terminating that run). See ``largeattr/reconcile.py`` for why this is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from largeattr import keys
from largeattr.messages import CleanItemInput, CleanupResult, ItemKey, TableSpec
from largeattr.reconcile import LOCK_LEASE

#: The workflow type a lock runs as when its lease ends (workflows/reconcile.py).
CLEAN_ITEM = "largeattr.CleanItem"


class TemporalLocks:
    """Item locks held as delayed ``CleanItem`` executions under each item's workflow id."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    async def acquire(
        self, spec: TableSpec, item_key: ItemKey, object_keys: Sequence[str]
    ) -> WorkflowHandle[Any, CleanupResult] | None:
        path = keys.item_path(spec, item_key)
        try:
            return await self.client.start_workflow(
                CLEAN_ITEM,
                CleanItemInput(spec, item_key, tuple(object_keys)),
                id=keys.workflow_id(spec, item_key),
                task_queue=self.task_queue,
                result_type=CleanupResult,
                start_delay=LOCK_LEASE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                static_summary=(
                    f"reconcile holds {spec.table_name} {path} while it deletes "
                    f"{len(object_keys)} unreferenced object(s)"
                ),
                static_details=(
                    "A lock: no saga can start on the item while this run is open. The "
                    "reconcile pass terminates it once its batched delete is done; if the "
                    f"pass stops, it runs after {LOCK_LEASE} and deletes what the item "
                    "still does not reference."
                ),
            )
        except WorkflowAlreadyStartedError:
            return None  # a saga holds the item: its objects wait for the next pass

    async def release(self, handle: WorkflowHandle[Any, Any]) -> None:
        try:
            await handle.terminate(reason="reconcile: batched delete done, lock released")
        except Exception as err:  # the lease ends it anyway
            activity.logger.warning("could not release %s (its lease ends it): %s", handle.id, err)


def locks_for_this_worker() -> TemporalLocks:
    """Locks on the worker's own client and task queue (where CleanItem runs)."""
    return TemporalLocks(activity.client(), activity.info().task_queue)
