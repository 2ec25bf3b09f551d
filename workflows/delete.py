"""Delete saga: read -> delete item if the version is unchanged (pivot) -> delete its
objects (retriable). Nothing precedes the pivot, so the ledger stays empty."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import LargeAttrError
    from largeattr.messages import DeleteItemArgs, DeleteItemInput, ItemResult
    from largeattr.workflows.checks import check_request, require_version
    from largeattr.workflows.saga import Saga, SagaWorkflow


@workflow.defn(name="largeattr.DeleteItem", failure_exception_types=[LargeAttrError])
class DeleteItemWorkflow(SagaWorkflow):
    @workflow.run
    async def run(self, request: DeleteItemInput) -> ItemResult:
        saga = self.begin("delete", request.table, request.key, request.options)
        return await saga.run(lambda: self.steps(saga, request))

    async def steps(self, saga: Saga, request: DeleteItemInput) -> ItemResult:
        async with saga.compensating():
            check_request(request.table, request.key)
            state = await saga.expect(request.read, None)
            require_version(state, request.expected_version, saga.item, "nothing to delete")
            pivot = await saga.pivot(
                SagaActivities.delete_item,
                DeleteItemArgs(request.table, request.key, state, saga.saga_id),
                expected=state,
                summary=f"delete item (if version {state.version})",
                deleting=True,
            )
        deleted = await saga.clean_up(pivot, "object")
        return saga.result("delete", pivot, deleted)
