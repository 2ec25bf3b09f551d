"""Moving blob bytes between a process and S3: streaming, multipart, resumable, verified.

Memory stays bounded whatever the blob size: a source is read one part at a time and at
most ``max_concurrency`` parts are in flight.

Integrity: a single PutObject sends a SHA-256 checksum that S3 verifies; a multipart upload
sends a CRC32 per part and a full-object CRC32 (``ChecksumType=FULL_OBJECT``) that S3
verifies on completion (AWS: "Checking object integrity in Amazon S3"), or, with
``TransferConfig(multipart_checksum="COMPOSITE")``, only the per-part CRC32s. The SHA-256 of
the content is in the object's key and in the item, and readers verify it on download.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Literal

from botocore.exceptions import ClientError

from largeattr.errors import BlobTooLarge, CorruptObject, InvalidInput
from largeattr.messages import PreparedBlob

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: S3 limits (AWS: "Amazon S3 multipart upload limits").
MAX_OBJECT_SIZE = 5 * 1024 * GiB
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
MAX_SINGLE_PUT = 5 * GiB
MAX_SINGLE_COPY = 5 * GiB

MultipartChecksum = Literal["FULL_OBJECT", "COMPOSITE"]
FULL_OBJECT: MultipartChecksum = "FULL_OBJECT"
COMPOSITE: MultipartChecksum = "COMPOSITE"
MULTIPART_CHECKSUMS: tuple[MultipartChecksum, ...] = (FULL_OBJECT, COMPOSITE)

_READ_CHUNK = 1 * MiB
_HASH_CHUNK = 4 * MiB
#: Longest wait between progress reports while parts are in flight (the upload
#: activities' heartbeat timeout is 30 s, and one part on a slow uplink takes longer).
_PROGRESS_EVERY = 5.0


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


def checksum_crc32(data: bytes | memoryview) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


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
        crc = base64.b64encode(self._crc.to_bytes(4, "big")).decode("ascii")
        return PreparedBlob(sha256=self._sha.hexdigest(), size=self.size, crc32=crc)


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
    return PreparedBlob(
        sha256=sha.hexdigest(),
        size=size,
        crc32=base64.b64encode(value.to_bytes(4, "big")).decode("ascii"),
    )


def digest_bytes(data: bytes) -> PreparedBlob:
    digest = Digest()
    digest.update(data)
    return digest.result()


def read_exactly(reader: IO[bytes], size: int) -> bytes:
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


@dataclass
class UploadProgress:
    """Resume state of a multipart upload, as heartbeated by the upload activity."""

    upload_id: str = ""
    #: The part size the upload's parts are cut to: a resumed attempt keeps it, whatever
    #: its own TransferConfig says (workers may run with different part sizes).
    part_size: int = 0
    parts_done: int = 0
    bytes_done: int = 0
    #: Parts this process sent (a resumed upload sends only the missing ones).
    parts_sent: int = 0
    part_numbers_sent: list[int] = field(default_factory=list)


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


def is_precondition_failed(err: ClientError) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "PreconditionFailed" or status == 412


def put_small(
    s3: S3Client, spec: PutSpec, data: bytes, sha256_hex: str, if_none_match: bool = True
) -> bool:
    """PutObject that never overwrites. True if written, False if the key already exists."""
    conditional: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
    try:
        s3.put_object(
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=sha256_b64(sha256_hex),
            **conditional,
            **spec.args(),
        )
    except ClientError as err:
        if is_precondition_failed(err):
            return False
        raise
    return True


def put_multipart(
    s3: S3Client,
    spec: PutSpec,
    reader: IO[bytes],
    size: int,
    full_crc32: str | None,
    config: TransferConfig,
    progress: UploadProgress,
    on_progress: Callable[[UploadProgress], None],
    seek: bool,
    read_part: Callable[[int, int], bytes] | None = None,
) -> bool:
    """Multipart upload that never overwrites, resuming ``progress.upload_id`` if set.

    ``reader`` is read sequentially; for a resumed upload of a seekable source the parts
    S3 already confirmed (ListParts) are skipped with a seek. ``size`` may be -1 for a
    stream of unknown length (then ``full_crc32`` is computed on the way). With
    ``read_part(offset, length)`` (a file or bytes), each part is read by the thread that
    sends it instead. Returns True if written, False if the key already held an object
    (the upload is aborted).
    """
    part_size = progress.part_size or config.part_size_for(max(size, 0))
    confirmed: dict[int, dict[str, Any]] = {}
    if progress.upload_id:
        listed = _confirmed_parts(s3, spec, progress.upload_id)
        if listed is None:  # the upload was aborted or completed: start over
            progress.upload_id = ""
        elif not _parts_fit(listed, part_size, size):
            # Cut to another part size (a heartbeat without one): its parts cannot be placed.
            abort_quietly(s3, spec.bucket, spec.key, progress.upload_id)
            progress.upload_id = ""
        else:
            confirmed = listed
    if not progress.upload_id:
        part_size = config.part_size_for(max(size, 0))
        created = s3.create_multipart_upload(
            ChecksumAlgorithm="CRC32", ChecksumType=config.multipart_checksum, **spec.args()
        )
        progress.upload_id = created["UploadId"]
        progress.part_size = part_size
        on_progress(progress)
    progress.part_size = part_size
    progress.parts_done = len(confirmed)
    progress.bytes_done = sum(int(part["Size"]) for part in confirmed.values())
    running_crc = 0
    finished: dict[int, dict[str, Any]] = {
        number: {
            "PartNumber": number,
            "ETag": part["ETag"],
            "ChecksumCRC32": part.get("ChecksumCRC32"),
        }
        for number, part in confirmed.items()
    }
    lengths = {number: int(part["Size"]) for number, part in confirmed.items()}
    lock = threading.Lock()

    def send(number: int, body: bytes) -> None:
        crc = checksum_crc32(body)
        response = s3.upload_part(
            Bucket=spec.bucket,
            Key=spec.key,
            UploadId=progress.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=crc,
        )
        with lock:
            finished[number] = {
                "PartNumber": number,
                "ETag": response["ETag"],
                "ChecksumCRC32": crc,
            }
            lengths[number] = len(body)
            progress.parts_done += 1
            progress.parts_sent += 1
            progress.part_numbers_sent.append(number)
            progress.bytes_done += len(body)

    def read_and_send(number: int, offset: int, length: int) -> None:
        assert read_part is not None
        send(number, read_part(offset, length))

    if confirmed and not seek:
        raise ValueError("a one-pass stream cannot resume an upload it has partly consumed")
    random_access = read_part is not None and size >= 0
    with ThreadPoolExecutor(max_workers=config.max_concurrency) as pool:
        in_flight: set[Future[None]] = set()

        def settle() -> None:
            """Wait for a part to finish, reporting progress at least every few seconds."""
            nonlocal in_flight
            done, in_flight = wait(in_flight, timeout=_PROGRESS_EVERY, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
            # Heartbeats belong to the activity's own thread, so report from here.
            on_progress(progress)

        def submit(fn: Callable[..., None], *args: Any) -> None:
            while len(in_flight) >= config.max_concurrency:
                settle()
            in_flight.add(pool.submit(fn, *args))

        number = 0
        while True:
            number += 1
            if number > MAX_PARTS:
                raise BlobTooLarge(
                    f"the stream needs more than {MAX_PARTS} parts of {part_size} bytes; "
                    "raise TransferConfig.part_size"
                )
            offset = (number - 1) * part_size
            if random_access and read_part is not None:
                if offset >= size:
                    break
                if number in confirmed:
                    if not finished[number].get("ChecksumCRC32"):
                        # ListParts without checksums (some S3 emulators): read, don't resend.
                        length = int(confirmed[number]["Size"])
                        finished[number]["ChecksumCRC32"] = checksum_crc32(
                            read_part(offset, length)
                        )
                    continue
                submit(read_and_send, number, offset, min(part_size, size - offset))
                continue
            if number in confirmed:
                size_done = int(confirmed[number]["Size"])
                if finished[number].get("ChecksumCRC32"):
                    reader.seek(size_done, os.SEEK_CUR)
                else:  # ListParts without checksums (some S3 emulators): read, don't resend
                    finished[number]["ChecksumCRC32"] = checksum_crc32(
                        read_exactly(reader, size_done)
                    )
                continue
            body = read_exactly(reader, part_size)
            on_progress(progress)  # reading a part of a slow stream can take a while
            if not body and number > 1:
                break
            if full_crc32 is None:
                running_crc = zlib.crc32(body, running_crc)
            submit(send, number, body)
            if len(body) < part_size:
                break
        while in_flight:
            settle()
    on_progress(progress)
    if full_crc32 is None:
        full_crc32 = base64.b64encode(running_crc.to_bytes(4, "big")).decode("ascii")
    parts = [finished[n] for n in sorted(finished)]
    total = sum(lengths.values())
    if sorted(finished) != list(range(1, len(finished) + 1)) or (size >= 0 and total != size):
        # Completing would store the wrong bytes under a key that names other content.
        abort_quietly(s3, spec.bucket, spec.key, progress.upload_id)
        progress.upload_id = ""
        raise InvalidInput(
            f"s3://{spec.bucket}/{spec.key}: the parts hold {total} bytes in parts "
            f"{_ranges(sorted(finished))}, expected {size} bytes in parts 1-{len(finished)}; "
            "the source changed while it was stored? The upload was aborted; run it again"
        )
    whole: dict[str, str] = {}
    if config.multipart_checksum == FULL_OBJECT:
        whole = {"ChecksumCRC32": full_crc32, "ChecksumType": FULL_OBJECT}
    try:
        s3.complete_multipart_upload(
            Bucket=spec.bucket,
            Key=spec.key,
            UploadId=progress.upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            IfNoneMatch="*",
            **whole,  # type: ignore[arg-type]
        )
    except ClientError as err:
        if is_precondition_failed(err):
            abort_quietly(s3, spec.bucket, spec.key, progress.upload_id)
            return False
        if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
            # Completed by an earlier call whose response was lost, or aborted: the caller
            # checks the object itself.
            return True
        raise
    return True


def _parts_fit(parts: Mapping[int, Mapping[str, Any]], part_size: int, size: int) -> bool:
    """True if parts S3 confirmed were cut to ``part_size``: all full but the last, which
    ends the object when it is short (and nothing lies beyond ``size``, when known)."""
    if not parts:
        return True
    last = max(parts)
    for number, part in parts.items():
        length = int(part["Size"])
        if length > part_size or (number != last and length != part_size):
            return False
    short = int(parts[last]["Size"]) < part_size
    end = (last - 1) * part_size + int(parts[last]["Size"])
    return size < 0 or (end <= size and (end == size or not short))


def _ranges(numbers: list[int]) -> str:
    """Part numbers for a message: [1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"


def _confirmed_parts(
    s3: S3Client, spec: PutSpec, upload_id: str
) -> dict[int, dict[str, Any]] | None:
    parts: dict[int, dict[str, Any]] = {}
    marker = 0
    try:
        while True:
            page = s3.list_parts(
                Bucket=spec.bucket, Key=spec.key, UploadId=upload_id, PartNumberMarker=marker
            )
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = dict(part)
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return None
        raise


def abort_quietly(s3: S3Client, bucket: str, key: str, upload_id: str) -> None:
    # If this fails, the lifecycle rule `largeattr setup` installs removes the upload later.
    with contextlib.suppress(ClientError):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def list_uploads(s3: S3Client, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every unfinished multipart upload under ``prefix``, page after page."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = s3.list_multipart_uploads(**kwargs)
        yield from (dict(upload) for upload in page.get("Uploads", []))
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def abort_uploads(s3: S3Client, bucket: str, key: str) -> int:
    """Abort every unfinished multipart upload of exactly this key."""
    aborted = 0
    for upload in list_uploads(s3, bucket, key):
        if upload.get("Key") == key:
            abort_quietly(s3, bucket, key, upload["UploadId"])
            aborted += 1
    return aborted


def copy_object(
    s3: S3Client,
    source_key: str,
    spec: PutSpec,
    size: int,
    config: TransferConfig,
    full_crc32: str | None = None,
) -> bool:
    """Server-side copy into ``spec.key`` with new metadata (and the spec's storage class
    and tags); multipart above ``copy_threshold``. Never overwrites: True if written, False
    if the key already held an object (the caller checks what it holds)."""
    source = {"Bucket": spec.bucket, "Key": source_key}
    args = spec.args()
    if "Tagging" in args:
        args["TaggingDirective"] = "REPLACE"  # else S3 copies the source's tags
    if size <= config.copy_threshold:
        try:
            # If-None-Match on CopyObject: AWS S3 User Guide, "How to prevent object
            # overwrites with conditional writes" (moto 5.2.5 accepts and ignores it).
            s3.copy_object(
                CopySource=source,  # type: ignore[arg-type]
                MetadataDirective="REPLACE",
                ChecksumAlgorithm="CRC32",
                IfNoneMatch="*",
                **args,
            )
        except ClientError as err:
            if is_precondition_failed(err):
                return False
            raise
        return True
    part_size = max(config.part_size_for(size), config.copy_part_size)
    args.pop("TaggingDirective", None)  # CreateMultipartUpload takes the tags themselves
    upload_id = s3.create_multipart_upload(
        ChecksumAlgorithm="CRC32", ChecksumType=config.multipart_checksum, **args
    )["UploadId"]
    try:
        parts = []
        for index, start in enumerate(range(0, size, part_size), start=1):
            end = min(start + part_size, size) - 1
            response = s3.upload_part_copy(
                Bucket=spec.bucket,
                Key=spec.key,
                UploadId=upload_id,
                PartNumber=index,
                CopySource=source,  # type: ignore[arg-type]
                CopySourceRange=f"bytes={start}-{end}",
            )
            result = response["CopyPartResult"]
            part = {"PartNumber": index, "ETag": result["ETag"]}
            if result.get("ChecksumCRC32"):
                part["ChecksumCRC32"] = result["ChecksumCRC32"]
            parts.append(part)
        whole: dict[str, str] = {}
        if config.multipart_checksum == FULL_OBJECT and full_crc32:
            whole = {"ChecksumCRC32": full_crc32, "ChecksumType": FULL_OBJECT}
        s3.complete_multipart_upload(
            Bucket=spec.bucket,
            Key=spec.key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            IfNoneMatch="*",
            **whole,  # type: ignore[arg-type]
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return True  # completed by a call whose response was lost: the caller checks
        abort_quietly(s3, spec.bucket, spec.key, upload_id)
        if is_precondition_failed(err):
            return False
        raise
    except BaseException:
        abort_quietly(s3, spec.bucket, spec.key, upload_id)
        raise
    return True


# ---------------------------------------------------------------- reading


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


def download_to(
    s3: S3Client, bucket: str, key: str, sha256_hex: str | None, target: BinaryIO
) -> int:
    written = 0
    for chunk in iter_object(s3, bucket, key, sha256_hex):
        target.write(chunk)
        written += len(chunk)
    return written
