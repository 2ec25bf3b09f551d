"""The S3 side of the sagas before the pivot: writing blob bytes to their keys.

Uploads never overwrite (``If-None-Match: *``) and recognise their own earlier write by
the ``la-saga`` object metadata, so a retried upload is harmless.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from largeattr import keys
from largeattr.aws_errors import is_not_found, reraise
from largeattr.errors import InvalidInput, SourceUnavailable
from largeattr.messages import (
    BlobInput,
    BlobMeta,
    ItemKey,
    PreparedBlob,
    S3Options,
    StoredBlob,
    TableSpec,
)
from largeattr.transfer.config import TransferConfig
from largeattr.transfer.copy import copy_object
from largeattr.transfer.digests import Digest, HashingReader, sha256_b64
from largeattr.transfer.multipart import UploadProgress, put_multipart
from largeattr.transfer.parts import PartReader, RandomAccessParts, SeekableParts, StreamParts
from largeattr.transfer.put import PutSpec, put_small
from largeattr.transfer.streams import read_exactly
from largeattr.transfer.uploads import abort_uploads

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("largeattr")

_METADATA_ITEM_LIMIT = 1024
#: S3Options fields and the request arguments they become (tags aside).
_S3_ARGS = (
    ("server_side_encryption", "ServerSideEncryption"),
    ("sse_kms_key_id", "SSEKMSKeyId"),
    ("storage_class", "StorageClass"),
    ("cache_control", "CacheControl"),
)
#: The S3 options a staged stream keeps: encryption is a security setting.
_STAGING_EXTRA = frozenset({"ServerSideEncryption", "SSEKMSKeyId"})


def item_metadata(item_key: ItemKey) -> dict[str, str]:
    """The entry naming an object's item: its key, or the key's hash when it is long."""
    item = quote(json.dumps(item_key, sort_keys=True, separators=(",", ":")), safe="")
    if len(item) <= _METADATA_ITEM_LIMIT:
        return {"la-item": item}
    # S3 allows 2 KB of user metadata; a very long key is recorded by its hash.
    return {"la-item-sha256": hashlib.sha256(item.encode()).hexdigest()}


def object_metadata(
    spec: TableSpec, item_key: ItemKey, attribute: str, saga_id: str, updated_at: str, sha256: str
) -> dict[str, str]:
    """S3 user metadata (ASCII only): the item, the attribute, the time, the writer."""
    return {
        "la-table": keys.escape(spec.table_name),
        "la-attr": keys.escape(attribute),
        "la-updated-at": updated_at,
        "la-saga": saga_id,
        "la-sha256": sha256,
        **item_metadata(item_key),
    }


def s3_extra_args(options: S3Options | None) -> dict[str, Any]:
    if options is None:
        return {}
    extra: dict[str, Any] = {
        arg: getattr(options, name) for name, arg in _S3_ARGS if getattr(options, name)
    }
    if options.tags:
        extra["Tagging"] = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in options.tags
        )
    return extra


def put_spec(
    spec: TableSpec,
    item_key: ItemKey,
    blob: BlobInput,
    object_key: str,
    sha256: str,
    saga_id: str,
    updated_at: str,
) -> PutSpec:
    """Everything about a blob's object but its bytes: key, type, metadata, S3 options."""
    return PutSpec(
        bucket=spec.bucket,
        key=object_key,
        content_type=blob.content_type,
        content_encoding=blob.content_encoding,
        metadata={
            **user_metadata(blob.s3),
            **object_metadata(spec, item_key, blob.attribute, saga_id, updated_at, sha256),
        },
        extra=s3_extra_args(blob.s3),
    )


#: S3 allows 2 KB of user metadata per object (keys and values); ours takes up to about 1.3.
USER_METADATA_BYTES = 600


def user_metadata(options: S3Options | None) -> dict[str, str]:
    """The caller's metadata for a blob's objects, checked: ASCII (S3 stores user metadata
    as HTTP headers), no key of ours (``la-*``), within what S3 leaves us room for."""
    pairs = tuple(options.metadata) if options is not None else ()
    out: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise InvalidInput("S3Options.metadata takes (name, value) pairs of strings")
        lower = name.lower()
        if lower.startswith("la-"):
            raise InvalidInput(
                f"S3Options.metadata key {name!r}: keys starting with 'la-' are largeattr's "
                "own (la-item, la-saga, ...); choose another name"
            )
        if not (name + value).isascii() or not lower.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(
                f"S3Options.metadata {name!r}: S3 sends metadata as HTTP headers; use ASCII "
                "values and names of letters, digits, '-' and '_' (encode other text)"
            )
        if lower in out:
            raise InvalidInput(f"S3Options.metadata key {name!r} is given twice")
        out[lower] = value
    size = sum(len(k) + len(v) for k, v in out.items())
    if size > USER_METADATA_BYTES:
        raise InvalidInput(
            f"S3Options.metadata is {size} bytes; at most {USER_METADATA_BYTES} fit beside "
            "largeattr's own in S3's 2 KB per object; keep larger data in the item"
        )
    return out


def head(s3: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    """HeadObject with checksums, or None when there is no such object."""
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    except ClientError as err:
        if is_not_found(err):
            return None
        reraise(err, bucket=bucket)


def _stored(put: PutSpec, blob: BlobInput, prepared: PreparedBlob, created: bool) -> StoredBlob:
    meta = BlobMeta(
        size=prepared.size,
        sha256=prepared.sha256,
        content_type=blob.content_type,
        content_encoding=blob.content_encoding,
    )
    return StoredBlob(
        attribute=blob.attribute, bucket=put.bucket, key=put.key, meta=meta, created=created
    )


class Blobs:
    """Writes of blob bytes to S3 (store, stage, promote), on an injected boto3 client."""

    def __init__(self, s3: S3Client, transfer: TransferConfig) -> None:
        self.s3 = s3
        self.transfer = transfer

    def store(
        self,
        put: PutSpec,
        blob: BlobInput,
        prepared: PreparedBlob,
        open_source: Callable[[], IO[bytes]],
        saga_id: str,
        progress: UploadProgress | None = None,
        on_progress: Callable[[UploadProgress], None] = lambda _: None,
        read_part: Callable[[int, int], bytes] | None = None,
    ) -> StoredBlob:
        """Write a blob to its final key, unless identical bytes are already there.

        ``open_source`` returns a fresh reader positioned at the start (it is called again
        if a corrupt object has to be replaced). ``read_part(offset, length)``, for a
        source many threads can read at once, lets each upload thread read its own part.
        """
        if prepared.size <= self.transfer.inline_threshold:
            return self._store_small(put, blob, prepared, open_source, saga_id)
        for _ in range(2):
            if self._has_intact(put, prepared):
                self._abort_leftover_uploads(put, prepared)
                return _stored(put, blob, prepared, created=self._written_by(put, saga_id))
            try:
                with open_source() as reader:
                    if prepared.size <= self.transfer.multipart_threshold:
                        written = self._put_whole(put, blob.attribute, prepared, reader)
                    else:
                        source: PartReader = (
                            RandomAccessParts(read_part, prepared.size, prepared.crc32)
                            if read_part is not None
                            else SeekableParts(reader, prepared.size, prepared.crc32)
                        )
                        written = put_multipart(
                            self.s3,
                            put,
                            source,
                            self.transfer,
                            progress or UploadProgress(),
                            on_progress,
                        )
            except ClientError as err:
                reraise(err, bucket=put.bucket)
            if written and self._has_intact(put, prepared):
                self._abort_leftover_uploads(put, prepared)
                return _stored(put, blob, prepared, created=True)
        raise RuntimeError(f"s3://{put.bucket}/{put.key} could not be stored intact; retrying")

    def _store_small(
        self,
        put: PutSpec,
        blob: BlobInput,
        prepared: PreparedBlob,
        open_source: Callable[[], IO[bytes]],
        saga_id: str,
    ) -> StoredBlob:
        """One PUT that never overwrites and whose SHA-256 S3 verifies: one request in the
        common case, where a HEAD before and after cost two more. Only a key that already
        holds an object is looked at (identical bytes from an earlier attempt or another
        saga; a corrupt object is removed, then put again)."""
        for _ in range(2):
            try:
                with open_source() as reader:
                    if self._put_whole(put, blob.attribute, prepared, reader):
                        return _stored(put, blob, prepared, created=True)
                if self._has_intact(put, prepared):
                    return _stored(put, blob, prepared, created=self._written_by(put, saga_id))
            except ClientError as err:
                reraise(err, bucket=put.bucket)
        raise RuntimeError(f"s3://{put.bucket}/{put.key} could not be stored intact; retrying")

    def _put_whole(
        self, put: PutSpec, attribute: str, prepared: PreparedBlob, reader: IO[bytes]
    ) -> bool:
        data = read_exactly(reader, prepared.size + 1)
        if len(data) != prepared.size:
            raise InvalidInput(
                f"blob {attribute!r} changed while it was stored "
                f"({len(data)} bytes, expected {prepared.size})"
            )
        return put_small(self.s3, put, data, prepared.sha256)

    def _abort_leftover_uploads(self, put: PutSpec, prepared: PreparedBlob) -> None:
        """The object is in place, so an unfinished multipart upload of its key belongs to an
        earlier attempt that died before a heartbeat carried its upload id: nothing will
        resume or complete it. Only blobs big enough for multipart can have one."""
        if prepared.size <= min(self.transfer.multipart_threshold, self.transfer.copy_threshold):
            return
        try:
            abort_uploads(self.s3, put.bucket, put.key)
        except ClientError as err:
            reraise(err, bucket=put.bucket)

    def _has_intact(self, put: PutSpec, prepared: PreparedBlob) -> bool:
        """True if the key holds these bytes; a corrupt object there is removed."""
        found = head(self.s3, put.bucket, put.key)
        if found is None:
            return False
        sha = found.get("ChecksumSHA256")
        crc = found.get("ChecksumCRC32") if found.get("ChecksumType") == "FULL_OBJECT" else None
        intact = found.get("ContentLength") == prepared.size
        if sha and "-" not in sha:
            intact = intact and sha == sha256_b64(prepared.sha256)
        elif crc:
            intact = intact and crc == prepared.crc32
        if not intact:
            log.warning("replacing corrupt object s3://%s/%s", put.bucket, put.key)
            self.s3.delete_object(Bucket=put.bucket, Key=put.key)
        return intact

    def _written_by(self, put: PutSpec, saga_id: str) -> bool:
        found = head(self.s3, put.bucket, put.key)
        return found is not None and found.get("Metadata", {}).get("la-saga") == saga_id

    def stage(
        self,
        put: PutSpec,
        reader: IO[bytes],
        progress: UploadProgress,
        on_progress: Callable[[UploadProgress], None],
    ) -> PreparedBlob:
        """Write a one-pass stream to a staging key, hashing it on the way.

        The staged copy keeps only the encryption settings: an archive storage class would
        make the copy to the final key fail, and its tags would count as the blob's; the
        promote copy applies both."""
        put = dataclasses.replace(
            put, extra={k: v for k, v in put.extra.items() if k in _STAGING_EXTRA}
        )
        digest = Digest()
        hashing = HashingReader(reader, digest)
        first = read_exactly(hashing, self.transfer.part_size)
        try:
            if len(first) < self.transfer.part_size:
                prepared = digest.result()
                put_small(self.s3, put, first, prepared.sha256, if_none_match=False)
                return prepared
            stream = StreamParts(hashing, first)
            put_multipart(self.s3, put, stream, self.transfer, progress, on_progress)
        except ClientError as err:
            reraise(err, bucket=put.bucket)
        return digest.result()

    def promote(
        self, staging_key: str, put: PutSpec, blob: BlobInput, prepared: PreparedBlob, saga_id: str
    ) -> StoredBlob:
        """Copy a staged stream to its content-addressed key, then drop the staged copy."""
        stored = self.copy_in(
            put.bucket,
            staging_key,
            put,
            blob,
            prepared,
            saga_id,
            gone=f"the staged copy {staging_key} is gone (expired by the lifecycle rule?)",
        )
        try:
            self.s3.delete_object(Bucket=put.bucket, Key=staging_key)
        except ClientError as err:
            reraise(err, bucket=put.bucket)
        return stored

    def copy_in(
        self,
        source_bucket: str,
        source_key: str,
        put: PutSpec,
        blob: BlobInput,
        prepared: PreparedBlob,
        saga_id: str,
        *,
        gone: str,
        source_etag: str | None = None,
    ) -> StoredBlob:
        """Server-side copy of an object whose bytes ``prepared`` describes to its
        content-addressed key, unless identical bytes are there already; the copy is checked
        once written. ``source_etag`` pins the source to the version that was hashed."""
        try:
            if self._has_intact(put, prepared):
                created = self._written_by(put, saga_id)
            elif head(self.s3, source_bucket, source_key) is None:
                raise SourceUnavailable(f"{gone}; run the operation again")
            else:
                written = copy_object(
                    self.s3,
                    source_key,
                    put,
                    prepared.size,
                    self.transfer,
                    prepared.crc32,
                    source_bucket=source_bucket,
                    source_etag=source_etag,
                )
                if not self._has_intact(put, prepared):
                    raise RuntimeError(f"the copy to {put.key} does not match; copying again")
                # Not written: identical bytes arrived meanwhile, from this saga or another.
                created = written or self._written_by(put, saga_id)
            self._abort_leftover_uploads(put, prepared)
        except ClientError as err:
            reraise(err, bucket=put.bucket)
        return _stored(put, blob, prepared, created=created)
