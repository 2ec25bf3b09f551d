"""Update saga: read -> upload new blobs (compensatable) -> update item if the version is
unchanged (pivot) -> delete the objects the old version referenced and the new one does not
(retriable)."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from largeattr import keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import LargeAttrError
    from largeattr.messages import (
        ItemChanges,
        ItemResult,
        ReadItemArgs,
        UpdateItemArgs,
        UpdateItemInput,
    )
    from largeattr.workflows.steps import (
        BEFORE_PIVOT,
        DYNAMODB_CALL,
        PIVOT_CALL,
        WAIT,
        Saga,
        after_failure,
        check_request,
        delete_objects,
        require_version,
        stop_if_cancelled,
        store_blobs,
    )


@workflow.defn(name="largeattr.UpdateItem", failure_exception_types=[LargeAttrError])
class UpdateItemWorkflow:
    @workflow.run
    async def run(self, request: UpdateItemInput) -> ItemResult:
        check_request(
            request.table,
            request.key,
            request.blobs,
            {
                "update set": list(request.set_attributes),
                "update remove": request.remove_attributes,
                "update add": list(request.add_attributes),
                "update delete": list(request.delete_from_sets),
            },
            removed_blobs=request.remove_blobs,
        )
        saga = Saga(request.table, request.key, workflow.info().run_id, workflow.now().isoformat())
        item = keys.item_path(request.table, request.key)
        pivot_started = False
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
            stop_if_cancelled()
            pivot_started = True
            pivot = await workflow.execute_activity_method(
                SagaActivities.update_item,
                UpdateItemArgs(
                    request.table, request, tuple(stored), state, saga.saga_id, saga.updated_at
                ),
                start_to_close_timeout=PIVOT_CALL,
                retry_policy=BEFORE_PIVOT,
                cancellation_type=WAIT,
                summary=f"pivot: update item (if version {state.version})",
            )
        except (ActivityError, LargeAttrError, asyncio.CancelledError) as err:
            read = state if pivot_started else None
            pivot = await after_failure(saga, request.options, err, read)

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
