"""Delete saga: read -> delete item if the version is unchanged (pivot) -> delete its
objects (retriable). Nothing precedes the pivot, so nothing needs compensation."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from largeattr import keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import LargeAttrError
    from largeattr.messages import (
        DeleteItemArgs,
        DeleteItemInput,
        ItemResult,
        PivotResult,
        ReadItemArgs,
    )
    from largeattr.workflows.steps import (
        BEFORE_PIVOT,
        DYNAMODB_CALL,
        PIVOT_CALL,
        WAIT,
        check_request,
        definite,
        delete_objects,
        final_error,
        require_version,
        settle_pivot,
        stop_if_cancelled,
    )


@workflow.defn(name="largeattr.DeleteItem", failure_exception_types=[LargeAttrError])
class DeleteItemWorkflow:
    @workflow.run
    async def run(self, request: DeleteItemInput) -> ItemResult:
        check_request(request.table, request.key)
        saga_id = workflow.info().run_id
        item = keys.item_path(request.table, request.key)
        pivot: PivotResult | None = None
        pivot_started = False
        try:
            state = await workflow.execute_activity_method(
                SagaActivities.read_item,
                ReadItemArgs(request.table, request.key),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"read {item}",
            )
            require_version(state, request.expected_version, item, "nothing to delete")

            stop_if_cancelled()
            pivot_started = True
            pivot = await workflow.execute_activity_method(
                SagaActivities.delete_item,
                DeleteItemArgs(request.table, request.key, state, saga_id),
                start_to_close_timeout=PIVOT_CALL,
                retry_policy=BEFORE_PIVOT,
                cancellation_type=WAIT,
                summary=f"pivot: delete item (if version {state.version})",
            )
        except (ActivityError, LargeAttrError, asyncio.CancelledError) as err:
            if pivot_started and not definite(err):
                pivot = await settle_pivot(
                    request.table, request.key, saga_id, state, deleting=True
                )
            if pivot is None:
                if is_cancelled_exception(err):
                    raise  # the saga ends cancelled; nothing was changed
                raise final_error(err) from err

        deleted: tuple[str, ...] = ()
        if request.options.delete_old_objects:
            deleted = await delete_objects(request.table, pivot.superseded, "object")
        return ItemResult(
            operation="delete",
            table_name=request.table.table_name,
            key=request.key,
            version=pivot.version,
            deleted_objects=deleted,
            saga_id=saga_id,
        )
