"""Where a large blob's bytes are while its saga runs.

A blob too big to travel inline travels as a handle that only the process holding the
bytes can open: ``mem:<id>`` for bytes, a file object or a stream registered in this
process, ``file:<path>`` for a file this process may read. The saga runs the blob's
upload activities on a task queue that process serves, so the bytes go to S3 from where
they are, and only the handle passes through Temporal.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from largeattr.errors import InvalidInput, SourceUnavailable
from largeattr.transfer.streams import IterableReader

MEM = "mem:"
FILE = "file:"


class _Unclosing(io.BufferedIOBase):
    """A view of a caller's file object that leaves it open when we are done."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        pass


@dataclass
class _Held:
    kind: str  # "bytes", "path", "file", "stream"
    value: Any
    start: int = 0
    opened: bool = False
    #: Told the bytes uploaded so far (``SourceRegistry.report``), if someone watches.
    on_progress: Callable[[int], None] | None = None


def _from_async(chunks: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """Pull an async stream from a worker thread, one chunk at a time, on its own loop."""
    iterator = chunks.__aiter__()

    async def pull() -> bytes:
        return await iterator.__anext__()

    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(pull(), loop).result()
        except StopAsyncIteration:
            return


def is_stream(value: object) -> bool:
    return isinstance(value, Iterable | AsyncIterable) and not isinstance(
        value, bytes | bytearray | memoryview | str | os.PathLike | io.IOBase
    )


class SourceRegistry:
    """Blob sources this process can open, by handle."""

    def __init__(self, allowed_roots: Sequence[str | os.PathLike[str]] = ()) -> None:
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._roots = tuple(Path(root).resolve() for root in allowed_roots)

    # -------------------------------------------------------------- holding

    def hold(self, value: Any) -> tuple[str, bool]:
        """Register bytes, a path, a binary file object or an iterable of byte chunks.
        Returns (handle, seekable)."""
        if isinstance(value, bytes | bytearray | memoryview):
            held = _Held("bytes", bytes(value))
        elif isinstance(value, str | os.PathLike):
            path = Path(value).resolve()
            if not path.is_file():
                raise InvalidInput(f"{path} is not a readable file; pass an existing file path")
            held = _Held("path", path)
        elif hasattr(value, "read"):
            try:
                seekable = bool(value.seekable()) if hasattr(value, "seekable") else False
            except (OSError, ValueError):
                seekable = False
            held = _Held("file", value, start=value.tell()) if seekable else _Held("stream", value)
        elif isinstance(value, AsyncIterable):
            held = _Held("stream", IterableReader(_from_async(value, asyncio.get_running_loop())))
        elif isinstance(value, Iterable):
            held = _Held("stream", IterableReader(value))
        else:
            raise InvalidInput(
                f"a blob must be bytes, a file path, a binary file object or an iterable of "
                f"bytes, not {type(value).__name__}"
            )
        mode = getattr(value, "mode", "b")
        if held.kind == "file" and isinstance(mode, str) and "b" not in mode:
            raise InvalidInput("open the file in binary mode ('rb'), not text mode")
        handle = f"{MEM}{uuid.uuid4().hex}"
        with self._lock:
            self._held[handle] = held
        return handle, held.kind != "stream"

    def watch(self, handle: str, on_progress: Callable[[int], None]) -> None:
        """Call ``on_progress(bytes uploaded)`` whenever an upload of this source reports."""
        held = self._lookup(handle)
        if held is not None:
            held.on_progress = on_progress

    def report(self, handle: str, done: int) -> None:
        """An upload's progress, for whoever watches the source (nothing for ``file:``)."""
        held = None if handle.startswith(FILE) else self._lookup(handle)
        if held is not None and held.on_progress is not None:
            held.on_progress(done)

    def release(self, handle: str) -> None:
        with self._lock:
            self._held.pop(handle, None)

    # -------------------------------------------------------------- opening

    def size(self, handle: str) -> int | None:
        held = self._lookup(handle) if handle.startswith(MEM) else None
        if handle.startswith(FILE):
            return self._allowed_path(handle).stat().st_size
        if held is None:
            return None
        if held.kind == "bytes":
            return len(held.value)
        if held.kind == "path":
            return int(held.value.stat().st_size)
        if held.kind == "file":
            end = held.value.seek(0, os.SEEK_END)
            held.value.seek(held.start)
            return int(end - held.start)
        return None

    @contextlib.contextmanager
    def random_access(self, handle: str) -> Iterator[Callable[[int, int], bytes] | None]:
        """``read(offset, length)`` for a source that many threads can read at once (a
        file or bytes), else None: the upload then reads it front to back."""
        held = None if handle.startswith(FILE) else self._lookup(handle)
        if held is not None and held.kind == "bytes":
            data: bytes = held.value
            yield lambda offset, length: data[offset : offset + length]
            return
        path: Path | None = None
        if handle.startswith(FILE):
            path = self._allowed_path(handle)
        elif held is not None and held.kind == "path":
            path = held.value
        if path is not None:
            descriptor = os.open(path, os.O_RDONLY)
            try:
                yield lambda offset, length: os.pread(descriptor, length, offset)
            finally:
                os.close(descriptor)
            return
        yield None

    def open(self, handle: str) -> IO[bytes]:
        """A reader at the start of the blob. A one-pass stream opens only once."""
        if handle.startswith(FILE):
            return self._allowed_path(handle).open("rb")
        held = self._lookup(handle)
        if held is None:
            raise SourceUnavailable(
                f"blob source {handle} is not held by this process (it was released, or the "
                "process that held it restarted); start the operation again"
            )
        if held.kind == "bytes":
            return io.BytesIO(held.value)
        if held.kind == "path":
            return open(held.value, "rb")
        if held.kind == "file":
            held.value.seek(held.start)
            return cast(IO[bytes], _Unclosing(held.value))
        with self._lock:
            if held.opened:
                raise SourceUnavailable(
                    f"blob source {handle} is a one-pass stream that was already read; "
                    "pass a file or bytes to make the upload retryable"
                )
            held.opened = True
        return cast(IO[bytes], _Unclosing(held.value))

    def _lookup(self, handle: str) -> _Held | None:
        with self._lock:
            return self._held.get(handle)

    def _allowed_path(self, handle: str) -> Path:
        path = Path(handle[len(FILE) :]).resolve()
        if not any(path.is_relative_to(root) for root in self._roots):
            raise SourceUnavailable(
                f"{path} is outside the directories this worker may read; start the worker "
                "with --allow-files DIR (or upload from the client process)"
            )
        if not path.is_file():
            raise SourceUnavailable(f"{path} does not exist or is not a file on this worker")
        return path
