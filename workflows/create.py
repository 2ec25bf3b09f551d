"""Create saga: [overwrite: the item as read] -> upload blobs (compensatable) -> put item if
absent, or if still at the version read (pivot) -> [overwrite: delete the replaced item's
objects (retriable)]."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import ItemAlreadyExists, LargeAttrError
    from largeattr.messages import (
        CreateItemInput,
        ItemChanges,
        ItemResult,
        ItemState,
        PutItemArgs,
    )
    from largeattr.workflows.blobs import store_blobs
    from largeattr.workflows.checks import check_request
    from largeattr.workflows.saga import Saga, SagaWorkflow


@workflow.defn(name="largeattr.CreateItem", failure_exception_types=[LargeAttrError])
class CreateItemWorkflow(SagaWorkflow):
    @workflow.run
    async def run(self, request: CreateItemInput) -> ItemResult:
        saga = self.begin("create", request.table, request.key, request.options)
        return await saga.run(lambda: self.steps(saga, request))

    async def steps(self, saga: Saga, request: CreateItemInput) -> ItemResult:
        async with saga.compensating():
            check_request(
                request.table, request.key, request.blobs, {"attributes": list(request.attributes)}
            )
            if saga.local and not request.overwrite:
                # No read: the pivot's condition (the item is absent) is the check; an item
                # that exists refuses it, and the uploads are compensated.
                state = ItemState(exists=False)
            else:
                state = await saga.expect(
                    request.read,
                    ItemChanges(
                        set_attributes=request.attributes,
                        blob_attributes=tuple(b.attribute for b in request.blobs),
                        replace=True,
                    ),
                )
            if state.exists and not request.overwrite:
                raise ItemAlreadyExists(
                    f"item {saga.item} already exists (version {state.version}); use update, "
                    "or create with overwrite=True"
                )
            stored = await store_blobs(saga, request.blobs)
            pivot = await saga.pivot(
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
                expected=state,
                summary="put item "
                + (f"(if version {state.version})" if state.exists else "(if absent)"),
            )
        deleted = await saga.clean_up(pivot, "replaced object")
        return saga.result("create", pivot, deleted, stored)
