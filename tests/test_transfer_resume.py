"""Multipart transfers at the Storage / transfer level, against the session's moto server:
resuming with another part size, parts that do not add up, conditional multipart copy,
progress reports while parts are slow, and paged listings of stale uploads."""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from largeattr import InvalidInput, LargeAttrTable
from largeattr.config import AwsConfig
from largeattr.messages import BlobInput, FindOrphansArgs
from largeattr.storage import Storage
from largeattr.transfer import MiB, TransferConfig, multipart
from largeattr.transfer.copy import copy_object
from largeattr.transfer.digests import digest_bytes
from largeattr.transfer.multipart import UploadProgress, put_multipart
from largeattr.transfer.parts import RandomAccessParts, StreamParts
from largeattr.transfer.put import PutSpec
from tests.conftest import BUCKET, open_uploads
from tests.faults import Faults
from tests.test_blobs import pattern

pytestmark = pytest.mark.unit

FIVE_MIB = TransferConfig(multipart_threshold=6 * MiB, part_size=5 * MiB, max_concurrency=1)
EIGHT_MIB = dataclasses.replace(FIVE_MIB, part_size=8 * MiB)
BLOB = BlobInput(attribute="html")


def new_put() -> PutSpec:
    return PutSpec(
        bucket=BUCKET,
        key=f"transfer/{uuid.uuid4().hex}",
        content_type="application/octet-stream",
        metadata={"la-saga": "s1"},
    )


def reader_of(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: data[offset : offset + length]


def uploads_of(s3: Any, key: str) -> list[str]:
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    return [u["UploadId"] for u in uploads if u["Key"] == key]


def fail_after_three_parts(
    aws: AwsConfig, put: PutSpec, data: bytes, random_access: bool
) -> UploadProgress:
    """A 5 MiB-part upload whose UploadParts fail from part 4 on: parts 1-3 stay confirmed."""
    s3, dynamodb = aws.clients()
    Faults().attach(s3).fail("UploadPart", times=-1, match=lambda p: int(p["PartNumber"]) > 3)
    progress = UploadProgress()
    with pytest.raises(ClientError):
        Storage(s3, dynamodb, FIVE_MIB).blobs.store(
            put,
            BLOB,
            digest_bytes(data),
            lambda: io.BytesIO(data),
            "s1",
            progress=progress,
            read_part=reader_of(data) if random_access else None,
        )
    assert sorted(progress.part_numbers_sent) == [1, 2, 3]
    assert progress.part_size == 5 * MiB
    return progress


@pytest.mark.parametrize("random_access", [True, False], ids=["read-part", "seek"])
def test_resume_keeps_the_part_size_the_upload_started_with(
    aws: AwsConfig, s3: Any, random_access: bool, caplog: pytest.LogCaptureFixture
) -> None:
    data, put = pattern(23 * MiB, 11), new_put()
    first = fail_after_three_parts(aws, put, data, random_access)

    # A worker configured with 8 MiB parts resumes from the heartbeat: upload id, part size.
    resumed = UploadProgress(upload_id=first.upload_id, part_size=first.part_size)
    caplog.set_level(logging.INFO, logger="largeattr")
    client, dynamodb = aws.clients()
    calls = Faults().attach(client)
    sent: list[int] = []
    calls.before("UploadPart", lambda p: sent.append(int(p["PartNumber"])), times=-1)
    Storage(client, dynamodb, EIGHT_MIB).blobs.store(
        put,
        BLOB,
        digest_bytes(data),
        lambda: io.BytesIO(data),
        "s1",
        progress=resumed,
        read_part=reader_of(data) if random_access else None,
    )
    assert sorted(sent) == [4, 5]  # 5 MiB parts 4 and 5, the 3 MiB tail
    # The log says what S3 holds (ListParts), not what a stale heartbeat said.
    assert f"S3 holds 3 parts ({15 * MiB} bytes)" in caplog.text
    assert calls.calls["s3.CreateMultipartUpload"] == 0
    assert s3.head_object(Bucket=BUCKET, Key=put.key)["ContentLength"] == len(data)
    assert s3.get_object(Bucket=BUCKET, Key=put.key)["Body"].read() == data
    assert uploads_of(s3, put.key) == []


def test_resume_without_a_recorded_part_size_starts_over_when_the_parts_do_not_fit(
    aws: AwsConfig, s3: Any
) -> None:
    """A heartbeat from before part sizes were recorded: the 5 MiB parts cannot be 8 MiB
    parts, so the upload is aborted and a fresh one sends everything."""
    data, put = pattern(23 * MiB, 12), new_put()
    first = fail_after_three_parts(aws, put, data, random_access=True)

    client, dynamodb = aws.clients()
    calls = Faults().attach(client)
    sent: list[int] = []
    calls.before("UploadPart", lambda p: sent.append(int(p["PartNumber"])), times=-1)
    resumed = UploadProgress(upload_id=first.upload_id)
    Storage(client, dynamodb, EIGHT_MIB).blobs.store(
        put, BLOB, digest_bytes(data), lambda: io.BytesIO(data), "s1", progress=resumed
    )
    assert sorted(sent) == [1, 2, 3]  # three 8 MiB parts
    assert resumed.upload_id != first.upload_id
    assert resumed.part_size == 8 * MiB
    assert calls.calls["s3.AbortMultipartUpload"] >= 1
    assert s3.get_object(Bucket=BUCKET, Key=put.key)["Body"].read() == data
    assert uploads_of(s3, put.key) == []


def test_parts_that_do_not_add_up_to_the_size_are_never_completed(aws: AwsConfig, s3: Any) -> None:
    """The source shrank while it was stored: no object of the wrong size under the key."""
    data, put = pattern(13 * MiB, 13), new_put()
    client, dynamodb = aws.clients()
    calls = Faults().attach(client)

    def shrunk(offset: int, length: int) -> bytes:
        return data[offset : offset + length - (1000 if offset else 0)]

    with pytest.raises(InvalidInput, match="expected 13631488 bytes"):
        Storage(client, dynamodb, FIVE_MIB).blobs.store(
            put, BLOB, digest_bytes(data), lambda: io.BytesIO(data), "s1", read_part=shrunk
        )
    assert calls.calls["s3.CompleteMultipartUpload"] == 0
    assert calls.calls["s3.UploadPart"] == 3
    assert uploads_of(s3, put.key) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key=put.key)


def test_multipart_copy_never_overwrites(aws: AwsConfig, s3: Any) -> None:
    data, source = pattern(11 * MiB, 14), new_put()
    s3.put_object(Bucket=BUCKET, Key=source.key, Body=data)
    target = new_put()
    s3.put_object(Bucket=BUCKET, Key=target.key, Body=b"already there")
    config = TransferConfig(part_size=5 * MiB, copy_threshold=10 * MiB, copy_part_size=5 * MiB)
    client, _ = aws.clients()
    calls = Faults().attach(client)

    written = copy_object(client, source.key, target, len(data), config, digest_bytes(data).crc32)
    assert written is False
    assert calls.calls["s3.UploadPartCopy"] == 3
    assert s3.get_object(Bucket=BUCKET, Key=target.key)["Body"].read() == b"already there"
    assert uploads_of(s3, target.key) == []


def test_progress_is_reported_while_slow_parts_are_in_flight(
    aws: AwsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part that takes longer than the heartbeat timeout must not silence the reports."""
    monkeypatch.setattr(multipart, "_PROGRESS_EVERY", 0.05)
    client, _ = aws.clients()
    Faults().attach(client).slow("UploadPart", 0.6)
    data, put = pattern(15 * MiB, 15), new_put()
    config = dataclasses.replace(FIVE_MIB, max_concurrency=2)
    reports: list[float] = []
    put_multipart(
        client,
        put,
        RandomAccessParts(reader_of(data), len(data), digest_bytes(data).crc32),
        config,
        UploadProgress(),
        lambda _: reports.append(time.monotonic()),
    )
    assert reports[-1] - reports[0] >= 1.0  # two rounds of 0.6 s parts
    assert max(later - earlier for earlier, later in itertools.pairwise(reports)) < 0.3


def test_a_stream_reports_progress_after_each_part_it_reads(aws: AwsConfig, s3: Any) -> None:
    data, put = pattern(12 * MiB, 16), new_put()
    reports: list[UploadProgress] = []
    reads: dict[int, int] = {}  # offset of each read -> reports made before it

    class Recording(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.setdefault(self.tell(), len(reports))
            return super().read(size)

    client, _ = aws.clients()
    config = dataclasses.replace(FIVE_MIB, max_concurrency=8)  # no part waits for another
    put_multipart(
        client, put, StreamParts(Recording(data)), config, UploadProgress(), reports.append
    )
    at_part_starts = [reads[offset] for offset in (0, 5 * MiB, 10 * MiB)]
    assert at_part_starts == sorted(set(at_part_starts)), at_part_starts
    assert s3.get_object(Bucket=BUCKET, Key=put.key)["Body"].read() == data


class OneUploadPerPage:
    """Makes a client's ListMultipartUploads answer one upload per page, as S3 does past
    1,000 (moto ignores MaxUploads), through botocore's event hooks so that boto3's
    paginator sees the pages."""

    def __init__(self, s3: Any) -> None:
        self.pages = 0
        s3.meta.events.register("before-parameter-build.s3.ListMultipartUploads", self._asked)
        s3.meta.events.register("after-call.s3.ListMultipartUploads", self._one_upload)

    def _asked(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.pages += 1
        context["after"] = (params.pop("KeyMarker", ""), params.pop("UploadIdMarker", ""))

    def _one_upload(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        uploads = sorted(parsed.get("Uploads", []), key=lambda u: (u["Key"], u["UploadId"]))
        rest = [u for u in uploads if (u["Key"], u["UploadId"]) > context["after"]]
        parsed["Uploads"], parsed["IsTruncated"] = rest[:1], len(rest) > 1
        if rest:
            parsed["NextKeyMarker"], parsed["NextUploadIdMarker"] = (
                rest[0]["Key"],
                rest[0]["UploadId"],
            )


def test_reconcile_aborts_stale_uploads_past_the_first_page(
    aws: AwsConfig, s3: Any, table: LargeAttrTable
) -> None:
    for index in range(3):
        s3.create_multipart_upload(Bucket=table.bucket, Key=f"{table.prefix}/stale-{index}")
    client, dynamodb = aws.clients()
    paged = OneUploadPerPage(client)
    page = Storage(client, dynamodb).cleanup.find_orphans(
        FindOrphansArgs(table=table.spec, grace_seconds=0, upload_grace_seconds=0, page_size=100)
    )
    assert page.uploads_aborted == 3
    assert paged.pages == 3
    assert open_uploads(s3, table) == []
