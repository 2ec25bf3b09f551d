"""Adopting items written by pynamodb_mate's LargeAttributeMixin.

Such an item holds, in each large attribute, ``s3://bucket/{prefix}/pk={pk}[/sk={sk}]/
attr={attr}/md5={md5}`` and nothing else of ours: no version, no ``la_meta``. Adopting it
copies each object server-side to its content-addressed key (after checking its bytes
against the MD5 in the old key), then writes the new URIs with ``la_meta`` and a version,
on the condition that the old URIs and the version are still there, then deletes the old
objects. One item per ``AdoptItem`` saga (``workflows/adopt.py``), under the item's
workflow id.

``plan`` is pure (the saga calls it on the item it read); the rest is the S3 side of the
steps and the client's scan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr import dynamo, keys
from largeattr.aws_errors import is_not_found, is_precondition_failed, reraise
from largeattr.blobs import head
from largeattr.errors import CorruptObject, SourceUnavailable
from largeattr.messages import ForeignBlob, HashedForeign, ItemKey, ItemState, TableSpec
from largeattr.transfer.config import MiB
from largeattr.transfer.digests import Digest

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

ADOPT = "adopt"
ADOPTED = "adopted"
ALREADY = "already"
SKIPPED = "skipped"

_MD5 = re.compile(r"[0-9a-f]{32}")
_READ_CHUNK = 4 * MiB


@dataclass(frozen=True)
class Plan:
    """What adopting an item would do: ``adopt`` its ``foreign`` blobs, or nothing
    (``already``, ``skipped``) for ``reason``."""

    outcome: str
    reason: str = ""
    foreign: tuple[ForeignBlob, ...] = ()


def mate_key_text(value: dict[str, Any]) -> str | None:
    """A key value as pynamodb_mate writes it into an object key (``f"pk={pk}"``)."""
    if "S" in value:
        return str(value["S"])
    if "N" in value:
        return str(value["N"])
    return None  # binary keys: pynamodb_mate would write the repr of bytes


def foreign_blob(spec: TableSpec, key: ItemKey, attribute: str, uri: str) -> ForeignBlob | str:
    """The attribute's pynamodb_mate object, or why its value is not one of this item's."""
    try:
        _, object_key = keys.parse_s3_uri(uri)
    except ValueError:
        return f"{attribute} holds {uri[:80]!r}, not an s3:// URI"
    texts = [mate_key_text(key[spec.partition_key])]
    if spec.sort_key:
        texts.append(mate_key_text(key[spec.sort_key]))
    if None in texts:
        return f"{attribute}: binary key values are not in pynamodb_mate's key scheme"
    tail = f"pk={texts[0]}/" + (f"sk={texts[1]}/" if spec.sort_key else "")
    tail += f"attr={attribute}/md5="
    head_, found, md5 = object_key.rpartition(tail)
    if not found or (head_ and not head_.endswith("/")) or not _MD5.fullmatch(md5):
        return (
            f"{attribute} holds {uri}, not pynamodb_mate's key for this item "
            f"(.../{tail}<md5>); adopt only reads that key scheme"
        )
    return ForeignBlob(attribute, uri, md5)


def plan(spec: TableSpec, key: ItemKey, state: ItemState) -> Plan:
    """Pure: what adopting the item as read would do."""
    if not state.exists:
        return Plan(SKIPPED, "no such item")
    foreign: list[ForeignBlob] = []
    for attribute, uri in sorted(state.refs.items()):
        if keys.owned_by(spec, uri):
            if attribute not in state.meta:
                return Plan(
                    SKIPPED,
                    f"{attribute} holds a largeattr URI without its la_meta entry (written "
                    "outside largeattr?); run largeattr check, then rewrite the attribute",
                )
            continue
        found = foreign_blob(spec, key, attribute, uri)
        if isinstance(found, str):
            return Plan(SKIPPED, found)
        foreign.append(found)
    if foreign:
        return Plan(ADOPT, foreign=tuple(foreign))
    if state.version:
        return Plan(ALREADY, f"already in largeattr's shape (version {state.version})")
    return Plan(ALREADY, "nothing to adopt: no large attribute holds an s3:// URI")


# ---------------------------------------------------------------- the S3 side


def _etag_is_md5(found: dict[str, Any]) -> bool:
    """S3's ETag is the MD5 of the bytes for an object uploaded in one part and not
    encrypted with KMS or a customer key (S3 API reference, "Common Response Headers")."""
    etag = str(found.get("ETag", "")).strip('"')
    return (
        "-" not in etag
        and found.get("ServerSideEncryption") != "aws:kms"
        and found.get("ServerSideEncryption") != "aws:kms:dsse"
        and not found.get("SSECustomerAlgorithm")
    )


def hash_foreign(
    s3: S3Client,
    blob: ForeignBlob,
    progress: Callable[[int], None] = lambda _: None,
    max_size: int | None = None,
) -> HashedForeign:
    """Read a pynamodb_mate object (pinned to its ETag) and hash it: SHA-256 and CRC32 for
    its new key, and the MD5 its old key names, checked. A single-part object's ETag is its
    MD5 already, so a mismatch is refused before a byte is read; otherwise the MD5 is
    computed on the way. CorruptObject when the bytes are not the ones the key names.
    An object larger than ``max_size`` is not read (``prepared`` is None)."""
    bucket, key = keys.parse_s3_uri(blob.uri)
    found = head(s3, bucket, key)
    if found is None:
        raise SourceUnavailable(
            f"{blob.uri} ({blob.attribute}) does not exist: the item references a deleted "
            "object; restore it, or remove the attribute, then adopt again",
            uri=blob.uri,
        )
    etag = str(found["ETag"])
    etag_md5 = etag.strip('"') if _etag_is_md5(found) else None
    if etag_md5 is not None and etag_md5 != blob.md5:
        raise _corrupt(blob, etag_md5)
    hashed = HashedForeign(
        blob=blob,
        etag=etag,
        prepared=None,
        content_type=str(found.get("ContentType") or "application/octet-stream"),
        content_encoding=found.get("ContentEncoding") or None,
        size=int(found.get("ContentLength", 0)),
    )
    if max_size is not None and hashed.size > max_size:
        return hashed
    md5 = hashlib.md5(usedforsecurity=False) if etag_md5 is None else None
    digest = Digest()
    try:
        body = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
        try:
            for chunk in body.iter_chunks(_READ_CHUNK):
                digest.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                progress(digest.size)
        finally:
            body.close()
    except ClientError as err:
        if is_precondition_failed(err) or is_not_found(err):
            raise RuntimeError(f"{blob.uri} changed while it was read; reading again") from err
        reraise(err, bucket=bucket)
    if md5 is not None and md5.hexdigest() != blob.md5:
        raise _corrupt(blob, md5.hexdigest())
    return dataclasses.replace(hashed, prepared=digest.result(), size=digest.size)


def _corrupt(blob: ForeignBlob, actual: str) -> CorruptObject:
    return CorruptObject(
        f"{blob.uri} ({blob.attribute}) does not hold the bytes its key names (md5 {actual}, "
        f"key says {blob.md5}); nothing was adopted. Restore the object, or rewrite the "
        "attribute with pynamodb_mate, then adopt again",
        uri=blob.uri,
    )


# ---------------------------------------------------------------- the client's scan


def scan_items(dynamodb: DynamoDBClient, spec: TableSpec) -> Iterator[dict[str, Any]]:
    """Every item of the table, page by page (never the whole table in memory)."""
    paginator = dynamodb.get_paginator("scan")
    try:
        for page in paginator.paginate(TableName=spec.table_name, ConsistentRead=True):
            yield from page.get("Items", [])
    except ClientError as err:
        reraise(err, table=spec.table_name)


def planned(spec: TableSpec, raw: dict[str, Any]) -> tuple[ItemKey, ItemState, Plan]:
    """An item as a scan returns it, with what adopting it would do."""
    key = dynamo.key_of(spec, dynamo.item_from_low_level(raw))
    state = dynamo.item_state(spec, raw)
    return key, state, plan(spec, key, state)


def dry_check(s3: S3Client, blob: ForeignBlob) -> str | None:
    """Why adopting ``blob`` would fail, as far as a HEAD tells (reads no bytes)."""
    bucket, key = keys.parse_s3_uri(blob.uri)
    found = head(s3, bucket, key)
    if found is None:
        return f"SourceUnavailable: {blob.uri} ({blob.attribute}) does not exist"
    if _etag_is_md5(found) and str(found["ETag"]).strip('"') != blob.md5:
        return f"CorruptObject: {blob.uri} ({blob.attribute}) does not match the md5 in its key"
    return None


@dataclass
class AdoptReport:
    """What ``adopt_table`` did (or, with ``dry_run``, would do), item by item."""

    dry_run: bool = False
    adopted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        verb = "would adopt" if self.dry_run else "adopted"
        out = [f"{verb}: {item}" for item in self.adopted]
        out += [f"skipped: {item}: {reason}" for item, reason in self.skipped]
        out += [f"failed: {item}: {reason}" for item, reason in self.failed]
        rate = len(self.adopted) / self.seconds if self.seconds and not self.dry_run else 0.0
        out.append(
            f"{verb} {len(self.adopted)}, already {len(self.already)}, skipped "
            f"{len(self.skipped)}, failed {len(self.failed)} in {self.seconds:.1f} s"
            + (f" ({rate:.1f} items/s)" if rate else "")
            + (" (dry run: nothing written)" if self.dry_run else "")
        )
        return out
