"""The saga steps as Temporal activities: every S3 and DynamoDB call happens here.

Each activity is a thin wrapper around ``largeattr.storage.Storage`` (the step-by-step API)
and is idempotent. Errors a user can act on are ``LargeAttrError`` classes; the worker's
failure converter (``largeattr.failures``) sends them as ``ApplicationError`` of the same
name, and the workflows' retry policies name which of those are final.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from temporalio import activity

from largeattr import adopt, keys, telemetry
from largeattr.activities.heartbeat import Beating
from largeattr.activities.reconcile import locks_for_this_worker
from largeattr.blobs import put_spec
from largeattr.errors import (
    AccessDenied,
    BucketNotFound,
    InvalidInput,
    LargeAttrError,
    SourceUnavailable,
    TableNotFound,
)
from largeattr.messages import (
    AdoptItemArgs,
    BlobInput,
    CleanItemInput,
    CleanupResult,
    CompensateArgs,
    CopyForeignArgs,
    DeleteItemArgs,
    DeleteObjectsArgs,
    FindOrphansArgs,
    HashedForeign,
    HashForeignArgs,
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


def _count_upload(stored: StoredBlob, progress: UploadProgress) -> None:
    """Bytes this attempt sent, and the parts it did not send because S3 held them."""
    if not progress.upload_id:  # a single PUT (or nothing: the object was already there)
        telemetry.count(telemetry.BYTES_UPLOADED, stored.meta.size if stored.created else 0)
        return
    size, part = stored.meta.size, progress.part_size
    sent = sum(min(part, size - (n - 1) * part) for n in progress.part_numbers_sent)
    telemetry.count(telemetry.BYTES_UPLOADED, sent)
    telemetry.count(telemetry.PARTS_RESUMED, progress.parts_done - len(progress.part_numbers_sent))


#: Refusals AWS (or our own checks) give before anything is written.
REFUSED_BEFORE_WRITING: tuple[type[LargeAttrError], ...] = (
    AccessDenied,
    BucketNotFound,
    InvalidInput,
    SourceUnavailable,
    TableNotFound,
)


@contextlib.contextmanager
def refusal_on_first_attempt() -> Iterator[None]:
    """Mark a refusal on a step's first attempt as ``nothing_written``: no earlier attempt
    can have written anything, so the saga need not undo the step (and need not wait for a
    compensation that the same refusal, wrong credentials say, would keep failing)."""
    try:
        yield
    except REFUSED_BEFORE_WRITING as err:
        if activity.info().attempt == 1:
            err.details["nothing_written"] = True
        raise


def _beating() -> contextlib.AbstractContextManager[Callable[..., None]]:
    """Heartbeats for a regular activity; a local one (a small object on the fast path)
    has none: it runs within the workflow task."""
    if activity.info().is_local:
        return contextlib.nullcontext(lambda *_: None)
    return Beating()


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
        with refusal_on_first_attempt():
            return self._upload_blob(args)

    def _upload_blob(self, args: UploadBlobArgs) -> StoredBlob:
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
            stored = self.storage.blobs.store(
                put, blob, prepared, lambda: io.BytesIO(data), args.saga_id
            )
            telemetry.count(telemetry.BYTES_UPLOADED, stored.meta.size if stored.created else 0)
            return stored
        if blob.source is None or args.prepared is None:
            raise SourceUnavailable(f"blob {blob.attribute!r} has neither bytes nor a source")
        source = blob.source
        progress = _resumed_progress()
        with self.sources.random_access(source) as read_part, Beating() as beat:
            stored = self.storage.blobs.store(
                put,
                blob,
                args.prepared,
                lambda: self.sources.open(source),
                args.saga_id,
                progress=progress,
                on_progress=lambda done: self._progress(beat, source, done),
                read_part=read_part,
            )
        self.sources.report(source, stored.meta.size)
        _count_upload(stored, progress)
        return stored

    def _progress(self, beat: Callable[[Any], None], source: str, done: UploadProgress) -> None:
        """Heartbeat where a retry resumes; tell the process holding the bytes (the client's
        ``on_progress``) how far the upload is."""
        beat(_progress(done))
        self.sources.report(source, done.bytes_done)

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
        source = blob.source
        with self.sources.open(source) as reader, Beating() as beat:
            prepared = self.storage.blobs.stage(
                put, reader, UploadProgress(), lambda done: self._progress(beat, source, done)
            )
        self.sources.report(source, prepared.size)
        telemetry.count(telemetry.BYTES_UPLOADED, prepared.size)  # a stream is sent once
        return prepared

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
        with refusal_on_first_attempt():
            return self.storage.items.put_item(args)

    @activity.defn(name="largeattr.update_item")
    def update_item(self, args: UpdateItemArgs) -> PivotResult:
        with refusal_on_first_attempt():
            return self.storage.items.update_item(args)

    @activity.defn(name="largeattr.delete_item")
    def delete_item(self, args: DeleteItemArgs) -> PivotResult:
        with refusal_on_first_attempt():
            return self.storage.items.delete_item(args)

    # ------------------------------------------------------------ after the pivot / undo

    @activity.defn(name="largeattr.delete_objects")
    def delete_objects(self, args: DeleteObjectsArgs) -> tuple[str, ...]:
        table = args.table
        ours = [k for k in args.keys if table is None or keys.owns_key(table, k)]
        deleted = self.storage.cleanup.delete_objects(args.bucket, ours)
        telemetry.count(telemetry.OBJECTS_DELETED, len(deleted), reason="clean_up")
        return deleted

    @activity.defn(name="largeattr.compensate")
    def compensate(self, args: CompensateArgs) -> CleanupResult:
        result = self.storage.cleanup.compensate(args)
        telemetry.count(telemetry.OBJECTS_DELETED, len(result.deleted), reason="compensation")
        return result

    # ------------------------------------------------------------ reconcile

    @activity.defn(name="largeattr.find_orphans")
    def find_orphans(self, args: FindOrphansArgs) -> OrphanPage:
        return self.storage.cleanup.find_orphans(args)

    @activity.defn(name="largeattr.delete_unreferenced")
    def delete_unreferenced(self, args: CleanItemInput) -> CleanupResult:
        result = self.storage.cleanup.delete_unreferenced(args.table, args.item_key, args.keys)
        telemetry.count(telemetry.OBJECTS_DELETED, len(result.deleted), reason="reconcile")
        return result

    # ------------------------------------------------------------ adopt (pynamodb_mate items)

    @activity.defn(name="largeattr.hash_foreign")
    def hash_foreign(self, args: HashForeignArgs) -> HashedForeign:
        """Read a pynamodb_mate object, check it against the MD5 in its key, hash it."""
        with refusal_on_first_attempt(), _beating() as beat:
            return adopt.hash_foreign(
                self.storage.s3, args.blob, progress=lambda done: beat(done), max_size=args.max_size
            )

    @activity.defn(name="largeattr.copy_foreign")
    def copy_foreign(self, args: CopyForeignArgs) -> StoredBlob:
        """Server-side copy of a pynamodb_mate object (the version hashed) to its key."""
        hashed = args.hashed
        if hashed.prepared is None:
            raise InvalidInput(f"{hashed.blob.uri} was not hashed; hash it before copying")
        blob = BlobInput(
            attribute=hashed.blob.attribute,
            content_type=hashed.content_type,
            content_encoding=hashed.content_encoding,
        )
        put = put_spec(
            args.table,
            args.item_key,
            blob,
            args.object_key,
            hashed.prepared.sha256,
            args.saga_id,
            args.updated_at,
        )
        bucket, key = keys.parse_s3_uri(hashed.blob.uri)
        with refusal_on_first_attempt(), _beating():  # a big copy reports nothing until it ends
            return self.storage.blobs.copy_in(
                bucket,
                key,
                put,
                blob,
                hashed.prepared,
                args.saga_id,
                gone=f"{hashed.blob.uri} was deleted while it was adopted",
                source_etag=hashed.etag,
            )

    @activity.defn(name="largeattr.adopt_item")
    def adopt_item(self, args: AdoptItemArgs) -> PivotResult:
        with refusal_on_first_attempt():
            return self.storage.items.adopt_item(args)

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
            self.hash_foreign,
            self.copy_foreign,
            self.adopt_item,
            self.reconcile_chunk,
        ]

    def blob_activities(self) -> list[Callable[..., Any]]:
        """The activities a process holding blob bytes serves on its own task queue."""
        return [self.prepare_blob, self.upload_blob, self.stage_blob]
