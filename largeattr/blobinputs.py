"""How each blob a caller passes travels to its saga: inline in the workflow input when it
is small, else held by this process and uploaded from here (only a handle travels)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import mimetypes
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from largeattr.blobs import user_metadata
from largeattr.errors import BlobTooLarge, InvalidInput
from largeattr.messages import BlobInput, S3Options
from largeattr.sources import FILE, SourceRegistry, is_stream
from largeattr.table import LargeAttrTable
from largeattr.transfer.config import MAX_OBJECT_SIZE, TransferConfig


@dataclass(frozen=True)
class Blob:
    """A large attribute value with its settings. Plain bytes, a ``pathlib.Path``, a binary
    file object or an iterable of byte chunks may be passed directly instead."""

    data: Any
    content_type: str | None = None
    content_encoding: str | None = None
    s3: S3Options | None = None
    #: ``data`` is a path on the worker, which uploads it (a ``file:`` source, allowed by
    #: the worker's ``--allow-files``); such an upload resumes after a worker crash.
    on_worker: bool = False

    @staticmethod
    def worker_file(
        path: str | os.PathLike[str],
        content_type: str | None = None,
        content_encoding: str | None = None,
        s3: S3Options | None = None,
    ) -> Blob:
        """A file the worker reads and uploads, instead of this process."""
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise InvalidInput("Blob.worker_file takes a path (str or pathlib.Path)")
        if not Path(path).is_absolute():
            raise InvalidInput(
                f"Blob.worker_file({os.fspath(path)!r}): give an absolute path, as the "
                "worker sees it (it runs elsewhere, in another directory)"
            )
        return Blob(Path(path), content_type, content_encoding, s3, on_worker=True)


@dataclass
class Holder:
    """Where blobs too big to travel inline stay: this process's sources, served on its
    own task queue; ``held`` collects their handles, to release once the saga is done."""

    sources: SourceRegistry
    task_queue: str
    held: list[str]
    #: ``on_progress(done_bytes, total_bytes or None)`` over the blobs uploaded from here.
    on_progress: Callable[[int, int | None], None] | None = None


class UploadTally:
    """One call's upload progress: the bytes sent of every blob it uploads from this
    process, summed (the total is None while a stream of unknown length is among them)."""

    def __init__(self, on_progress: Callable[[int, int | None], None]) -> None:
        self._on_progress = on_progress
        self._sizes: dict[str, int | None] = {}
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def watch(self, sources: SourceRegistry, source: str, size: int | None) -> None:
        with self._lock:
            self._sizes[source] = size
            self._done[source] = 0
        sources.watch(source, lambda done: self._report(source, done))

    def _report(self, source: str, done: int) -> None:
        with self._lock:
            self._done[source] = done
            sizes = list(self._sizes.values())
            total = None if None in sizes else sum(s for s in sizes if s is not None)
            done_all = sum(self._done.values())
        self._on_progress(done_all, total)


async def blob_inputs(
    table: LargeAttrTable, blobs: Mapping[str, Any], transfer: TransferConfig, holder: Holder
) -> tuple[tuple[BlobInput, ...], list[str]]:
    """Validate blobs and decide how each travels: inline, or from this process."""
    table.check_blob_names(list(blobs))
    removed = [name for name, value in blobs.items() if value is None]
    wrapped = {
        name: value if isinstance(value, Blob) else Blob(value)
        for name, value in blobs.items()
        if value is not None
    }
    inline_left = transfer.inline_total
    tally = UploadTally(holder.on_progress) if holder.on_progress else None
    inputs: list[BlobInput] = []
    for name, blob in sorted(wrapped.items(), key=lambda kv: _known_size(kv[1].data)):
        content_type, encoding = _content_type(blob)
        user_metadata(blob.s3)  # refused here, before anything is written
        if blob.on_worker:
            inputs.append(_on_worker(name, blob, content_type, encoding))
            continue
        small = await asyncio.to_thread(_small_bytes, blob.data, transfer.inline_threshold)
        if small is not None and len(small) <= inline_left:
            inline_left -= len(small)
            inputs.append(BlobInput.inline(name, small, content_type, encoding, blob.s3))
            continue
        source, seekable = holder.sources.hold(
            io.BytesIO(small) if small is not None else blob.data
        )
        holder.held.append(source)
        size = holder.sources.size(source)
        if tally is not None:
            tally.watch(holder.sources, source, size)
        if size is not None and size > MAX_OBJECT_SIZE:
            raise BlobTooLarge(
                f"blob {name!r} is {size:,} bytes; S3 objects are at most {MAX_OBJECT_SIZE:,}"
            )
        inputs.append(
            BlobInput(
                attribute=name,
                content_type=content_type,
                content_encoding=encoding,
                source=source,
                task_queue=holder.task_queue,
                seekable=seekable,
                size=size,
                s3=blob.s3,
            )
        )
    order = {name: i for i, name in enumerate(blobs)}
    inputs.sort(key=lambda b: order[b.attribute])
    return tuple(inputs), removed


def _on_worker(name: str, blob: Blob, content_type: str, encoding: str | None) -> BlobInput:
    path = Path(blob.data)
    size = path.stat().st_size if path.is_file() else None  # the worker may see other files
    return BlobInput(
        attribute=name,
        content_type=content_type,
        content_encoding=encoding,
        source=f"{FILE}{path}",
        size=size,
        s3=blob.s3,
    )


def _known_size(data: Any) -> int:
    if isinstance(data, bytes | bytearray | memoryview):
        return len(data)
    if isinstance(data, os.PathLike):
        with contextlib.suppress(OSError):
            return Path(data).stat().st_size
    return MAX_OBJECT_SIZE


def _small_bytes(data: Any, threshold: int) -> bytes | None:
    """The bytes of a blob that is small enough to travel inline, else None.

    Also where the type of a blob is checked, so a wrong one fails before anything runs."""
    if isinstance(data, str):
        raise InvalidInput(
            "a blob given as str is ambiguous: encode text (text.encode()) or pass a "
            "pathlib.Path to upload a file"
        )
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data) if len(data) <= threshold else None
    if isinstance(data, os.PathLike):
        path = Path(data)
        if not path.is_file():
            raise InvalidInput(f"{path} is not a readable file; pass an existing file path")
        return path.read_bytes() if path.stat().st_size <= threshold else None
    if hasattr(data, "read"):
        mode = getattr(data, "mode", "rb")
        if isinstance(mode, str) and "b" not in mode:
            raise InvalidInput("open the file in binary mode ('rb'), not text mode")
        if isinstance(data, io.TextIOBase):
            raise InvalidInput("pass a binary file object (open(..., 'rb')), not a text one")
        seekable = False
        with contextlib.suppress(OSError, ValueError, AttributeError):
            seekable = bool(data.seekable())
        if seekable:
            start = data.tell()
            end = data.seek(0, os.SEEK_END)
            data.seek(start)
            if end - start <= threshold:
                chunk = data.read(end - start)
                data.seek(start)
                if not isinstance(chunk, bytes):
                    raise InvalidInput("the file object returned text; open it in binary mode")
                return chunk
        return None
    if isinstance(data, Mapping | set | frozenset):
        raise InvalidInput(
            f"a blob must be bytes, a file or a stream of bytes, not a {type(data).__name__}; "
            "serialise it first (e.g. json.dumps(value).encode())"
        )
    if isinstance(data, list | tuple) and not all(
        isinstance(chunk, bytes | bytearray | memoryview) for chunk in data
    ):
        raise InvalidInput("a list given as a blob must hold bytes chunks only")
    if is_stream(data):
        return None
    raise InvalidInput(
        f"a blob must be bytes, a pathlib.Path, a binary file object or an iterable of bytes "
        f"chunks, not {type(data).__name__}"
    )


def _content_type(blob: Blob) -> tuple[str, str | None]:
    name = None
    if isinstance(blob.data, os.PathLike):
        name = os.fspath(blob.data)
    elif isinstance(getattr(blob.data, "name", None), str):
        name = blob.data.name
    guessed, encoding = mimetypes.guess_type(name) if name else (None, None)
    return (
        blob.content_type or guessed or "application/octet-stream",
        blob.content_encoding or encoding,
    )
