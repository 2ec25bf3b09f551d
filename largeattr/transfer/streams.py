"""Reading sources: short reads looped over, and iterables of chunks as binary streams."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from largeattr.errors import InvalidInput


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_exactly(reader: Readable, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads (pipes, sockets)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = reader.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class IterableReader(io.RawIOBase):
    """A one-pass binary stream over an iterable of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise InvalidInput(
                    f"a blob stream must yield bytes, not {type(chunk).__name__}; "
                    "encode text before streaming it"
                )
            self._pending = bytes(chunk)
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count
