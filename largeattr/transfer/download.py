"""Reading an object back as a stream of chunks, checked against its SHA-256."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from largeattr.errors import CorruptObject
from largeattr.transfer.config import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_READ_CHUNK = 1 * MiB


class _BackgroundSha256:
    """SHA-256 on a thread of its own, so a reader hashes while it writes (hashlib releases
    the GIL); at most ``depth`` chunks wait in between."""

    def __init__(self, depth: int = 8) -> None:
        self._sha = hashlib.sha256()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="largeattr-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._sha.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def hexdigest(self) -> str:
        self._chunks.put(None)
        self._thread.join()
        return self._sha.hexdigest()


def iter_object(
    s3: S3Client,
    bucket: str,
    key: str,
    sha256_hex: str | None,
    chunk_size: int = _READ_CHUNK,
    byte_range: tuple[int, int] | None = None,
) -> Iterator[bytes]:
    """Stream an object's bytes. A whole-object read is checked against ``sha256_hex`` and
    raises CorruptObject after the last chunk if it differs (never a silent bad read)."""
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if byte_range is not None:
        args["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    body = s3.get_object(**args)["Body"]
    check = _BackgroundSha256() if sha256_hex and byte_range is None else None
    try:
        for chunk in body.iter_chunks(chunk_size):
            if check is not None:
                check.update(chunk)
            yield chunk
    finally:
        body.close()
        actual = check.hexdigest() if check is not None else None
    if actual is not None and actual != sha256_hex:
        raise CorruptObject(
            f"s3://{bucket}/{key} does not hold the bytes recorded for it "
            f"(sha256 {actual} != {sha256_hex}); restore it from a backup "
            "or rewrite the attribute",
            uri=f"s3://{bucket}/{key}",
        )
