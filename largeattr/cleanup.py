"""Deleting what no committed item references: after a pivot, after a failed saga
(compensation), and what a crash left behind (reconcile).

An object is deleted only if the item, read now, does not reference it; compensation also
keeps identical content another saga wrote. Deletes of missing objects succeed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from largeattr import keys
from largeattr.aws_errors import error_code, reraise
from largeattr.blobs import head, item_metadata
from largeattr.errors import TableNotFound
from largeattr.items import Items
from largeattr.messages import (
    CleanupResult,
    CompensateArgs,
    FindOrphansArgs,
    ItemKey,
    OrphanGroup,
    OrphanPage,
    TableSpec,
)
from largeattr.transfer.uploads import abort_quietly, abort_uploads, list_uploads

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Cleanup:
    """Deletes of objects and of unfinished uploads, on an injected boto3 client; ``items``
    tells what an item references now."""

    def __init__(self, s3: S3Client, items: Items) -> None:
        self.s3 = s3
        self.items = items

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
        """Undo a failed saga's writes: its own objects that no committed item references.
        Each key's HEAD (which tells whose it is) also tells it apart as missing."""
        spec = args.table
        try:
            referenced = self.items.referenced_keys(spec, args.item_key)
        except TableNotFound:
            referenced = set()  # no table, no item: nothing references these objects
        deleted: list[str] = []
        kept: list[str] = []
        missing: list[str] = []
        aborted = 0
        try:
            for key in dict.fromkeys(args.keys):
                if not keys.owns_key(spec, key):
                    continue  # not a key of this table: never ours to delete
                aborted += abort_uploads(self.s3, spec.bucket, key)
                if key in referenced:
                    kept.append(key)
                    continue
                found = head(self.s3, spec.bucket, key)
                if found is None:
                    missing.append(key)
                    continue
                if found.get("Metadata", {}).get("la-saga") == args.saga_id:
                    self.s3.delete_object(Bucket=spec.bucket, Key=key)
                    deleted.append(key)
                else:
                    kept.append(key)  # identical content another saga wrote: not ours
            for key in dict.fromkeys(args.staging_keys):
                if not keys.owns_key(spec, key):
                    continue
                aborted += abort_uploads(self.s3, spec.bucket, key)
                if head(self.s3, spec.bucket, key) is None:
                    missing.append(key)
                else:
                    self.s3.delete_object(Bucket=spec.bucket, Key=key)
                    deleted.append(key)
        except ClientError as err:
            if error_code(err) != "NoSuchBucket":
                reraise(err, table=spec.table_name, bucket=spec.bucket)
            # The upload failed because the bucket does not exist: nothing to undo.
            looked = {*deleted, *kept, *missing}
            for key in dict.fromkeys((*args.keys, *args.staging_keys)):
                if key not in looked and keys.owns_key(spec, key):
                    missing.append(key)
        return CleanupResult(
            deleted=tuple(deleted),
            kept=tuple(kept),
            aborted_uploads=aborted,
            missing=tuple(missing),
        )

    def delete_unreferenced(
        self, spec: TableSpec, item_key: ItemKey, candidates: Iterable[str]
    ) -> CleanupResult:
        """Delete the candidates the item does not reference now. Run it only while no
        saga runs on the item (the reconcile workflow holds the item's workflow id)."""
        referenced = self.items.referenced_keys(spec, item_key)
        stale = [
            k for k in dict.fromkeys(candidates) if k not in referenced and keys.owns_key(spec, k)
        ]
        kept = tuple(k for k in dict.fromkeys(candidates) if k in referenced)
        return CleanupResult(deleted=self.delete_objects(spec.bucket, stale), kept=kept)

    # ------------------------------------------------------------ reconcile

    def find_orphans(self, args: FindOrphansArgs) -> OrphanPage:
        """One page of objects under the prefix that their item does not reference (one
        page per call: each call is one activity, its result one small payload)."""
        spec = args.table
        now = dt.datetime.now(dt.UTC)
        listing: dict[str, Any] = {
            "Bucket": spec.bucket,
            "Prefix": f"{spec.prefix}/",
            "MaxKeys": args.page_size,
        }
        if args.continuation_token:
            listing["ContinuationToken"] = args.continuation_token
        groups: dict[str, tuple[ItemKey, list[str]]] = {}
        referenced: dict[str, set[str]] = {}
        unattributed: list[str] = []
        try:
            page = self.s3.list_objects_v2(**listing)
            listed = page.get("Contents", [])
            for key, metadata in self._candidates(listed, args, now, unattributed):
                item_key = _owner(spec, key, metadata)
                if item_key is None or not (
                    keys.is_staging_key(spec, key) or keys.is_object_of(spec, key, item_key)
                ):
                    unattributed.append(key)  # its metadata names no item, or another one
                    continue
                marker = json.dumps(item_key, sort_keys=True)
                if marker not in referenced:
                    referenced[marker] = self.items.referenced_keys(spec, item_key)
                if key not in referenced[marker]:
                    groups.setdefault(marker, (item_key, []))[1].append(key)
            aborted = 0 if args.continuation_token else self._abort_stale_uploads(args, now)
        except ClientError as err:
            reraise(err, table=spec.table_name, bucket=spec.bucket)
        return OrphanPage(
            scanned=len(page.get("Contents", [])),
            groups=tuple(OrphanGroup(k, tuple(v)) for k, v in groups.values()),
            unattributed=tuple(unattributed),
            uploads_aborted=aborted,
            next_token=page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        )

    def _candidates(
        self,
        listed: Iterable[Any],
        args: FindOrphansArgs,
        now: dt.datetime,
        unattributed: list[str],
    ) -> Iterator[tuple[str, dict[str, str]]]:
        """(key, user metadata) of the listed objects of this table old enough to judge
        that still exist. Keys this table's template cannot produce go to
        ``unattributed``, except another table's, which are never ours to judge."""
        spec = args.table
        for obj in listed:
            if (now - obj["LastModified"]).total_seconds() < args.grace_seconds:
                continue
            if not keys.owns_key(spec, obj["Key"]):
                if not keys.in_a_table_folder(spec, obj["Key"]):
                    unattributed.append(obj["Key"])
                continue
            if args.staged_only and not keys.is_staging_key(spec, obj["Key"]):
                continue
            found = head(self.s3, args.table.bucket, obj["Key"])
            if found is not None:
                yield obj["Key"], found.get("Metadata", {})

    def _abort_stale_uploads(self, args: FindOrphansArgs, now: dt.datetime) -> int:
        spec = args.table
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


def _owner(spec: TableSpec, key: str, metadata: dict[str, str]) -> ItemKey | None:
    """The item an object was written for, from its metadata; None if it is not this
    table's or cannot be told."""
    table = keys.escape(spec.table_name)
    if metadata.get("la-table", table) != table:
        # Another table's, under a prefix nested in ours: never ours to judge.
        return None
    raw_item = metadata.get("la-item")
    if raw_item is not None:
        item_key: ItemKey = json.loads(unquote(raw_item))
        return item_key
    # A long item key is only hashed: read it back from the object key.
    digest = metadata.get("la-item-sha256")
    found = [
        candidate
        for candidate in keys.item_keys_in(spec, key)
        if digest and item_metadata(candidate).get("la-item-sha256") == digest
    ]
    return found[0] if len(found) == 1 else None
