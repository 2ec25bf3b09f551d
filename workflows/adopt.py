"""Adopt saga, for an item pynamodb_mate wrote: [the item as read] -> hash each old object,
checked against the MD5 in its key -> copy it server-side to its content-addressed key
(compensatable) -> replace the old URIs with the copies, la_meta and a version, if the item
is as read (pivot) -> delete the old objects (retriable).

Small objects are hashed and copied as short steps (local activities on the fast path), so
adopting a typical item costs the Temporal server about what a create does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from largeattr import adopt, keys
    from largeattr.activities.saga import SagaActivities
    from largeattr.errors import LargeAttrError
    from largeattr.messages import (
        AdoptItemArgs,
        AdoptItemInput,
        AdoptResult,
        CopyForeignArgs,
        DeleteObjectsArgs,
        ForeignBlob,
        HashedForeign,
        HashForeignArgs,
        StoredBlob,
    )
    from largeattr.transfer import MiB, human_size
    from largeattr.workflows.checks import check_request
    from largeattr.workflows.policies import (
        BEFORE_PIVOT,
        CLEAN_UP,
        LARGE_TRANSFER,
        SMALL_UPLOAD,
        TRANSFER_HEARTBEAT,
        UNTIL_DONE,
        WAIT,
    )
    from largeattr.workflows.saga import Saga, SagaWorkflow, plural, run_to_completion

T = TypeVar("T")

#: Objects up to this size are hashed and copied as short steps (local activities on the
#: fast path); bigger ones as regular activities that heartbeat for as long as they take.
SHORT_STEP_BYTES = 8 * MiB


@workflow.defn(name="largeattr.AdoptItem", failure_exception_types=[LargeAttrError])
class AdoptItemWorkflow(SagaWorkflow):
    @workflow.run
    async def run(self, request: AdoptItemInput) -> AdoptResult:
        saga = self.begin("adopt", request.table, request.key, request.options)
        return await saga.run(lambda: self.steps(saga, request))

    async def steps(self, saga: Saga, request: AdoptItemInput) -> AdoptResult:
        async with saga.compensating():
            check_request(request.table, request.key)
            state = await saga.expect(request.read, None)
            plan = adopt.plan(request.table, request.key, state)
            if plan.outcome != adopt.ADOPT:
                saga.finish(plan.outcome)
                return AdoptResult(
                    plan.outcome,
                    request.table.table_name,
                    request.key,
                    version=state.version,
                    reason=plan.reason,
                    saga_id=saga.saga_id,
                )
            hashed = await settled([hash_foreign(saga, blob) for blob in plan.foreign])
            stored = await settled([copy_foreign(saga, h) for h in hashed])
            pivot = await saga.pivot(
                SagaActivities.adopt_item,
                AdoptItemArgs(
                    request.table,
                    request.key,
                    tuple(stored),
                    plan.foreign,
                    state,
                    saga.saga_id,
                    saga.updated_at,
                ),
                expected=state,
                summary=f"adopt item (if version {state.version} and the old URIs)",
            )
        deleted = await delete_old(saga, plan.foreign) if request.options.delete_old_objects else ()
        saga.finish("committed")
        return AdoptResult(
            adopt.ADOPTED,
            request.table.table_name,
            request.key,
            version=pivot.version,
            blobs=tuple(stored),
            deleted_objects=deleted,
            saga_id=saga.saga_id,
        )


async def settled(steps: Sequence[Awaitable[T]]) -> list[T]:
    """Run steps in parallel; wait for all to settle before reporting a failure, so that
    compensation never races a copy still in flight."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]


async def hash_foreign(saga: Saga, blob: ForeignBlob) -> HashedForeign:
    summary = f"hash {blob.attribute} ({blob.uri}), check md5 {blob.md5}"
    if saga.local:
        short: HashedForeign = await saga.run_step(
            SagaActivities.hash_foreign,
            HashForeignArgs(saga.table, blob, SHORT_STEP_BYTES),
            summary=summary,
            per_attempt=SMALL_UPLOAD,
            retry=BEFORE_PIVOT,
        )
        if short.prepared is not None:
            return short
    saga.doing(f"read and hash {blob.uri}")
    hashed: HashedForeign = await workflow.execute_activity_method(
        SagaActivities.hash_foreign,
        HashForeignArgs(saga.table, blob),
        start_to_close_timeout=LARGE_TRANSFER,
        heartbeat_timeout=TRANSFER_HEARTBEAT,
        retry_policy=BEFORE_PIVOT,
        summary=summary,
    )
    return hashed


async def copy_foreign(saga: Saga, hashed: HashedForeign) -> StoredBlob:
    attribute, prepared = hashed.blob.attribute, hashed.prepared
    if prepared is None:
        raise ApplicationError(f"{hashed.blob.uri} was not hashed", non_retryable=True)
    object_key = saga.will_write(keys.object_key(saga.table, saga.key, attribute, prepared.sha256))
    args = CopyForeignArgs(saga.table, saga.key, hashed, object_key, saga.saga_id, saga.updated_at)
    summary = f"copy {attribute} ({human_size(prepared.size)}, server-side)"
    stored: StoredBlob
    if saga.local and prepared.size <= SHORT_STEP_BYTES:
        stored = await saga.run_step(
            SagaActivities.copy_foreign,
            args,
            summary=summary,
            per_attempt=SMALL_UPLOAD,
            retry=BEFORE_PIVOT,
            wait=True,
        )
    else:
        stored = await workflow.execute_activity_method(
            SagaActivities.copy_foreign,
            args,
            start_to_close_timeout=LARGE_TRANSFER,
            heartbeat_timeout=TRANSFER_HEARTBEAT,
            retry_policy=BEFORE_PIVOT,
            cancellation_type=WAIT,
            summary=summary,
        )
    return saga.stored(stored)


async def delete_old(saga: Saga, old: Sequence[ForeignBlob]) -> tuple[str, ...]:
    """After the pivot: delete the pynamodb_mate objects the item no longer references,
    retried until done. Not ``Saga.clean_up``: these keys are not the table's own."""
    by_bucket: dict[str, list[str]] = {}
    for blob in old:
        bucket, key = keys.parse_s3_uri(blob.uri)
        by_bucket.setdefault(bucket, []).append(key)
    deleted: list[str] = []
    for bucket, object_keys in sorted(by_bucket.items()):
        done: tuple[str, ...] = await run_to_completion(
            saga.start_step(
                SagaActivities.delete_objects,
                DeleteObjectsArgs(bucket, tuple(object_keys)),
                summary=f"delete {plural(len(object_keys), 'pynamodb_mate object')}",
                per_attempt=CLEAN_UP,
                retry=UNTIL_DONE,
            )
        )
        deleted += [keys.s3_uri(bucket, key) for key in done]
    return tuple(deleted)
