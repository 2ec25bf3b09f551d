"""A whole object in one request: PutObject with a SHA-256 that S3 verifies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr.aws_errors import is_precondition_failed
from largeattr.transfer.digests import sha256_b64

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class PutSpec:
    """Everything about an object except its bytes."""

    bucket: str
    key: str
    content_type: str
    metadata: Mapping[str, str]
    content_encoding: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "ContentType": self.content_type,
            "Metadata": dict(self.metadata),
            **self.extra,
        }
        if self.content_encoding:
            args["ContentEncoding"] = self.content_encoding
        return args


def unless_present(write: Callable[[], object]) -> bool:
    """Run a write sent with ``If-None-Match: *``: True if it wrote, False if the key
    already held an object."""
    try:
        write()
    except ClientError as err:
        if is_precondition_failed(err):
            return False
        raise
    return True


def put_small(
    s3: S3Client, spec: PutSpec, data: bytes, sha256_hex: str, if_none_match: bool = True
) -> bool:
    """PutObject that never overwrites. True if written, False if the key already exists."""
    conditional: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
    return unless_present(
        lambda: s3.put_object(
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=sha256_b64(sha256_hex),
            **conditional,
            **spec.args(),
        )
    )
