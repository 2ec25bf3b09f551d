"""How blob bytes move: sizes, S3's limits, and the one config object with its checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from largeattr.errors import InvalidInput

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: S3 limits (AWS: "Amazon S3 multipart upload limits").
MAX_OBJECT_SIZE = 5 * 1024 * GiB
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
MAX_SINGLE_COPY = 5 * GiB

MultipartChecksum = Literal["FULL_OBJECT", "COMPOSITE"]
FULL_OBJECT: MultipartChecksum = "FULL_OBJECT"
COMPOSITE: MultipartChecksum = "COMPOSITE"
MULTIPART_CHECKSUMS: tuple[MultipartChecksum, ...] = (FULL_OBJECT, COMPOSITE)


@dataclass(frozen=True)
class TransferConfig:
    """How blob bytes move. One object with sane defaults, like s3transfer's."""

    #: Blobs up to this size may travel inline through Temporal (history).
    inline_threshold: int = 256 * KiB
    #: At most this many inline bytes per saga, so that the workflow input stays under
    #: Temporal's 512 KiB payload warning once base64-encoded (503,288 bytes at the limit,
    #: key and plain attributes aside); the others go by reference.
    inline_total: int = 368 * KiB
    #: Uploads above this size use multipart upload.
    multipart_threshold: int = 16 * MiB
    part_size: int = 8 * MiB
    max_concurrency: int = 4
    #: Server-side copies above this size use multipart copy (S3's CopyObject limit: 5 GiB).
    copy_threshold: int = MAX_SINGLE_COPY
    copy_part_size: int = 512 * MiB
    #: What S3 verifies on a multipart upload besides each part's CRC32: the whole object's
    #: CRC32 ("FULL_OBJECT", the default) or nothing more ("COMPOSITE", a checksum of the
    #: part checksums; for S3-compatible stores that reject FULL_OBJECT, e.g. minio/minio
    #: #20944, adobe/S3Mock #2843). Readers verify the SHA-256 either way.
    multipart_checksum: MultipartChecksum = FULL_OBJECT

    def __post_init__(self) -> None:
        if self.multipart_checksum not in MULTIPART_CHECKSUMS:
            raise InvalidInput(
                f"TransferConfig.multipart_checksum is {self.multipart_checksum!r}; "
                f"use one of {', '.join(MULTIPART_CHECKSUMS)}"
            )

    def part_size_for(self, size: int) -> int:
        """The configured part size, grown when needed to stay within 10,000 parts."""
        needed = -(-size // MAX_PARTS)
        part = max(self.part_size, MIN_PART_SIZE, needed)
        return -(-part // MiB) * MiB


def human_size(size: int | None) -> str:
    """Sizes for people: "12.3 KB" (decimal units, like the S3 console)."""
    if size is None:
        return "stream"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
