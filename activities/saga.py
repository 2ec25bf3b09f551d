"""The saga steps as Temporal activities: every S3 and DynamoDB call happens here.

Each activity is a thin wrapper around ``largeattr.storage.Storage`` (the step-by-step API)
and is idempotent. Errors a user can act on are ``LargeAttrError`` classes; the worker's
failure converter (``largeattr.failures``) sends them as ``ApplicationError`` of the same
name, and the workflows' retry policies name which of those are final.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity

from largeattr import keys
from largeattr.activities.heartbeat import Beating
from largeattr.activities.reconcile import locks_for_this_worker
from largeattr.blobs import put_spec
from largeattr.errors import SourceUnavailable
from largeattr.messages import (
    CleanItemInput,
    CleanupResult,
    CompensateArgs,
    DeleteItemArgs,
    DeleteObjectsArgs,
    FindOrphansArgs,
    ItemState,
    OrphanPage,
    PivotResult,
    PrepareBlobArgs,
    PreparedBlob,
    PromoteBlobArgs,
    PutItemArgs,
    ReadItemArgs,
    ReconcileChunk,
    ReconcileChunkArgs,
    StageBlobArgs,
    StoredBlob,
    UpdateItemArgs,
    UploadBlobArgs,
)
from largeattr.reconcile import Reconciler, run_beating
from largeattr.sources import SourceRegistry
from largeattr.storage import Storage
from largeattr.transfer.config import TransferConfig
from largeattr.transfer.digests import digest_bytes, digest_reader
from largeattr.transfer.multipart import UploadProgress

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client


def _progress(progress: UploadProgress) -> dict[str, Any]:
    """An upload's heartbeat details: where a retried attempt resumes."""
    return {
        "upload_id": progress.upload_id,
        "part_size": progress.part_size,
        "parts_done": progress.parts_done,
        "bytes_done": progress.bytes_done,
    }


def _resumed_progress() -> UploadProgress:
    """Resume state left by an earlier attempt of this activity (its last heartbeat)."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict) and details[0].get("upload_id"):
        progress = UploadProgress(
            upload_id=str(details[0]["upload_id"]),
            part_size=int(details[0].get("part_size") or 0),
        )
        # How many parts S3 holds is asked of S3 (ListParts), not taken from this heartbeat.
        activity.logger.info("resuming multipart upload %s", progress.upload_id)
        return progress
    return UploadProgress()


class SagaActivities:
    """The activities of the create / update / delete sagas, on injected boto3 clients."""

    def __init__(
        self,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        transfer: TransferConfig | None = None,
        sources: SourceRegistry | None = None,
    ) -> None:
        self.storage = Storage(s3, dynamodb, transfer)
        self.sources = sources or SourceRegistry()
        self.reconciler = Reconciler(s3, dynamodb)

    # ------------------------------------------------------------ before the pivot

    @activity.defn(name="largeattr.read_item")
    def read_item(self, args: ReadItemArgs) -> ItemState:
        return self.storage.items.read_item(args.table, args.key, args.changes)

    @activity.defn(name="largeattr.prepare_blob")
    def prepare_blob(self, args: PrepareBlobArgs) -> PreparedBlob:
        """Hash a source where it lives, so its content-addressed key is known up front."""
        blob = args.blob
        if blob.inline_b64 is not None:
            return digest_bytes(blob.inline_bytes())
        if blob.source is None:
            raise SourceUnavailable(f"blob {blob.attribute!r} has neither bytes nor a source")
        with self.sources.open(blob.source) as reader, Beating() as beat:
            return digest_reader(reader, progress=beat)

    @activity.defn(name="largeattr.upload_blob")
    def upload_blob(self, args: UploadBlobArgs) -> StoredBlob:
        """Write a blob to its final key: single PUT, or a multipart upload that resumes."""
        blob = args.blob
        put = put_spec(
            args.table,
            args.item_key,
            blob,
            args.object_key,
            args.prepared.sha256 if args.prepared else blob.sha256 or "",
            args.saga_id,
            args.updated_at,
        )
        if blob.inline_b64 is not None:
            data = blob.inline_bytes()
            prepared = digest_bytes(data)
            if blob.sha256 and prepared.sha256 != blob.sha256:
                raise SourceUnavailable(
                    f"inline bytes of {blob.attribute!r} do not match their sha256"
                )
            return self.storage.blobs.store(
                put, blob, prepared, lambda: io.BytesIO(data), args.saga_id
            )
        if blob.source is None or args.prepared is None:
            raise SourceUnavailable(f"blob {blob.attribute!r} has neither bytes nor a source")
        source = blob.source
        progress = _resumed_progress()
        with self.sources.random_access(source) as read_part, Beating() as beat:
            return self.storage.blobs.store(
                put,
                blob,
                args.prepared,
                lambda: self.sources.open(source),
                args.saga_id,
                progress=progress,
                on_progress=lambda done: beat(_progress(done)),
                read_part=read_part,
            )

    @activity.defn(name="largeattr.stage_blob")
    def stage_blob(self, args: StageBlobArgs) -> PreparedBlob:
        """Stream a one-pass source to a staging key, hashing it on the way."""
        blob = args.blob
        if blob.source is None:
            raise SourceUnavailable(f"blob {blob.attribute!r} has no source to stage")
        if activity.info().attempt > 1:
            raise SourceUnavailable(
                f"the stream for {blob.attribute!r} failed part-way and cannot be read again; "
                "pass a file or bytes to make the upload retryable"
            )
        put = put_spec(
            args.table, args.item_key, blob, args.staging_key, "", args.saga_id, args.updated_at
        )
        with self.sources.open(blob.source) as reader, Beating() as beat:
            return self.storage.blobs.stage(
                put, reader, UploadProgress(), lambda done: beat(_progress(done))
            )

    @activity.defn(name="largeattr.promote_blob")
    def promote_blob(self, args: PromoteBlobArgs) -> StoredBlob:
        """Server-side copy of a staged stream to its content-addressed key."""
        put = put_spec(
            args.table,
            args.item_key,
            args.blob,
            args.object_key,
            args.prepared.sha256,
            args.saga_id,
            args.updated_at,
        )
        with Beating():  # a server-side copy of many GiB reports nothing until it ends
            return self.storage.blobs.promote(
                args.staging_key, put, args.blob, args.prepared, args.saga_id
            )

    # ------------------------------------------------------------ the pivots

    @activity.defn(name="largeattr.put_item")
    def put_item(self, args: PutItemArgs) -> PivotResult:
        return self.storage.items.put_item(args)

    @activity.defn(name="largeattr.update_item")
    def update_item(self, args: UpdateItemArgs) -> PivotResult:
        return self.storage.items.update_item(args)

    @activity.defn(name="largeattr.delete_item")
    def delete_item(self, args: DeleteItemArgs) -> PivotResult:
        return self.storage.items.delete_item(args)

    # ------------------------------------------------------------ after the pivot / undo

    @activity.defn(name="largeattr.delete_objects")
    def delete_objects(self, args: DeleteObjectsArgs) -> tuple[str, ...]:
        table = args.table
        ours = [k for k in args.keys if table is None or keys.owns_key(table, k)]
        return self.storage.cleanup.delete_objects(args.bucket, ours)

    @activity.defn(name="largeattr.compensate")
    def compensate(self, args: CompensateArgs) -> CleanupResult:
        return self.storage.cleanup.compensate(args)

    # ------------------------------------------------------------ reconcile

    @activity.defn(name="largeattr.find_orphans")
    def find_orphans(self, args: FindOrphansArgs) -> OrphanPage:
        return self.storage.cleanup.find_orphans(args)

    @activity.defn(name="largeattr.delete_unreferenced")
    def delete_unreferenced(self, args: CleanItemInput) -> CleanupResult:
        return self.storage.cleanup.delete_unreferenced(args.table, args.item_key, args.keys)

    @activity.defn(name="largeattr.reconcile_chunk")
    async def reconcile_chunk(self, args: ReconcileChunkArgs) -> ReconcileChunk:
        """A few listing pages: judged from keys and listing, items batch-read, orphans
        batch-deleted under their items' locks (largeattr/reconcile.py)."""
        locks = None if args.dry_run else locks_for_this_worker()
        return await run_beating(self.reconciler.chunk(args, locks), activity.heartbeat)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [
            self.read_item,
            self.prepare_blob,
            self.upload_blob,
            self.stage_blob,
            self.promote_blob,
            self.put_item,
            self.update_item,
            self.delete_item,
            self.delete_objects,
            self.compensate,
            self.find_orphans,
            self.delete_unreferenced,
            self.reconcile_chunk,
        ]

    def blob_activities(self) -> list[Callable[..., Any]]:
        """The activities a process holding blob bytes serves on its own task queue."""
        return [self.prepare_blob, self.upload_blob, self.stage_blob]
