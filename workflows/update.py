"""Update saga: read -> upload new blobs (compensatable) -> update item if the version is
unchanged (pivot) -> delete the objects the old version referenced and the new one does not
(retriable)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import LargeAttrError
    from largeattr.messages import ItemChanges, ItemResult, UpdateItemArgs, UpdateItemInput
    from largeattr.workflows.blobs import store_blobs
    from largeattr.workflows.checks import check_request, require_version
    from largeattr.workflows.saga import Saga, SagaWorkflow


@workflow.defn(name="largeattr.UpdateItem", failure_exception_types=[LargeAttrError])
class UpdateItemWorkflow(SagaWorkflow):
    @workflow.run
    async def run(self, request: UpdateItemInput) -> ItemResult:
        saga = self.begin("update", request.table, request.key, request.options)
        return await saga.run(lambda: self.steps(saga, request))

    async def steps(self, saga: Saga, request: UpdateItemInput) -> ItemResult:
        async with saga.compensating():
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
            state = await saga.expect(
                request.read,
                ItemChanges(
                    set_attributes={**request.set_attributes, **request.add_attributes},
                    remove_attributes=request.remove_attributes + request.remove_blobs,
                    blob_attributes=tuple(b.attribute for b in request.blobs),
                ),
            )
            require_version(state, request.expected_version, saga.item, "create it first")
            stored = await store_blobs(saga, request.blobs)
            pivot = await saga.pivot(
                SagaActivities.update_item,
                UpdateItemArgs(
                    request.table, request, tuple(stored), state, saga.saga_id, saga.updated_at
                ),
                expected=state,
                summary=f"update item (if version {state.version})",
            )
        deleted = await saga.clean_up(pivot, "old object")
        return saga.result("update", pivot, deleted, stored)
