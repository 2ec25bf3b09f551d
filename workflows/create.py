"""Create saga: upload blobs (compensatable) -> put item if absent (pivot) -> [overwrite:
delete the replaced item's objects (retriable)]."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from largeattr import keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import ItemAlreadyExists, LargeAttrError
    from largeattr.messages import (
        CreateItemInput,
        ItemChanges,
        ItemResult,
        PutItemArgs,
        ReadItemArgs,
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
        stop_if_cancelled,
        store_blobs,
    )


@workflow.defn(name="largeattr.CreateItem", failure_exception_types=[LargeAttrError])
class CreateItemWorkflow:
    @workflow.run
    async def run(self, request: CreateItemInput) -> ItemResult:
        check_request(
            request.table, request.key, request.blobs, {"attributes": list(request.attributes)}
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
                        set_attributes=request.attributes,
                        blob_attributes=tuple(b.attribute for b in request.blobs),
                        replace=True,
                    ),
                ),
                start_to_close_timeout=DYNAMODB_CALL,
                retry_policy=BEFORE_PIVOT,
                summary=f"read {item}",
            )
            if state.exists and not request.overwrite:
                raise ItemAlreadyExists(
                    f"item {item} already exists (version {state.version}); use update, "
                    "or create with overwrite=True"
                )

            stored = await store_blobs(saga, request.blobs)
            condition = f"if version {state.version}" if state.exists else "if absent"
            stop_if_cancelled()
            pivot_started = True
            pivot = await workflow.execute_activity_method(
                SagaActivities.put_item,
                PutItemArgs(
                    request.table,
                    request.key,
                    request.attributes,
                    tuple(stored),
                    state,
                    saga.saga_id,
                    saga.updated_at,
                ),
                start_to_close_timeout=PIVOT_CALL,
                retry_policy=BEFORE_PIVOT,
                cancellation_type=WAIT,
                summary=f"pivot: put item ({condition})",
            )
        except (ActivityError, LargeAttrError, asyncio.CancelledError) as err:
            read = state if pivot_started else None
            pivot = await after_failure(saga, request.options, err, read)

        deleted: tuple[str, ...] = ()
        if request.options.delete_old_objects:
            deleted = await delete_objects(request.table, pivot.superseded, "replaced object")
        return ItemResult(
            operation="create",
            table_name=request.table.table_name,
            key=request.key,
            version=pivot.version,
            blobs=tuple(stored),
            deleted_objects=deleted,
            saga_id=saga.saga_id,
        )
