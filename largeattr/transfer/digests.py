"""Checksums of blob bytes: the SHA-256 that names an object, the CRC32 S3 verifies."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from largeattr.messages import PreparedBlob
from largeattr.transfer.config import MiB

_HASH_CHUNK = 4 * MiB


def crc32_b64(value: int) -> str:
    """A CRC32 value as S3 writes it: four big-endian bytes, base64."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def checksum_crc32(data: bytes | memoryview) -> str:
    return crc32_b64(zlib.crc32(data))


def sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


class Digest:
    """SHA-256, CRC32 and size of a stream, updated chunk by chunk."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._crc = 0
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self._sha.update(chunk)
        self._crc = zlib.crc32(chunk, self._crc)
        self.size += len(chunk)

    def result(self) -> PreparedBlob:
        return PreparedBlob(
            sha256=self._sha.hexdigest(), size=self.size, crc32=crc32_b64(self._crc)
        )


class HashingReader:
    """A one-pass reader that feeds every byte it hands out to a ``Digest``."""

    def __init__(self, reader: IO[bytes], digest: Digest) -> None:
        self._reader = reader
        self._digest = digest

    def read(self, size: int = -1) -> bytes:
        chunk = self._reader.read(size)
        self._digest.update(chunk)
        return chunk

    def seek(self, *_: Any) -> int:
        raise OSError("a one-pass stream cannot seek")


def digest_reader(reader: IO[bytes], progress: Callable[[int], None] | None = None) -> PreparedBlob:
    """Hash a whole stream without holding it in memory (two chunks at most).

    SHA-256 and CRC32 both release the GIL, so the CRC32 runs on a second thread and the
    pass costs about what SHA-256 alone does."""
    sha = hashlib.sha256()
    size = 0
    crc: Future[int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="largeattr-crc32") as pool:
        while True:
            chunk = reader.read(_HASH_CHUNK)
            if not chunk:
                break
            crc = pool.submit(zlib.crc32, chunk, crc.result() if crc else 0)
            sha.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(size)
        value = crc.result() if crc else 0
    return PreparedBlob(sha256=sha.hexdigest(), size=size, crc32=crc32_b64(value))


def digest_bytes(data: bytes) -> PreparedBlob:
    digest = Digest()
    digest.update(data)
    return digest.result()
