"""Delete saga: read -> delete item if the version is unchanged (pivot) -> delete its
objects (retriable). Nothing precedes the pivot, so nothing needs compensation."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.saga import SagaActivities
    from largeattr import keys
    from largeattr.errors import LargeAttrError
    from largeattr.messages import DeleteItemArgs, DeleteItemInput, ItemResult, ReadItemArgs
    from workflows.steps import (
        BEFORE_PIVOT,
        DYNAMODB_CALL,
        check_workflow_id,
        delete_objects,
        final_error,
        require_version,
    )


@workflow.defn(name="largeattr.DeleteItem", failure_exception_types=[LargeAttrError])
class DeleteItemWorkflow:
    @workflow.run
    async def run(self, request: DeleteItemInput) -> ItemResult:
        check_workflow_id(request.table, request.key)
        saga_id = workflow.info().run_id
        item = keys.item_path(request.table, request.key)
        try:
            state = await workflow.execute_activity_method(
                SagaActivities.read_item,
                ReadItemArgs(request.table, request.key),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"read {item}",
            )
            require_version(state, request.expected_version, item, "nothing to delete")

            pivot = await workflow.execute_activity_method(
                SagaActivities.delete_item,
                DeleteItemArgs(request.table, request.key, state, saga_id),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"pivot: delete item (if version {state.version})",
            )
        except ActivityError as err:
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
