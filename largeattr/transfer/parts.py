"""Where the parts of a multipart upload come from: one reader per kind of source.

As in s3transfer's upload managers (s3transfer/upload.py): a random-access source (a file
or bytes) is read by the thread that sends each part; a seekable file object is read front
to back by the caller, skipping with a seek the parts S3 already has; a one-pass stream is
read front to back once, and its whole-object CRC32 is known only at its end. Each reader
yields ``(part number, read)``, where ``read()`` returns the part's bytes.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from largeattr.errors import BlobTooLarge
from largeattr.transfer.config import MAX_PARTS
from largeattr.transfer.digests import checksum_crc32, crc32_b64
from largeattr.transfer.streams import Readable, read_exactly

PartRead = Callable[[], bytes]


@dataclass
class Part:
    """A part S3 holds: confirmed by ListParts, or sent by this process."""

    number: int
    etag: str
    size: int
    #: None when ListParts gave none (some S3 emulators): the reader fills it in.
    crc32: str | None = None

    def completed(self) -> dict[str, Any]:
        return {"PartNumber": self.number, "ETag": self.etag, "ChecksumCRC32": self.crc32}


class PartReader(Protocol):
    #: The source's length, -1 when unknown (a stream).
    size: int
    #: False for a one-pass stream: it cannot skip the parts an earlier attempt sent.
    resumable: bool

    def parts(
        self, part_size: int, confirmed: Mapping[int, Part]
    ) -> Iterator[tuple[int, PartRead]]:
        """The parts still to send, numbered from 1; ``confirmed`` ones are skipped."""
        ...

    def full_crc32(self) -> str:
        """The whole object's CRC32, once every part was read."""
        ...


def _numbers(part_size: int) -> Iterator[int]:
    yield from range(1, MAX_PARTS + 1)
    raise BlobTooLarge(
        f"the stream needs more than {MAX_PARTS} parts of {part_size} bytes; "
        "raise TransferConfig.part_size"
    )


def _ready(body: bytes) -> PartRead:
    return lambda: body


class RandomAccessParts:
    """A file or bytes that many threads can read at once: each sending thread reads its
    own part with ``read_part(offset, length)``."""

    resumable = True

    def __init__(self, read_part: Callable[[int, int], bytes], size: int, crc32: str) -> None:
        self._read_part = read_part
        self.size = size
        self._crc32 = crc32

    def parts(
        self, part_size: int, confirmed: Mapping[int, Part]
    ) -> Iterator[tuple[int, PartRead]]:
        for number in _numbers(part_size):
            offset = (number - 1) * part_size
            if offset >= self.size:
                return
            part = confirmed.get(number)
            if part is None:
                length = min(part_size, self.size - offset)
                yield number, functools.partial(self._read_part, offset, length)
            elif not part.crc32:  # read it for its checksum, don't send it again
                part.crc32 = checksum_crc32(self._read_part(offset, part.size))

    def full_crc32(self) -> str:
        return self._crc32


class _FrontToBack:
    """A source read in order by the caller's thread, one part at a time."""

    def parts(
        self, part_size: int, confirmed: Mapping[int, Part]
    ) -> Iterator[tuple[int, PartRead]]:
        for number in _numbers(part_size):
            if number in confirmed:
                self._skip(confirmed[number])
                continue
            body = self._read(part_size)
            if not body and number > 1:
                return
            yield number, _ready(body)
            if len(body) < part_size:
                return

    def _read(self, size: int) -> bytes:
        raise NotImplementedError

    def _skip(self, part: Part) -> None:
        raise NotImplementedError


class SeekableParts(_FrontToBack):
    """A file object: parts S3 already has are skipped with a seek (or read, for their
    checksum, when ListParts gave none)."""

    resumable = True

    def __init__(self, reader: IO[bytes], size: int, crc32: str) -> None:
        self._reader = reader
        self.size = size
        self._crc32 = crc32

    def _read(self, size: int) -> bytes:
        return read_exactly(self._reader, size)

    def _skip(self, part: Part) -> None:
        if part.crc32:
            self._reader.seek(part.size, os.SEEK_CUR)
        else:
            part.crc32 = checksum_crc32(read_exactly(self._reader, part.size))

    def full_crc32(self) -> str:
        return self._crc32


class StreamParts(_FrontToBack):
    """A one-pass stream of unknown length, after the ``first`` bytes already taken from it."""

    resumable = False
    size = -1

    def __init__(self, reader: Readable, first: bytes = b"") -> None:
        self._reader = reader
        self._first = memoryview(first)
        self._crc = 0

    def _read(self, size: int) -> bytes:
        head = bytes(self._first[:size])
        self._first = self._first[len(head) :]
        body = head + read_exactly(self._reader, size - len(head)) if len(head) < size else head
        self._crc = zlib.crc32(body, self._crc)
        return body

    def full_crc32(self) -> str:
        return crc32_b64(self._crc)
