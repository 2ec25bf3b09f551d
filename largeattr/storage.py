"""Every S3 and DynamoDB call of the sagas, as plain synchronous methods.

This is pynamodb_mate's "step-by-step API": usable without Temporal, and exactly the code
the activities in ``activities/`` call. Each method is idempotent, so a retried activity
(or a retried botocore call whose response was lost) cannot do harm:

* uploads never overwrite (``If-None-Match: *``) and recognise their own earlier write by
  the ``la-saga`` object metadata;
* every pivot carries a condition, and on ``ConditionalCheckFailed`` it reads the item the
  failure returns: ``la_saga`` equal to this saga's id means the write already committed;
* deletes of missing objects succeed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast
from urllib.parse import quote, unquote

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from largeattr import dynamo, keys
from largeattr.errors import (
    AccessDenied,
    BucketNotFound,
    InvalidInput,
    ItemAlreadyExists,
    ItemNotFound,
    ItemTooLarge,
    LargeAttrError,
    SourceUnavailable,
    TableNotFound,
    VersionConflict,
)
from largeattr.messages import (
    BlobInput,
    BlobMeta,
    CleanupResult,
    CompensateArgs,
    DeleteItemArgs,
    FindOrphansArgs,
    ItemChanges,
    ItemKey,
    ItemState,
    OrphanGroup,
    OrphanPage,
    PivotResult,
    PreparedBlob,
    PutItemArgs,
    S3Options,
    StoredBlob,
    TableSpec,
    UpdateItemArgs,
)
from largeattr.transfer import (
    Digest,
    PutSpec,
    TransferConfig,
    UploadProgress,
    abort_quietly,
    abort_uploads,
    copy_object,
    list_uploads,
    put_multipart,
    put_small,
    read_exactly,
    sha256_b64,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("largeattr")

#: Room the la_meta entry of one large attribute takes in the item, at most.
_META_ENTRY_BYTES = 256
_METADATA_ITEM_LIMIT = 1024
#: The S3 options a staged stream keeps: encryption is a security setting.
_STAGING_EXTRA = frozenset({"ServerSideEncryption", "SSEKMSKeyId"})


# ---------------------------------------------------------------- AWS error translation


_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        # DynamoDB's answers to a wrong secret key or a missing signature
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "RequestTimeTooSkewed",
    }
)


def translate(err: Exception, *, table: str = "", bucket: str = "") -> Exception:
    """The error a user can act on, for an AWS error that no retry will fix.

    Transient errors (throttling, 5xx, timeouts, resets) come back unchanged: they are
    retried, by botocore first and then by the activity's retry policy.
    """
    if isinstance(err, NoCredentialsError):
        return AccessDenied(
            "no AWS credentials were found; configure the standard credential chain "
            "(environment, ~/.aws, instance role) or pass an endpoint with test credentials"
        )
    if not isinstance(err, ClientError):
        return err
    code = err.response.get("Error", {}).get("Code", "")
    message = err.response.get("Error", {}).get("Message", "")
    if code == "ResourceNotFoundException":
        return TableNotFound(
            f"DynamoDB table {table!r} does not exist in this account and region; "
            "create it (`largeattr setup`) or fix the table name",
            table=table,
        )
    if code == "NoSuchBucket":
        return BucketNotFound(
            f"S3 bucket {bucket!r} does not exist; create it (`largeattr setup`) "
            "or fix the bucket name",
            bucket=bucket,
        )
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _ACCESS_CODES or status == 403 or code == "403":
        # A HEAD request's 403 has no body, so no code: botocore reports it as "403".
        # Name only what the call used: an S3-only call has no table.
        used = " and ".join(
            f"{kind} {name!r}" for kind, name in (("table", table), ("bucket", bucket)) if name
        )
        return AccessDenied(
            f"AWS refused the request ({code}: {message}); check the credentials and that "
            f"they may use {used or 'this resource'}"
        )
    if code == "ValidationException":
        if "size" in message.lower() and "exceed" in message.lower():
            return ItemTooLarge(
                f"DynamoDB rejected the item as too large ({message}); declare the biggest "
                "attributes as large attributes so they go to S3"
            )
        return InvalidInput(f"DynamoDB rejected the request: {message}")
    return err


def reraise(err: Exception, *, table: str = "", bucket: str = "") -> NoReturn:
    """Raise the error a user can act on for ``err``. An error ``translate`` leaves alone
    is raised as it is: ``raise err from err`` would make it its own cause, a cycle that
    Temporal cannot serialise (the activity then fails with a RecursionError instead)."""
    translated = translate(err, table=table, bucket=bucket)
    if translated is err:
        raise err
    raise translated from err


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def is_not_found(err: ClientError) -> bool:
    return error_code(err) in {"404", "NoSuchKey", "NotFound"}


def _is_conditional_failure(err: ClientError) -> bool:
    return error_code(err) == "ConditionalCheckFailedException"


# ---------------------------------------------------------------- object metadata


def object_metadata(
    spec: TableSpec, item_key: ItemKey, attribute: str, saga_id: str, updated_at: str, sha256: str
) -> dict[str, str]:
    """S3 user metadata (ASCII only): the item, the attribute, the time, the writer."""
    item = quote(json.dumps(item_key, sort_keys=True, separators=(",", ":")), safe="")
    metadata = {
        "la-table": keys.escape(spec.table_name),
        "la-attr": keys.escape(attribute),
        "la-updated-at": updated_at,
        "la-saga": saga_id,
        "la-sha256": sha256,
    }
    if len(item) <= _METADATA_ITEM_LIMIT:
        metadata["la-item"] = item
    else:  # S3 allows 2 KB of user metadata; a very long key is recorded by its hash.
        metadata["la-item-sha256"] = hashlib.sha256(item.encode()).hexdigest()
    return metadata


def s3_extra_args(options: S3Options | None) -> dict[str, Any]:
    if options is None:
        return {}
    extra: dict[str, Any] = {}
    if options.server_side_encryption:
        extra["ServerSideEncryption"] = options.server_side_encryption
    if options.sse_kms_key_id:
        extra["SSEKMSKeyId"] = options.sse_kms_key_id
    if options.storage_class:
        extra["StorageClass"] = options.storage_class
    if options.cache_control:
        extra["CacheControl"] = options.cache_control
    if options.tags:
        extra["Tagging"] = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in options.tags
        )
    return extra


# ---------------------------------------------------------------- expressions


@dataclass
class _Expression:
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, low_level: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = low_level
        return placeholder

    def version_is(self, spec: TableSpec, version: int) -> str:
        """Condition: the item exists at this version (0: it has no version yet)."""
        pk = self.name(spec.partition_key)
        v = self.name(spec.version_attribute)
        if version == 0:
            return f"attribute_exists({pk}) AND attribute_not_exists({v})"
        return f"attribute_exists({pk}) AND {v} = {self.value({'N': str(version)})}"

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _superseded(
    spec: TableSpec,
    old_refs: Mapping[str, str],
    changed: Iterable[str],
    new_refs: Mapping[str, str],
) -> tuple[str, ...]:
    """URIs of changed attributes that the new item no longer references and that we own."""
    still = set(new_refs.values())
    out = []
    for attribute in changed:
        uri = old_refs.get(attribute)
        if uri and uri not in still and keys.owned_by(spec, uri) and uri not in out:
            out.append(uri)
    return tuple(out)


def size_after(
    spec: TableSpec, key: ItemKey, item: Mapping[str, Any] | None, changes: ItemChanges
) -> int:
    """An upper estimate of an item's size once ``changes`` are applied to ``item``."""
    kept: dict[str, Any] = {}
    if item and not changes.replace:
        dropped = set(changes.set_attributes) | set(changes.remove_attributes)
        dropped |= set(changes.blob_attributes) | set(dynamo.bookkeeping_attributes(spec))
        kept = {name: value for name, value in item.items() if name not in dropped}
    size = dynamo.item_size(kept) + dynamo.item_size(
        {**dynamo.item_to_low_level(key), **dynamo.item_to_low_level(changes.set_attributes)}
    )
    blobs = set(changes.blob_attributes)
    if item and not changes.replace:
        blobs |= {a for a in spec.large_attributes if a in item} - set(changes.remove_attributes)
    for attribute in blobs:
        uri = keys.s3_uri(spec.bucket, keys.object_key(spec, key, attribute, "0" * 64))
        size += len(attribute) + len(uri) + _META_ENTRY_BYTES
    return size + 128  # version, saga id, update time


# ---------------------------------------------------------------- the storage steps


class Storage:
    """S3 + DynamoDB steps of the sagas, on injected boto3 clients."""

    def __init__(
        self,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        transfer: TransferConfig | None = None,
    ) -> None:
        self.s3 = s3
        self.dynamodb = dynamodb
        self.transfer = transfer or TransferConfig()

    # ------------------------------------------------------------ DynamoDB

    def get_item(self, spec: TableSpec, key: ItemKey) -> dict[str, Any] | None:
        """The item in low-level boto3 form (consistent read), or None."""
        try:
            response = self.dynamodb.get_item(
                TableName=spec.table_name,
                Key=dynamo.item_to_low_level(key),
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as err:
            reraise(err, table=spec.table_name, bucket=spec.bucket)
        item = response.get("Item")
        return dict(item) if item else None

    def read_item(
        self, spec: TableSpec, key: ItemKey, changes: ItemChanges | None = None
    ) -> ItemState:
        """The saga's first step: what is there now, and would the change still fit?"""
        item = self.get_item(spec, key)
        state = dynamo.item_state(spec, item)
        if changes is not None:
            dynamo.check_item_size(
                size_after(spec, key, item, changes), f"item {keys.item_path(spec, key)}"
            )
        return state

    def put_item(self, args: PutItemArgs) -> PivotResult:
        """Pivot of create: put the item if it is still as the read step saw it."""
        spec = args.table
        new_refs = {blob.attribute: blob.uri for blob in args.blobs}
        item: dict[str, Any] = {
            **dynamo.item_to_low_level(args.key),
            **dynamo.item_to_low_level(args.attributes),
            **{blob.attribute: {"S": blob.uri} for blob in args.blobs},
            spec.version_attribute: {"N": str(args.expected.version + 1)},
            dynamo.SAGA_ATTRIBUTE: {"S": args.saga_id},
            dynamo.UPDATED_AT_ATTRIBUTE: {"S": args.updated_at},
        }
        if args.blobs:
            item[dynamo.META_ATTRIBUTE] = {
                "M": {
                    blob.attribute: dynamo.to_low_level(dynamo.meta_to_wire(blob.meta))
                    for blob in args.blobs
                }
            }
        dynamo.check_item_size(dynamo.item_size(item), f"item {keys.item_path(spec, args.key)}")
        expr = _Expression()
        if args.expected.exists:
            condition = expr.version_is(spec, args.expected.version)
        else:
            condition = f"attribute_not_exists({expr.name(spec.partition_key)})"
        try:
            response = self.dynamodb.put_item(
                TableName=spec.table_name,
                Item=item,
                ConditionExpression=condition,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **expr.kwargs(),
            )
        except ClientError as err:
            if not _is_conditional_failure(err):
                reraise(err, table=spec.table_name, bucket=spec.bucket)
            current = dynamo.item_state(spec, err.response.get("Item"))  # type: ignore[arg-type]
            if current.exists and current.saga_id == args.saga_id:
                # Our own earlier attempt committed; its response was lost.
                refs = args.expected.refs
                return PivotResult(
                    version=current.version,
                    superseded=_superseded(spec, refs, refs, new_refs),
                )
            if current.exists and not args.expected.exists:
                raise ItemAlreadyExists(
                    f"item {keys.item_path(spec, args.key)} was created by another writer "
                    "meanwhile; use update, or create with overwrite=True"
                ) from None
            raise VersionConflict(
                f"item {keys.item_path(spec, args.key)} changed while the saga ran "
                f"(expected version {args.expected.version}, found "
                f"{current.version if current.exists else 'no item'}); re-read it and retry",
                expected=args.expected.version,
                found=current.version,
            ) from None
        except BotoCoreError as err:
            reraise(err, table=spec.table_name)
        old = dynamo.item_state(spec, response.get("Attributes"))
        return PivotResult(
            version=args.expected.version + 1,
            superseded=_superseded(spec, old.refs, old.refs, new_refs),
        )

    def update_item(self, args: UpdateItemArgs) -> PivotResult:
        """Pivot of update: one UpdateItem with the version condition."""
        spec, request = args.table, args.request
        expr = _Expression()
        sets: list[str] = []
        removes: list[str] = []
        for blob in args.blobs:
            sets.append(f"{expr.name(blob.attribute)} = {expr.value({'S': blob.uri})}")
        for attribute in request.remove_blobs:
            removes.append(expr.name(attribute))
        meta = {
            name: value
            for name, value in args.expected.meta.items()
            if name not in request.remove_blobs
        }
        meta.update({blob.attribute: blob.meta for blob in args.blobs})
        meta_value = {
            "M": {
                name: dynamo.to_low_level(dynamo.meta_to_wire(value))
                for name, value in sorted(meta.items())
            }
        }
        sets.append(f"{expr.name(dynamo.META_ATTRIBUTE)} = {expr.value(meta_value)}")
        sets.append(
            f"{expr.name(spec.version_attribute)} = "
            f"{expr.value({'N': str(args.expected.version + 1)})}"
        )
        sets.append(f"{expr.name(dynamo.SAGA_ATTRIBUTE)} = {expr.value({'S': args.saga_id})}")
        sets.append(
            f"{expr.name(dynamo.UPDATED_AT_ATTRIBUTE)} = {expr.value({'S': args.updated_at})}"
        )
        for name, value in request.set_attributes.items():
            sets.append(f"{expr.name(name)} = {expr.value(dynamo.to_low_level(value))}")
        for name in request.remove_attributes:
            removes.append(expr.name(name))
        adds = [
            f"{expr.name(name)} {expr.value(dynamo.to_low_level(value))}"
            for name, value in request.add_attributes.items()
        ]
        deletes = [
            f"{expr.name(name)} {expr.value(dynamo.to_low_level(value))}"
            for name, value in request.delete_from_sets.items()
        ]
        update = "SET " + ", ".join(sets)
        if removes:
            update += " REMOVE " + ", ".join(removes)
        if adds:
            update += " ADD " + ", ".join(adds)
        if deletes:
            update += " DELETE " + ", ".join(deletes)
        condition = expr.version_is(spec, args.expected.version)
        changed = [blob.attribute for blob in args.blobs] + list(request.remove_blobs)
        new_refs = {
            **{a: u for a, u in args.expected.refs.items() if a not in changed},
            **{blob.attribute: blob.uri for blob in args.blobs},
        }
        try:
            response = self.dynamodb.update_item(
                TableName=spec.table_name,
                Key=dynamo.item_to_low_level(request.key),
                UpdateExpression=update,
                ConditionExpression=condition,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **expr.kwargs(),
            )
        except ClientError as err:
            if not _is_conditional_failure(err):
                reraise(err, table=spec.table_name, bucket=spec.bucket)
            current = dynamo.item_state(spec, err.response.get("Item"))  # type: ignore[arg-type]
            if current.exists and current.saga_id == args.saga_id:
                return PivotResult(
                    version=current.version,
                    superseded=_superseded(spec, args.expected.refs, changed, new_refs),
                )
            if not current.exists:
                raise ItemNotFound(
                    f"item {keys.item_path(spec, request.key)} was deleted while the update "
                    "ran; create it instead"
                ) from None
            raise VersionConflict(
                f"item {keys.item_path(spec, request.key)} changed while the update ran "
                f"(expected version {args.expected.version}, found {current.version}); "
                "re-read it and retry",
                expected=args.expected.version,
                found=current.version,
            ) from None
        except BotoCoreError as err:
            reraise(err, table=spec.table_name)
        old = dynamo.item_state(spec, response.get("Attributes"))
        return PivotResult(
            version=args.expected.version + 1,
            superseded=_superseded(spec, old.refs, changed, new_refs),
        )

    def delete_item(self, args: DeleteItemArgs) -> PivotResult:
        """Pivot of delete: remove the item if it is still at the version read."""
        spec = args.table
        expr = _Expression()
        condition = expr.version_is(spec, args.expected.version)
        try:
            response = self.dynamodb.delete_item(
                TableName=spec.table_name,
                Key=dynamo.item_to_low_level(args.key),
                ConditionExpression=condition,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **expr.kwargs(),
            )
        except ClientError as err:
            if not _is_conditional_failure(err):
                reraise(err, table=spec.table_name, bucket=spec.bucket)
            current = dynamo.item_state(spec, err.response.get("Item"))  # type: ignore[arg-type]
            if not current.exists:
                # Gone since the read step: our own earlier attempt (its response lost) or
                # another deleter. Either way the objects the read saw are unreferenced.
                refs = args.expected.refs
                return PivotResult(
                    version=args.expected.version, superseded=_superseded(spec, refs, refs, {})
                )
            raise VersionConflict(
                f"item {keys.item_path(spec, args.key)} changed since it was read "
                f"(expected version {args.expected.version}, found {current.version}); "
                "re-read it and retry",
                expected=args.expected.version,
                found=current.version,
            ) from None
        except BotoCoreError as err:
            reraise(err, table=spec.table_name)
        old = dynamo.item_state(spec, response.get("Attributes"))
        return PivotResult(
            version=old.version, superseded=_superseded(spec, old.refs, old.refs, {})
        )

    # ------------------------------------------------------------ S3: writing blobs

    def put_spec(
        self,
        spec: TableSpec,
        item_key: ItemKey,
        blob: BlobInput,
        object_key: str,
        sha256: str,
        saga_id: str,
        updated_at: str,
    ) -> PutSpec:
        return PutSpec(
            bucket=spec.bucket,
            key=object_key,
            content_type=blob.content_type,
            content_encoding=blob.content_encoding,
            metadata=object_metadata(spec, item_key, blob.attribute, saga_id, updated_at, sha256),
            extra=s3_extra_args(blob.s3),
        )

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
        meta = BlobMeta(
            size=prepared.size,
            sha256=prepared.sha256,
            content_type=blob.content_type,
            content_encoding=blob.content_encoding,
        )
        for _ in range(2):
            if self._has_intact(put, prepared):
                self._abort_leftover_uploads(put, prepared)
                return StoredBlob(
                    attribute=blob.attribute,
                    bucket=put.bucket,
                    key=put.key,
                    meta=meta,
                    created=self._written_by(put, saga_id),
                )
            try:
                with open_source() as reader:
                    if prepared.size <= self.transfer.multipart_threshold:
                        data = read_exactly(reader, prepared.size + 1)
                        if len(data) != prepared.size:
                            raise InvalidInput(
                                f"blob {blob.attribute!r} changed while it was stored "
                                f"({len(data)} bytes, expected {prepared.size})"
                            )
                        written = put_small(self.s3, put, data, prepared.sha256)
                    else:
                        written = put_multipart(
                            self.s3,
                            put,
                            reader,
                            prepared.size,
                            prepared.crc32,
                            self.transfer,
                            progress or UploadProgress(),
                            on_progress,
                            seek=True,
                            read_part=read_part,
                        )
            except ClientError as err:
                reraise(err, bucket=put.bucket)
            if written and self._has_intact(put, prepared):
                self._abort_leftover_uploads(put, prepared)
                return StoredBlob(
                    attribute=blob.attribute, bucket=put.bucket, key=put.key, meta=meta
                )
        raise RuntimeError(f"s3://{put.bucket}/{put.key} could not be stored intact; retrying")

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

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
        except ClientError as err:
            if is_not_found(err):
                return None
            reraise(err, bucket=bucket)

    def _has_intact(self, put: PutSpec, prepared: PreparedBlob) -> bool:
        """True if the key holds these bytes; a corrupt object there is removed."""
        head = self._head(put.bucket, put.key)
        if head is None:
            return False
        sha = head.get("ChecksumSHA256")
        crc = head.get("ChecksumCRC32") if head.get("ChecksumType") == "FULL_OBJECT" else None
        intact = head.get("ContentLength") == prepared.size
        if sha and "-" not in sha:
            intact = intact and sha == sha256_b64(prepared.sha256)
        elif crc:
            intact = intact and crc == prepared.crc32
        if not intact:
            log.warning("replacing corrupt object s3://%s/%s", put.bucket, put.key)
            self.s3.delete_object(Bucket=put.bucket, Key=put.key)
        return intact

    def _written_by(self, put: PutSpec, saga_id: str) -> bool:
        head = self._head(put.bucket, put.key)
        return head is not None and head.get("Metadata", {}).get("la-saga") == saga_id

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

        class _Hashing:
            def read(self, size: int = -1) -> bytes:
                chunk = reader.read(size)
                digest.update(chunk)
                return chunk

            def seek(self, *_: Any) -> int:
                raise OSError("a one-pass stream cannot seek")

        hashing: Any = _Hashing()
        first = read_exactly(hashing, self.transfer.part_size)
        try:
            if len(first) < self.transfer.part_size:
                prepared = digest.result()
                put_small(self.s3, put, first, prepared.sha256, if_none_match=False)
                return prepared
            chained = cast(IO[bytes], _Chained(first, hashing))
            put_multipart(
                self.s3, put, chained, -1, None, self.transfer, progress, on_progress, seek=False
            )
        except ClientError as err:
            reraise(err, bucket=put.bucket)
        return digest.result()

    def promote(
        self, staging_key: str, put: PutSpec, blob: BlobInput, prepared: PreparedBlob, saga_id: str
    ) -> StoredBlob:
        """Copy a staged stream to its content-addressed key, then drop the staged copy."""
        meta = BlobMeta(
            size=prepared.size,
            sha256=prepared.sha256,
            content_type=blob.content_type,
            content_encoding=blob.content_encoding,
        )
        try:
            if self._has_intact(put, prepared):
                created = self._written_by(put, saga_id)
            elif self._head(put.bucket, staging_key) is None:
                raise SourceUnavailable(
                    f"the staged copy {staging_key} is gone (expired by the lifecycle rule?); "
                    "run the operation again"
                )
            else:
                written = copy_object(
                    self.s3, staging_key, put, prepared.size, self.transfer, prepared.crc32
                )
                if not self._has_intact(put, prepared):
                    raise RuntimeError(f"the copy to {put.key} does not match; copying again")
                # Not written: identical bytes arrived meanwhile, from this saga or another.
                created = written or self._written_by(put, saga_id)
            self._abort_leftover_uploads(put, prepared)
            self.s3.delete_object(Bucket=put.bucket, Key=staging_key)
        except ClientError as err:
            reraise(err, bucket=put.bucket)
        return StoredBlob(
            attribute=blob.attribute, bucket=put.bucket, key=put.key, meta=meta, created=created
        )

    # ------------------------------------------------------------ S3: deleting

    def delete_objects(self, bucket: str, object_keys: Iterable[str]) -> tuple[str, ...]:
        """Delete objects (missing ones count as deleted). Raises if any delete failed."""
        pending = list(dict.fromkeys(object_keys))
        for start in range(0, len(pending), 1000):
            batch = pending[start : start + 1000]
            try:
                response = self.s3.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            except ClientError as err:
                if error_code(err) == "NoSuchBucket":
                    return tuple(pending)  # no bucket, no objects: nothing left to delete
                reraise(err, bucket=bucket)
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"S3 could not delete {len(errors)} of {len(batch)} objects, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return tuple(pending)

    def compensate(self, args: CompensateArgs) -> CleanupResult:
        """Undo a failed saga's writes: its own objects that no committed item references."""
        spec = args.table
        state = dynamo.item_state(spec, self.get_item(spec, args.item_key))
        referenced = {
            keys.parse_s3_uri(uri)[1] for uri in state.refs.values() if keys.owned_by(spec, uri)
        }
        deleted: list[str] = []
        kept: list[str] = []
        aborted = 0
        try:
            for key in dict.fromkeys(args.keys):
                if not keys.owns_key(spec, key):
                    continue  # not a key of this table: never ours to delete
                aborted += abort_uploads(self.s3, spec.bucket, key)
                if key in referenced:
                    kept.append(key)
                    continue
                head = self._head(spec.bucket, key)
                if head is None:
                    continue
                if head.get("Metadata", {}).get("la-saga") == args.saga_id:
                    self.s3.delete_object(Bucket=spec.bucket, Key=key)
                    deleted.append(key)
                else:
                    kept.append(key)  # identical content another saga wrote: not ours
            for key in dict.fromkeys(args.staging_keys):
                if not keys.owns_key(spec, key):
                    continue
                aborted += abort_uploads(self.s3, spec.bucket, key)
                if self._head(spec.bucket, key) is not None:
                    self.s3.delete_object(Bucket=spec.bucket, Key=key)
                    deleted.append(key)
        except ClientError as err:
            if error_code(err) == "NoSuchBucket":
                # The upload failed because the bucket does not exist: nothing to undo.
                return CleanupResult(
                    deleted=tuple(deleted), kept=tuple(kept), aborted_uploads=aborted
                )
            reraise(err, table=spec.table_name, bucket=spec.bucket)
        return CleanupResult(deleted=tuple(deleted), kept=tuple(kept), aborted_uploads=aborted)

    # ------------------------------------------------------------ reconcile

    def find_orphans(self, args: FindOrphansArgs) -> OrphanPage:
        """One page of objects under the prefix that their item does not reference."""
        spec = args.table
        now = dt.datetime.now(dt.UTC)
        listing: dict[str, Any] = {
            "Bucket": spec.bucket,
            "Prefix": f"{spec.prefix}/",
            "MaxKeys": args.page_size,
        }
        if args.continuation_token:
            listing["ContinuationToken"] = args.continuation_token
        staging = keys.staging_prefix(spec)
        table = keys.escape(spec.table_name)

        def hashed_as(item_key: ItemKey) -> str | None:
            """The la-item-sha256 of this item's objects (None: its key fits in la-item)."""
            return object_metadata(spec, item_key, "", "", "", "").get("la-item-sha256")

        try:
            page = self.s3.list_objects_v2(**listing)
            groups: dict[str, tuple[ItemKey, list[str]]] = {}
            referenced: dict[str, set[str]] = {}
            unattributed: list[str] = []
            for obj in page.get("Contents", []):
                if (now - obj["LastModified"]).total_seconds() < args.grace_seconds:
                    continue
                if not keys.owns_key(spec, obj["Key"]):
                    # Another table's is not ours to judge; anything else is only reported.
                    if not keys.in_a_table_folder(spec, obj["Key"]):
                        unattributed.append(obj["Key"])
                    continue
                if args.staged_only and not obj["Key"].startswith(staging):
                    continue
                head = self._head(spec.bucket, obj["Key"])
                if head is None:
                    continue
                metadata = head.get("Metadata", {})
                if metadata.get("la-table", table) != table:
                    # Another table's, under a prefix nested in ours: never ours to judge.
                    unattributed.append(obj["Key"])
                    continue
                raw_item = metadata.get("la-item")
                if raw_item is not None:
                    item_key = json.loads(unquote(raw_item))
                else:  # a long item key is only hashed: read it back from the object key
                    digest = metadata.get("la-item-sha256")
                    found = [
                        candidate
                        for candidate in keys.item_keys_in(spec, obj["Key"])
                        if digest and hashed_as(candidate) == digest
                    ]
                    if len(found) != 1:
                        unattributed.append(obj["Key"])
                        continue
                    item_key = found[0]
                if not obj["Key"].startswith(staging) and not keys.is_object_of(
                    spec, obj["Key"], item_key
                ):
                    unattributed.append(obj["Key"])  # its metadata names another item
                    continue
                marker = json.dumps(item_key, sort_keys=True)
                if marker not in referenced:
                    state = dynamo.item_state(spec, self.get_item(spec, item_key))
                    referenced[marker] = {
                        keys.parse_s3_uri(uri)[1]
                        for uri in state.refs.values()
                        if keys.owned_by(spec, uri)
                    }
                if obj["Key"] not in referenced[marker]:
                    groups.setdefault(marker, (item_key, []))[1].append(obj["Key"])
            aborted = 0 if args.continuation_token else self._abort_stale_uploads(spec, args, now)
        except ClientError as err:
            reraise(err, table=spec.table_name, bucket=spec.bucket)
        return OrphanPage(
            scanned=len(page.get("Contents", [])),
            groups=tuple(OrphanGroup(k, tuple(v)) for k, v in groups.values()),
            unattributed=tuple(unattributed),
            uploads_aborted=aborted,
            next_token=page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        )

    def _abort_stale_uploads(self, spec: TableSpec, args: FindOrphansArgs, now: Any) -> int:
        aborted = 0
        for upload in list_uploads(self.s3, spec.bucket, f"{spec.prefix}/"):
            if not keys.owns_key(spec, upload["Key"]) and keys.in_a_table_folder(
                spec, upload["Key"]
            ):
                continue  # another table's upload may still be running
            if (now - upload["Initiated"]).total_seconds() >= args.upload_grace_seconds:
                if not args.dry_run:
                    abort_quietly(self.s3, spec.bucket, upload["Key"], upload["UploadId"])
                aborted += 1
        return aborted

    def delete_unreferenced(
        self, spec: TableSpec, item_key: ItemKey, candidates: Iterable[str]
    ) -> CleanupResult:
        """Delete the candidates the item does not reference now. Run it only while no
        saga runs on the item (the reconcile workflow holds the item's workflow id)."""
        state = dynamo.item_state(spec, self.get_item(spec, item_key))
        referenced = {
            keys.parse_s3_uri(uri)[1] for uri in state.refs.values() if keys.owned_by(spec, uri)
        }
        stale = [
            k for k in dict.fromkeys(candidates) if k not in referenced and keys.owns_key(spec, k)
        ]
        kept = tuple(k for k in dict.fromkeys(candidates) if k in referenced)
        return CleanupResult(deleted=self.delete_objects(spec.bucket, stale), kept=kept)


class _Chained:
    """A reader that yields ``head`` then the rest of ``tail``."""

    def __init__(self, head: bytes, tail: Any) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def read(self, size: int = -1) -> bytes:
        if self._head.nbytes:
            if size < 0 or size >= self._head.nbytes:
                out = bytes(self._head)
                self._head = memoryview(b"")
                return out
            out = bytes(self._head[:size])
            self._head = self._head[size:]
            return out
        return bytes(self._tail.read(size))

    def seek(self, *_: Any) -> int:
        raise OSError("a one-pass stream cannot seek")


__all__ = ["LargeAttrError", "Storage", "object_metadata", "translate"]
