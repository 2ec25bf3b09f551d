"""Multipart uploads as S3 keeps them: create, complete, list and abort."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr.transfer.config import FULL_OBJECT, TransferConfig
from largeattr.transfer.put import PutSpec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def create_upload(s3: S3Client, args: dict[str, Any], config: TransferConfig) -> str:
    """Start a multipart upload whose parts carry a CRC32; returns its upload id."""
    created = s3.create_multipart_upload(
        ChecksumAlgorithm="CRC32", ChecksumType=config.multipart_checksum, **args
    )
    return created["UploadId"]


def whole_object_checksum(config: TransferConfig, crc32: str | None) -> dict[str, str]:
    """What completion asks S3 to verify besides the parts: the object's CRC32, if known."""
    if config.multipart_checksum == FULL_OBJECT and crc32:
        return {"ChecksumCRC32": crc32, "ChecksumType": FULL_OBJECT}
    return {}


def complete_upload(
    s3: S3Client,
    put: PutSpec,
    upload_id: str,
    parts: list[dict[str, Any]],
    whole: dict[str, str],
) -> None:
    """Complete an upload unless the key already holds an object (If-None-Match)."""
    s3.complete_multipart_upload(
        Bucket=put.bucket,
        Key=put.key,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        IfNoneMatch="*",
        **whole,  # type: ignore[arg-type]
    )


def abort_quietly(s3: S3Client, bucket: str, key: str, upload_id: str) -> None:
    # If this fails, the lifecycle rule `largeattr setup` installs removes the upload later.
    with contextlib.suppress(ClientError):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def list_uploads(s3: S3Client, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every unfinished multipart upload under ``prefix``, page after page."""
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        yield from (dict(upload) for upload in page.get("Uploads", []))


def abort_uploads(s3: S3Client, bucket: str, key: str) -> int:
    """Abort every unfinished multipart upload of exactly this key."""
    aborted = 0
    for upload in list_uploads(s3, bucket, key):
        if upload.get("Key") == key:
            abort_quietly(s3, bucket, key, upload["UploadId"])
            aborted += 1
    return aborted
