"""Reading items and their large attributes (pynamodb_mate has no read helper at all).

A reader needs no Temporal: one consistent GetItem gives the item, its version and, for
each large attribute, the URI plus the size, type and SHA-256 recorded beside it. Blob
bytes are streamed and checked against that SHA-256; a mismatch raises ``CorruptObject``
and a download to a file leaves no file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr import dynamo, keys
from largeattr.aws_errors import error_code, is_not_found, reraise
from largeattr.errors import DanglingReference, InvalidInput, UnknownAttribute
from largeattr.messages import BlobMeta, ItemKey, TableSpec
from largeattr.storage import Storage
from largeattr.transfer.download import iter_object

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: ``on_progress(done_bytes, total_bytes)``: total is None when unknown (no la_meta).
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class BlobRef:
    """Where a large attribute's bytes are, and what they are."""

    attribute: str
    uri: str
    #: None for items written by another tool (pynamodb_mate) without la_meta.
    meta: BlobMeta | None
    #: The item that references it (``pk=...``), for error messages; "" if unknown.
    item: str = ""

    @property
    def bucket(self) -> str:
        return keys.parse_s3_uri(self.uri)[0]

    @property
    def key(self) -> str:
        return keys.parse_s3_uri(self.uri)[1]

    @property
    def size(self) -> int | None:
        return self.meta.size if self.meta else None

    @property
    def content_type(self) -> str | None:
        return self.meta.content_type if self.meta else None

    @property
    def sha256(self) -> str | None:
        return self.meta.sha256 if self.meta else None


@dataclass(frozen=True)
class Item:
    """An item as stored: plain attributes as Python values, large ones as references."""

    key: ItemKey
    version: int
    attributes: dict[str, Any]
    blobs: dict[str, BlobRef]
    saga_id: str = ""
    updated_at: str = ""

    def blob(self, attribute: str) -> BlobRef:
        if attribute not in self.blobs:
            has = f"it has {sorted(self.blobs)}" if self.blobs else "it has none"
            raise UnknownAttribute(f"the item has no large attribute {attribute!r}; {has}")
        return self.blobs[attribute]


def item_from_low_level(spec: TableSpec, raw: dict[str, Any]) -> Item:
    wire = dynamo.item_from_low_level(raw)
    state = dynamo.item_state(spec, raw)
    key = dynamo.key_of(spec, wire)
    path = keys.item_path(spec, key)
    hidden = set(dynamo.bookkeeping_attributes(spec)) | set(spec.large_attributes)
    return Item(
        key=key,
        version=state.version,
        attributes={
            name: dynamo.from_wire(value) for name, value in wire.items() if name not in hidden
        },
        blobs={
            name: BlobRef(name, uri, state.meta.get(name), path) for name, uri in state.refs.items()
        },
        saga_id=state.saga_id,
        updated_at=raw.get(dynamo.UPDATED_AT_ATTRIBUTE, {}).get("S", ""),
    )


class Reader:
    """Synchronous read helpers over injected boto3 clients."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def s3(self) -> S3Client:
        return self.storage.s3

    def get(self, spec: TableSpec, key: ItemKey) -> Item | None:
        raw = self.storage.items.get_item(spec, key)
        return item_from_low_level(spec, raw) if raw else None

    def iter_chunks(
        self,
        ref: BlobRef,
        chunk_size: int = 1024 * 1024,
        byte_range: tuple[int, int] | None = None,
        on_progress: Progress | None = None,
    ) -> Iterator[bytes]:
        """Stream a large attribute; a whole read is verified against its SHA-256.

        ``byte_range`` is inclusive (first, last), like HTTP; a range is not verified.
        ``on_progress(done, total)`` is called after each chunk, in the reading thread.
        """
        if on_progress is not None:
            whole = self.iter_chunks(ref, chunk_size, byte_range)
            yield from _counted(whole, ref, byte_range, on_progress)
            return
        if byte_range is not None and (byte_range[0] < 0 or byte_range[1] < byte_range[0]):
            raise InvalidInput(f"byte range {byte_range} must be (first, last) with first <= last")
        if byte_range is not None and ref.size is not None and byte_range[0] >= ref.size:
            raise self._past_the_end(ref, byte_range)
        try:
            yield from iter_object(self.s3, ref.bucket, ref.key, ref.sha256, chunk_size, byte_range)
        except ClientError as err:
            if is_not_found(err):
                raise self._dangling(ref) from None
            if byte_range is not None and error_code(err) == "InvalidRange":
                raise self._past_the_end(ref, byte_range) from None
            reraise(err, bucket=ref.bucket)
        except Exception as err:
            reraise(err, bucket=ref.bucket)

    @staticmethod
    def _dangling(ref: BlobRef) -> DanglingReference:
        item = f"item {ref.item}" if ref.item else "the item"
        return DanglingReference(
            f"{item} references {ref.uri} for its large attribute {ref.attribute!r}, but the "
            "object does not exist (deleted outside largeattr?); run `largeattr check` on the "
            "table to list every dangling reference, then rewrite the attribute or delete the "
            "item",
            item=ref.item,
            attribute=ref.attribute,
            uri=ref.uri,
        )

    @staticmethod
    def _past_the_end(ref: BlobRef, byte_range: tuple[int, int]) -> InvalidInput:
        size = f"{ref.size:,} bytes" if ref.size is not None else "it is shorter"
        return InvalidInput(
            f"byte range {byte_range[0]}-{byte_range[1]} starts past the end of {ref.uri} "
            f"({size}); the first byte must be below the object's size"
        )

    def read_bytes(self, ref: BlobRef, on_progress: Progress | None = None) -> bytes:
        return b"".join(self.iter_chunks(ref, on_progress=on_progress))

    def download(
        self, ref: BlobRef, path: str | os.PathLike[str], on_progress: Progress | None = None
    ) -> int:
        """Write a large attribute to a file, atomically: a bad read leaves no file."""
        target = Path(path)
        handle, temporary = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        written = 0
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in self.iter_chunks(ref, on_progress=on_progress):
                    out.write(chunk)
                    written += len(chunk)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return written

    def presigned_url(self, ref: BlobRef, expires_in: int = 3600) -> str:
        """A time-limited GET URL for a web client (no credentials needed to use it)."""
        if not 1 <= expires_in <= 7 * 24 * 3600:
            raise InvalidInput("expires_in must be between 1 second and 7 days (S3's limit)")
        params: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.content_type:
            params["ResponseContentType"] = ref.content_type
        return str(
            self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
        )


def _counted(
    chunks: Iterator[bytes],
    ref: BlobRef,
    byte_range: tuple[int, int] | None,
    on_progress: Progress,
) -> Iterator[bytes]:
    total = ref.size
    if byte_range is not None:
        end = byte_range[1] + 1 if total is None else min(byte_range[1] + 1, total)
        total = end - byte_range[0]
    done = 0
    on_progress(0, total)
    for chunk in chunks:
        done += len(chunk)
        on_progress(done, total)
        yield chunk
