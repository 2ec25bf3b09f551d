"""Multipart upload that never overwrites and resumes where an earlier attempt stopped.

Memory stays bounded whatever the blob size: a source is read one part at a time and at
most ``max_concurrency`` parts are in flight. Each part carries a CRC32; completion asks
S3 to verify the whole object's CRC32 too (``ChecksumType=FULL_OBJECT``; AWS: "Checking
object integrity in Amazon S3"), unless the config says ``COMPOSITE``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr.aws_errors import error_code, is_precondition_failed
from largeattr.errors import InvalidInput
from largeattr.transfer.config import TransferConfig
from largeattr.transfer.digests import checksum_crc32
from largeattr.transfer.parts import Part, PartRead, PartReader
from largeattr.transfer.put import PutSpec
from largeattr.transfer.uploads import (
    abort_quietly,
    complete_upload,
    create_upload,
    whole_object_checksum,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Longest wait between progress reports while parts are in flight (the upload
#: activities' heartbeat timeout is 30 s, and one part on a slow uplink takes longer).
_PROGRESS_EVERY = 5.0


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
    part_numbers_sent: list[int] = field(default_factory=list)


log = logging.getLogger("largeattr")


def put_multipart(
    s3: S3Client,
    put: PutSpec,
    source: PartReader,
    config: TransferConfig,
    progress: UploadProgress,
    on_progress: Callable[[UploadProgress], None],
) -> bool:
    """Upload ``source`` in parts, resuming ``progress.upload_id`` if set. Returns True if
    written, False if the key already held an object (the upload is then aborted)."""
    confirmed = _resume_or_start(s3, put, source.size, config, progress, on_progress)
    if confirmed and not source.resumable:
        raise ValueError("a one-pass stream cannot resume an upload it has partly consumed")
    sender = PartSender(s3, put, progress, confirmed, on_progress)
    sender.send_all(source.parts(progress.part_size, confirmed), config.max_concurrency)
    on_progress(progress)
    parts = sender.checked_parts(source.size)
    whole = whole_object_checksum(config, source.full_crc32())
    try:
        complete_upload(s3, put, progress.upload_id, parts, whole)
    except ClientError as err:
        if is_precondition_failed(err):
            abort_quietly(s3, put.bucket, put.key, progress.upload_id)
            return False
        if error_code(err) == "NoSuchUpload":
            # Completed by an earlier call whose response was lost, or aborted: the caller
            # checks the object itself.
            return True
        raise
    return True


def _resume_or_start(
    s3: S3Client,
    put: PutSpec,
    size: int,
    config: TransferConfig,
    progress: UploadProgress,
    on_progress: Callable[[UploadProgress], None],
) -> dict[int, Part]:
    """The parts S3 already holds of the upload in ``progress``, or none of a new one."""
    if progress.upload_id:
        part_size = progress.part_size or config.part_size_for(max(size, 0))
        listed = _confirmed_parts(s3, put, progress.upload_id)
        if listed is not None and _parts_fit(listed, part_size, size):
            progress.part_size = part_size
            _count_done(progress, listed)
            log.info(
                "resuming multipart upload %s of s3://%s/%s: S3 holds %d parts (%d bytes)",
                progress.upload_id,
                put.bucket,
                put.key,
                progress.parts_done,
                progress.bytes_done,
            )
            return listed
        if listed is not None:
            # Cut to another part size (a heartbeat without one): its parts cannot be placed.
            abort_quietly(s3, put.bucket, put.key, progress.upload_id)
        progress.upload_id = ""
    progress.upload_id = create_upload(s3, put.args(), config)
    progress.part_size = config.part_size_for(max(size, 0))
    on_progress(progress)
    _count_done(progress, {})
    return {}


def _count_done(progress: UploadProgress, confirmed: Mapping[int, Part]) -> None:
    progress.parts_done = len(confirmed)
    progress.bytes_done = sum(part.size for part in confirmed.values())


def _confirmed_parts(s3: S3Client, put: PutSpec, upload_id: str) -> dict[int, Part] | None:
    """ListParts, every page; None when the upload is gone (aborted or completed)."""
    pages = s3.get_paginator("list_parts").paginate(
        Bucket=put.bucket, Key=put.key, UploadId=upload_id
    )
    try:
        listed = [part for page in pages for part in page.get("Parts", [])]
    except ClientError as err:
        if error_code(err) == "NoSuchUpload":
            return None
        raise
    return {
        int(part["PartNumber"]): Part(
            int(part["PartNumber"]), part["ETag"], int(part["Size"]), part.get("ChecksumCRC32")
        )
        for part in listed
    }


def _parts_fit(parts: Mapping[int, Part], part_size: int, size: int) -> bool:
    """True if parts S3 confirmed were cut to ``part_size``: all full but the last, which
    ends the object when it is short (and nothing lies beyond ``size``, when known)."""
    if not parts:
        return True
    last = max(parts)
    for number, part in parts.items():
        if part.size > part_size or (number != last and part.size != part_size):
            return False
    short = parts[last].size < part_size
    end = (last - 1) * part_size + parts[last].size
    return size < 0 or (end <= size and (end == size or not short))


class PartSender:
    """Sends parts on a thread pool, at most ``concurrency`` in flight, and reports
    progress after each part is read and at least every few seconds while parts are sent."""

    def __init__(
        self,
        s3: S3Client,
        put: PutSpec,
        progress: UploadProgress,
        confirmed: Mapping[int, Part],
        on_progress: Callable[[UploadProgress], None],
    ) -> None:
        self._s3 = s3
        self._put = put
        self._progress = progress
        self._on_progress = on_progress
        self._parts: dict[int, Part] = dict(confirmed)
        self._lock = threading.Lock()

    def send_all(self, parts: Iterator[tuple[int, PartRead]], concurrency: int) -> None:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            in_flight: set[Future[None]] = set()
            for number, read in parts:
                # Heartbeats belong to the activity's own thread, so report from here;
                # reading a part of a slow stream can take a while.
                self._on_progress(self._progress)
                while len(in_flight) >= concurrency:
                    in_flight = self._settle(in_flight)
                in_flight.add(pool.submit(self._send, number, read))
            while in_flight:
                in_flight = self._settle(in_flight)

    def _settle(self, in_flight: set[Future[None]]) -> set[Future[None]]:
        """Wait for a part to finish, reporting progress at least every few seconds."""
        done, pending = wait(in_flight, timeout=_PROGRESS_EVERY, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
        self._on_progress(self._progress)
        return pending

    def _send(self, number: int, read: PartRead) -> None:
        body = read()
        crc = checksum_crc32(body)
        response = self._s3.upload_part(
            Bucket=self._put.bucket,
            Key=self._put.key,
            UploadId=self._progress.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=crc,
        )
        with self._lock:
            self._parts[number] = Part(number, response["ETag"], len(body), crc)
            self._progress.parts_done += 1
            self._progress.part_numbers_sent.append(number)
            self._progress.bytes_done += len(body)

    def checked_parts(self, size: int) -> list[dict[str, Any]]:
        """The parts for completion, once they are known to be the whole source."""
        numbers = sorted(self._parts)
        total = sum(part.size for part in self._parts.values())
        if numbers == list(range(1, len(numbers) + 1)) and (size < 0 or total == size):
            return [self._parts[number].completed() for number in numbers]
        # Completing would store the wrong bytes under a key that names other content.
        put, progress = self._put, self._progress
        abort_quietly(self._s3, put.bucket, put.key, progress.upload_id)
        progress.upload_id = ""
        raise InvalidInput(
            f"s3://{put.bucket}/{put.key}: the parts hold {total} bytes in parts "
            f"{_ranges(numbers)}, expected {size} bytes in parts 1-{len(numbers)}; "
            "the source changed while it was stored? The upload was aborted; run it again"
        )


def _ranges(numbers: list[int]) -> str:
    """Part numbers for a message: [1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"
