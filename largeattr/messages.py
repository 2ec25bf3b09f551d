"""Every type that crosses the Temporal wire, in one place.

Frozen dataclasses, serialised by Temporal's JSON converter. They evolve by adding optional
fields at the end, never by renaming, so histories written by an older release replay.

DynamoDB values travel in DynamoDB's own JSON form (``{"S": "text"}``, ``{"N": "12"}``,
``{"B": "<base64>"}``), so numbers keep their precision and binary values survive JSON.
Blob bytes travel only when small (``BlobInput.inline_b64``); larger blobs travel as a
``source`` reference that the process holding the bytes resolves.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

#: One DynamoDB value in DynamoDB JSON form, binary as base64 text.
AttributeValue = dict[str, Any]
#: The primary key of an item: attribute name -> DynamoDB JSON value.
ItemKey = dict[str, AttributeValue]


@dataclass(frozen=True)
class TableSpec:
    """Where a table's items and their large attributes live. Data only: it travels."""

    table_name: str
    partition_key: str
    bucket: str
    prefix: str
    large_attributes: tuple[str, ...]
    sort_key: str | None = None
    #: Replaceable key function, as a template: see ``largeattr.keys``.
    key_template: str | None = None
    #: Numeric attribute every committed write increments (optimistic lock).
    version_attribute: str = "la_version"


@dataclass(frozen=True)
class SagaOptions:
    """pynamodb_mate's two switches, with its defaults."""

    #: Remove the objects this saga wrote when it fails before or at the pivot.
    clean_up_on_failure: bool = True
    #: After the pivot, delete the objects the old version referenced and the new one does not.
    delete_old_objects: bool = True


@dataclass(frozen=True)
class S3Options:
    """S3 settings passed through to every object a blob writes."""

    server_side_encryption: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    cache_control: str | None = None
    #: User metadata (``x-amz-meta-*``) of the blob's object, beside ours (``la-*``).
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BlobInput:
    """One large attribute value to store, as the saga receives it.

    Exactly one of ``inline_b64`` (small blobs, bytes in the history) and ``source`` (a
    reference that the process serving ``task_queue`` resolves: ``mem:<id>`` for bytes or
    a stream it holds, ``file:<path>`` for a file it may read) is set.
    """

    attribute: str
    content_type: str = "application/octet-stream"
    content_encoding: str | None = None
    inline_b64: str | None = None
    sha256: str | None = None
    size: int | None = None
    source: str | None = None
    task_queue: str | None = None
    #: False for a one-pass stream: it is staged, hashed on the way, then copied into place.
    seekable: bool = True
    s3: S3Options | None = None

    @staticmethod
    def inline(
        attribute: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        content_encoding: str | None = None,
        s3: S3Options | None = None,
    ) -> BlobInput:
        return BlobInput(
            attribute=attribute,
            content_type=content_type,
            content_encoding=content_encoding,
            inline_b64=base64.b64encode(data).decode("ascii"),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            s3=s3,
        )

    def inline_bytes(self) -> bytes:
        if self.inline_b64 is None:
            raise ValueError(f"blob {self.attribute!r} has no inline bytes")
        return base64.b64decode(self.inline_b64)


@dataclass(frozen=True)
class BlobMeta:
    """What a reader needs to know about a large attribute without calling S3."""

    size: int
    sha256: str
    content_type: str
    content_encoding: str | None = None


@dataclass(frozen=True)
class StoredBlob:
    """A blob at its final content-addressed key."""

    attribute: str
    bucket: str
    key: str
    meta: BlobMeta
    #: True when this saga wrote the object (False: identical content was already there).
    created: bool = True

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


# ---------------------------------------------------------------- workflow inputs


@dataclass(frozen=True)
class CreateItemInput:
    table: TableSpec
    key: ItemKey
    blobs: tuple[BlobInput, ...] = ()
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    #: Replace an existing item (its old objects are deleted after the pivot).
    overwrite: bool = False
    options: SagaOptions = SagaOptions()
    #: The item as the client read it just before starting the saga (consistent read): the
    #: version the pivot's condition names and the objects it replaces. Part of the input,
    #: so a re-run of the saga's steps (local activities after a lost workflow task) sees
    #: the same "before". None: the saga reads the item itself.
    read: ItemState | None = None


@dataclass(frozen=True)
class UpdateItemInput:
    table: TableSpec
    key: ItemKey
    blobs: tuple[BlobInput, ...] = ()
    #: Large attributes to remove (set to none).
    remove_blobs: tuple[str, ...] = ()
    set_attributes: dict[str, AttributeValue] = field(default_factory=dict)
    remove_attributes: tuple[str, ...] = ()
    #: DynamoDB ADD: add a number, or add elements to a set.
    add_attributes: dict[str, AttributeValue] = field(default_factory=dict)
    #: DynamoDB DELETE: remove elements from a set.
    delete_from_sets: dict[str, AttributeValue] = field(default_factory=dict)
    #: Commit only if the item is still at this version (None: whatever version it has now).
    expected_version: int | None = None
    options: SagaOptions = SagaOptions()
    #: The item as the client read it just before starting the saga (consistent read): the
    #: version the pivot's condition names and the objects it replaces. Part of the input,
    #: so a re-run of the saga's steps (local activities after a lost workflow task) sees
    #: the same "before". None: the saga reads the item itself.
    read: ItemState | None = None


@dataclass(frozen=True)
class DeleteItemInput:
    table: TableSpec
    key: ItemKey
    expected_version: int | None = None
    options: SagaOptions = SagaOptions()
    #: The item as the client read it just before starting the saga (consistent read): the
    #: version the pivot's condition names and the objects it replaces. Part of the input,
    #: so a re-run of the saga's steps (local activities after a lost workflow task) sees
    #: the same "before". None: the saga reads the item itself.
    read: ItemState | None = None


# ---------------------------------------------------------------- activity inputs / outputs


@dataclass(frozen=True)
class ItemState:
    """The item as the saga's first step read it (consistent read)."""

    exists: bool
    version: int = 0
    #: The run id of the saga that last committed the item ("" for foreign writers).
    saga_id: str = ""
    #: Large attribute -> s3:// URI it references.
    refs: dict[str, str] = field(default_factory=dict)
    meta: dict[str, BlobMeta] = field(default_factory=dict)
    size_bytes: int = 0


@dataclass(frozen=True)
class ItemChanges:
    """What a write will change, so that the read step can check the item's new size."""

    set_attributes: dict[str, AttributeValue] = field(default_factory=dict)
    remove_attributes: tuple[str, ...] = ()
    blob_attributes: tuple[str, ...] = ()
    #: True when the write replaces the whole item (create, overwrite).
    replace: bool = False


@dataclass(frozen=True)
class ReadItemArgs:
    table: TableSpec
    key: ItemKey
    changes: ItemChanges | None = None


@dataclass(frozen=True)
class PrepareBlobArgs:
    blob: BlobInput


@dataclass(frozen=True)
class PreparedBlob:
    """A source's digest, taken before upload so its final key is known."""

    sha256: str
    size: int
    #: Full-object CRC32 (base64), the checksum S3 verifies on a multipart upload.
    crc32: str


@dataclass(frozen=True)
class UploadBlobArgs:
    table: TableSpec
    item_key: ItemKey
    blob: BlobInput
    object_key: str
    saga_id: str
    updated_at: str
    prepared: PreparedBlob | None = None


@dataclass(frozen=True)
class StageBlobArgs:
    table: TableSpec
    item_key: ItemKey
    blob: BlobInput
    staging_key: str
    saga_id: str
    updated_at: str


@dataclass(frozen=True)
class PromoteBlobArgs:
    table: TableSpec
    item_key: ItemKey
    blob: BlobInput
    staging_key: str
    object_key: str
    prepared: PreparedBlob
    saga_id: str
    updated_at: str


@dataclass(frozen=True)
class PutItemArgs:
    table: TableSpec
    key: ItemKey
    attributes: dict[str, AttributeValue]
    blobs: tuple[StoredBlob, ...]
    expected: ItemState
    saga_id: str
    updated_at: str


@dataclass(frozen=True)
class UpdateItemArgs:
    table: TableSpec
    request: UpdateItemInput
    blobs: tuple[StoredBlob, ...]
    expected: ItemState
    saga_id: str
    updated_at: str


@dataclass(frozen=True)
class DeleteItemArgs:
    table: TableSpec
    key: ItemKey
    expected: ItemState
    saga_id: str


@dataclass(frozen=True)
class PivotResult:
    """What the pivot committed, and which objects the old version referenced."""

    version: int
    #: URIs the old version referenced and the new one does not (ours to delete).
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeleteObjectsArgs:
    bucket: str
    keys: tuple[str, ...]
    #: Delete only the keys this table's key template produces (None: all of them).
    table: TableSpec | None = None


@dataclass(frozen=True)
class CompensateArgs:
    """Objects a failed saga may have written; only its own, unreferenced ones go."""

    table: TableSpec
    item_key: ItemKey
    saga_id: str
    keys: tuple[str, ...] = ()
    staging_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class CleanupResult:
    deleted: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    aborted_uploads: int = 0
    #: Compensation only: keys it found absent (never written, or already gone), so that
    #: ``deleted`` counts only what it removed. Batch deletes count them as deleted.
    missing: tuple[str, ...] = ()


# ---------------------------------------------------------------- workflow results


@dataclass(frozen=True)
class ItemResult:
    """What a saga committed. Never carries blob bytes (Temporal payload limits)."""

    operation: str
    table_name: str
    key: ItemKey
    version: int
    blobs: tuple[StoredBlob, ...] = ()
    #: URIs deleted after the pivot (old versions, or a deleted item's objects).
    deleted_objects: tuple[str, ...] = ()
    saga_id: str = ""


# ---------------------------------------------------------------- reconcile


@dataclass(frozen=True)
class ReconcileResult:
    objects_scanned: int = 0
    orphans_found: int = 0
    objects_deleted: int = 0
    uploads_aborted: int = 0
    #: Items with a saga running during the pass; their orphans wait for the next pass.
    items_busy: int = 0
    #: Unreferenced objects without an item key in their metadata: reported, never deleted.
    unattributed: int = 0
    # Added by the batched pass (optional, so older results still decode).
    bytes_scanned: int = 0
    orphan_bytes: int = 0
    bytes_deleted: int = 0
    #: Items looked up (BatchGetItem) because the listing holds objects of theirs.
    items_checked: int = 0
    #: References of this table's key shape whose object the listing does not hold:
    #: reported, never "fixed".
    dangling: int = 0
    sample_orphans: tuple[str, ...] = ()
    sample_dangling: tuple[str, ...] = ()
    sample_unattributed: tuple[str, ...] = ()
    sample_busy: tuple[str, ...] = ()
    #: Activities (each a few listing pages) the pass ran, over all its continue-as-new runs.
    chunks: int = 0


@dataclass(frozen=True)
class ReconcileInput:
    """Find objects under a table's prefix that no item references, and delete them."""

    table: TableSpec
    #: Objects younger than this are left alone (a step-by-step writer may be mid-way).
    grace_seconds: int = 900
    #: Unfinished multipart uploads older than this are aborted.
    upload_grace_seconds: int = 86_400
    #: The table keeps old versions on purpose: delete nothing but staged streams.
    keep_old_versions: bool = False
    dry_run: bool = False
    page_size: int = 1000
    continuation_token: str | None = None
    totals: ReconcileResult | None = None
    #: Batched pass: resume the listing after this key (None: from the start).
    start_after: str | None = None
    #: Listing pages (``page_size`` keys each) one activity handles.
    pages_per_chunk: int = 20


@dataclass(frozen=True)
class FindOrphansArgs:
    table: TableSpec
    grace_seconds: int
    upload_grace_seconds: int
    page_size: int
    continuation_token: str | None = None
    staged_only: bool = False
    #: Count stale multipart uploads without aborting them.
    dry_run: bool = False


@dataclass(frozen=True)
class OrphanGroup:
    item_key: ItemKey
    keys: tuple[str, ...]


@dataclass(frozen=True)
class OrphanPage:
    scanned: int
    groups: tuple[OrphanGroup, ...] = ()
    unattributed: tuple[str, ...] = ()
    uploads_aborted: int = 0
    next_token: str | None = None


@dataclass(frozen=True)
class CleanItemInput:
    """Delete a few unreferenced objects of one item, under that item's workflow id."""

    table: TableSpec
    item_key: ItemKey
    keys: tuple[str, ...]


# ---------------------------------------------------------------- adopt (pynamodb_mate items)


@dataclass(frozen=True)
class AdoptItemInput:
    """Bring one item written by pynamodb_mate's LargeAttributeMixin into largeattr's shape."""

    table: TableSpec
    key: ItemKey
    options: SagaOptions = SagaOptions()
    #: The item as the client read it just before starting the saga (see CreateItemInput).
    read: ItemState | None = None


@dataclass(frozen=True)
class ForeignBlob:
    """A large attribute that holds a pynamodb_mate URI (``.../attr=.../md5=<md5>``)."""

    attribute: str
    uri: str
    md5: str


@dataclass(frozen=True)
class HashForeignArgs:
    table: TableSpec
    blob: ForeignBlob
    #: Hash only an object of at most this many bytes (a short step); None: any size.
    max_size: int | None = None


@dataclass(frozen=True)
class HashedForeign:
    """A foreign object's bytes as read (checked against the MD5 in its key), hashed."""

    blob: ForeignBlob
    #: The ETag the read was pinned to: the copy copies these very bytes or fails.
    etag: str
    #: None when the object is larger than ``HashForeignArgs.max_size`` (not read).
    prepared: PreparedBlob | None
    content_type: str
    content_encoding: str | None = None
    size: int = 0


@dataclass(frozen=True)
class CopyForeignArgs:
    table: TableSpec
    item_key: ItemKey
    hashed: HashedForeign
    object_key: str
    saga_id: str
    updated_at: str


@dataclass(frozen=True)
class AdoptItemArgs:
    """The adopt pivot: the copies replace the foreign URIs if the item is as read."""

    table: TableSpec
    key: ItemKey
    blobs: tuple[StoredBlob, ...]
    replaced: tuple[ForeignBlob, ...]
    expected: ItemState
    saga_id: str
    updated_at: str


@dataclass(frozen=True)
class AdoptResult:
    """What adopting one item did: ``adopted``, ``already`` (nothing of pynamodb_mate's
    left) or ``skipped`` (``reason`` says why). Never carries blob bytes."""

    outcome: str
    table_name: str
    key: ItemKey
    version: int = 0
    reason: str = ""
    blobs: tuple[StoredBlob, ...] = ()
    #: The pynamodb_mate objects deleted after the pivot.
    deleted_objects: tuple[str, ...] = ()
    saga_id: str = ""


@dataclass(frozen=True)
class ReconcileChunkArgs:
    """One activity of the batched pass: a few listing pages after ``start_after``."""

    table: TableSpec
    grace_seconds: int
    upload_grace_seconds: int
    page_size: int = 1000
    pages: int = 5
    start_after: str | None = None
    staged_only: bool = False
    dry_run: bool = False
    #: Abort stale multipart uploads (the first chunk of a pass does).
    abort_uploads: bool = False


@dataclass(frozen=True)
class ReconcileChunk:
    """What one chunk found and did; samples are capped, so the payload stays small."""

    result: ReconcileResult
    #: Where the next chunk starts (None: the listing is done).
    next_start_after: str | None = None
