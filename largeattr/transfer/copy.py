"""Server-side copy to a new key with new metadata: CopyObject, or multipart copy when big."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr.aws_errors import error_code, is_precondition_failed
from largeattr.transfer.config import TransferConfig
from largeattr.transfer.put import PutSpec, unless_present
from largeattr.transfer.uploads import (
    abort_quietly,
    complete_upload,
    create_upload,
    whole_object_checksum,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def copy_object(
    s3: S3Client,
    source_key: str,
    spec: PutSpec,
    size: int,
    config: TransferConfig,
    full_crc32: str | None = None,
    source_bucket: str | None = None,
    source_etag: str | None = None,
) -> bool:
    """Server-side copy into ``spec.key`` with new metadata (and the spec's storage class
    and tags); multipart above ``copy_threshold``. Never overwrites: True if written, False
    if the key already held an object (the caller checks what it holds). The source is in
    ``spec.bucket`` unless ``source_bucket`` is given; with ``source_etag``, only that
    version of it is copied (``CopySourceIfMatch``; a changed source fails the copy)."""
    source = {"Bucket": source_bucket or spec.bucket, "Key": source_key}
    pinned: dict[str, Any] = {"CopySourceIfMatch": source_etag} if source_etag else {}
    if size > config.copy_threshold:
        return _copy_in_parts(s3, source, spec, size, config, full_crc32, pinned)
    args = spec.args()
    if "Tagging" in args:
        args["TaggingDirective"] = "REPLACE"  # else S3 copies the source's tags
    # If-None-Match on CopyObject: AWS S3 User Guide, "How to prevent object
    # overwrites with conditional writes" (moto 5.2.5 accepts and ignores it).
    return unless_present(
        lambda: s3.copy_object(
            CopySource=source,  # type: ignore[arg-type]
            MetadataDirective="REPLACE",
            ChecksumAlgorithm="CRC32",
            IfNoneMatch="*",
            **pinned,
            **args,
        )
    )


def _copy_in_parts(
    s3: S3Client,
    source: dict[str, str],
    spec: PutSpec,
    size: int,
    config: TransferConfig,
    full_crc32: str | None,
    pinned: dict[str, Any],
) -> bool:
    # CreateMultipartUpload takes the tags themselves: no TaggingDirective.
    upload_id = create_upload(s3, spec.args(), config)
    part_size = max(config.part_size_for(size), config.copy_part_size)
    upload = {
        "Bucket": spec.bucket,
        "Key": spec.key,
        "UploadId": upload_id,
        "CopySource": source,
        **pinned,
    }
    try:
        parts = [
            _copy_part(s3, upload, number, start, min(start + part_size, size))
            for number, start in enumerate(range(0, size, part_size), start=1)
        ]
        complete_upload(s3, spec, upload_id, parts, whole_object_checksum(config, full_crc32))
    except ClientError as err:
        if error_code(err) == "NoSuchUpload":
            return True  # completed by a call whose response was lost: the caller checks
        abort_quietly(s3, spec.bucket, spec.key, upload_id)
        if is_precondition_failed(err):
            return False
        raise
    except BaseException:
        abort_quietly(s3, spec.bucket, spec.key, upload_id)
        raise
    return True


def _copy_part(
    s3: S3Client, upload: dict[str, Any], number: int, start: int, end: int
) -> dict[str, Any]:
    """UploadPartCopy of the source's bytes [start, end) as part ``number`` of ``upload``."""
    response = s3.upload_part_copy(
        PartNumber=number, CopySourceRange=f"bytes={start}-{end - 1}", **upload
    )
    result = response["CopyPartResult"]
    part: dict[str, Any] = {"PartNumber": number, "ETag": result["ETag"]}
    if result.get("ChecksumCRC32"):
        part["ChecksumCRC32"] = result["ChecksumCRC32"]
    return part
