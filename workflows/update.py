"""Update saga: read -> upload new blobs (compensatable) -> update item if the version is
unchanged (pivot) -> delete the objects the old version referenced and the new one does not
(retriable)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.saga import SagaActivities
    from largeattr import keys
    from largeattr.errors import LargeAttrError
    from largeattr.messages import (
        ItemChanges,
        ItemResult,
        ReadItemArgs,
        UpdateItemArgs,
        UpdateItemInput,
    )
    from workflows.steps import (
        BEFORE_PIVOT,
        DYNAMODB_CALL,
        Saga,
        check_workflow_id,
        compensate,
        delete_objects,
        final_error,
        require_version,
        store_blobs,
    )


@workflow.defn(name="largeattr.UpdateItem", failure_exception_types=[LargeAttrError])
class UpdateItemWorkflow:
    @workflow.run
    async def run(self, request: UpdateItemInput) -> ItemResult:
        check_workflow_id(request.table, request.key)
        saga = Saga(request.table, request.key, workflow.info().run_id, workflow.now().isoformat())
        item = keys.item_path(request.table, request.key)
        try:
            state = await workflow.execute_activity_method(
                SagaActivities.read_item,
                ReadItemArgs(
                    request.table,
                    request.key,
                    ItemChanges(
                        set_attributes={**request.set_attributes, **request.add_attributes},
                        remove_attributes=request.remove_attributes + request.remove_blobs,
                        blob_attributes=tuple(b.attribute for b in request.blobs),
                    ),
                ),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"read {item}",
            )
            require_version(state, request.expected_version, item, "create it first")

            stored = await store_blobs(saga, request.blobs)
            pivot = await workflow.execute_activity_method(
                SagaActivities.update_item,
                UpdateItemArgs(
                    request.table, request, tuple(stored), state, saga.saga_id, saga.updated_at
                ),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"pivot: update item (if version {state.version})",
            )
        except (ActivityError, LargeAttrError) as err:
            await compensate(saga, request.options)
            raise final_error(err) from err

        deleted: tuple[str, ...] = ()
        if request.options.delete_old_objects:
            deleted = await delete_objects(request.table, pivot.superseded, "old object")
        return ItemResult(
            operation="update",
            table_name=request.table.table_name,
            key=request.key,
            version=pivot.version,
            blobs=tuple(stored),
            deleted_objects=deleted,
            saga_id=saga.saga_id,
        )
