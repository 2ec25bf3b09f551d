"""Create saga: upload blobs (compensatable) -> put item if absent (pivot) -> [overwrite:
delete the replaced item's objects (retriable)]."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import ItemAlreadyExists, LargeAttrError
    from largeattr.messages import CreateItemInput, ItemChanges, ItemResult, PutItemArgs
    from largeattr.workflows.blobs import store_blobs
    from largeattr.workflows.checks import check_request
    from largeattr.workflows.saga import Saga


@workflow.defn(name="largeattr.CreateItem", failure_exception_types=[LargeAttrError])
class CreateItemWorkflow:
    @workflow.run
    async def run(self, request: CreateItemInput) -> ItemResult:
        check_request(
            request.table, request.key, request.blobs, {"attributes": list(request.attributes)}
        )
        saga = Saga.begin(request.table, request.key, request.options)
        async with saga.compensating():
            state = await saga.read(
                ItemChanges(
                    set_attributes=request.attributes,
                    blob_attributes=tuple(b.attribute for b in request.blobs),
                    replace=True,
                )
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
