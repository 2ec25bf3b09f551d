"""Blobs of every kind and size: inline, held by the client, files, streams, multipart."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from largeattr import (
    AccessDenied,
    Blob,
    CorruptObject,
    InvalidInput,
    LargeAttrClient,
    LargeAttrTable,
    S3Options,
    SagaOptions,
    SourceUnavailable,
)
from largeattr.config import AwsConfig
from largeattr.messages import BlobInput, CreateItemInput
from largeattr.transfer import MiB, TransferConfig
from largeattr.transfer.digests import digest_bytes
from largeattr.workflows import CreateItemWorkflow
from tests.conftest import create_from_file, no_change, object_keys, open_uploads
from tests.faults import Faults, client_error


def pattern(size: int, seed: int = 0) -> bytes:
    """Non-repeating-looking bytes (a repeating block would hide part-order bugs)."""
    blocks: list[bytes] = []
    counter = 0
    while sum(len(block) for block in blocks) < size:
        blocks.append(hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 128)
        counter += 1
    return b"".join(blocks)[:size]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def history_bytes(temporal: Client, workflow_id: str) -> int:
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    return sum(event.ByteSize() for event in history.events)


async def read(la: LargeAttrClient, table: LargeAttrTable, key: str, attr: str) -> bytes:
    item = await la.get(table, key)
    assert item is not None
    return await la.read_blob(item.blob(attr))


async def test_blob_over_inline_threshold_goes_from_the_client(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Client
) -> None:
    data = pattern(400_000)
    result = await la.create(table, "doc", blobs={"image": data})
    assert await read(la, table, "doc", "image") == data
    # Only a handle went through Temporal: the history is far smaller than the blob.
    assert await history_bytes(temporal, table.workflow_id("doc")) < 32_000
    assert result.blobs[0].meta.size == 400_000


async def test_inline_budget_splits_between_inline_and_reference(
    la: LargeAttrClient, table: LargeAttrTable, temporal: Client
) -> None:
    html, image = pattern(200_000, 1), pattern(250_000, 2)
    await la.create(table, "doc", blobs={"html": html, "image": image})
    assert await read(la, table, "doc", "html") == html
    assert await read(la, table, "doc", "image") == image
    # One went inline (~270 KB of base64), the other by reference.
    size = await history_bytes(temporal, table.workflow_id("doc"))
    assert 200_000 < size < 700_000


async def test_multipart_upload_of_bytes_file_and_file_object(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, tmp_path: Path
) -> None:
    data = pattern(13 * MiB)
    path = write(tmp_path / "scan.png", pattern(7 * MiB, 7))
    with open(path, "rb") as handle:
        handle.seek(0)
        result = await la.create(table, "doc", blobs={"html": data, "image": handle})
    by_attr = {b.attribute: b for b in result.blobs}
    assert await read(la, table, "doc", "html") == data
    assert await read(la, table, "doc", "image") == path.read_bytes()
    head = s3.head_object(Bucket=table.bucket, Key=by_attr["html"].key, ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"  # S3 checked a whole-object CRC32
    assert head["ContentLength"] == 13 * MiB
    assert by_attr["image"].meta.content_type == "image/png"  # guessed from the name
    await la.update(table, "doc", blobs={"image": path})  # same bytes by path: no upload
    assert open_uploads(s3, table) == []


async def test_composite_multipart_checksum_for_stores_without_full_object(
    temporal: Client,
    task_queue: str,
    aws: AwsConfig,
    test_transfer: TransferConfig,
    table: LargeAttrTable,
    s3: Any,
) -> None:
    composite = dataclasses.replace(test_transfer, multipart_checksum="COMPOSITE")
    data = pattern(13 * MiB, 9)
    async with LargeAttrClient(temporal, task_queue=task_queue, aws=aws, transfer=composite) as la:
        client_side = Faults().attach(la.storage.s3)
        result = await la.create(table, "doc", blobs={"html": data})
        assert await read(la, table, "doc", "html") == data
        key = result.blobs[0].key
        head = s3.head_object(Bucket=table.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumType"] == "COMPOSITE"  # only the parts' CRC32s were checked
        assert head["ContentLength"] == 13 * MiB
        assert client_side.calls["s3.UploadPart"] == 3
        # Without a whole-object CRC, an object already under the key is recognised by its
        # size (the key names its SHA-256): remove the attribute but keep the object, then
        # store the same bytes again.
        keep = SagaOptions(delete_old_objects=False)
        await la.update(table, "doc", blobs={"html": None}, options=keep)
        await la.update(table, "doc", blobs={"html": data})
        assert client_side.calls["s3.UploadPart"] == 3
        assert client_side.calls["s3.HeadObject"] >= 1
        assert await read(la, table, "doc", "html") == data
    assert open_uploads(s3, table) == []
    assert object_keys(s3, table) == {key}


def test_unknown_multipart_checksum_is_refused() -> None:
    with pytest.raises(InvalidInput, match="FULL_OBJECT, COMPOSITE"):
        TransferConfig(multipart_checksum="MD5")  # type: ignore[arg-type]


async def test_stream_of_unknown_length_is_staged_then_copied(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, faults: Faults
) -> None:
    data = pattern(12 * MiB, 3)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 1_000_000):
            yield data[start : start + 1_000_000]

    result = await la.create(table, "doc", blobs={"html": chunks()})
    assert await read(la, table, "doc", "html") == data
    stored = result.blobs[0]
    assert stored.meta.sha256 == hashlib.sha256(data).hexdigest()
    # The staging copy is gone; only the content-addressed object remains.
    assert object_keys(s3, table) == {stored.key}
    # Above the (test) copy threshold the server-side copy goes part by part.
    assert faults.calls["s3.UploadPartCopy"] == 3
    # ... and S3 checked the copy's whole-object CRC32, so a later check compares contents.
    head = s3.head_object(Bucket=table.bucket, Key=stored.key, ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert head["ChecksumCRC32"] == digest_bytes(data).crc32


@pytest.mark.parametrize("storage_class", ["STANDARD_IA", "GLACIER"])
@pytest.mark.parametrize("size", [300_000, 12 * MiB], ids=["single-copy", "multipart-copy"])
async def test_s3_options_of_a_stream_apply_to_the_final_object(
    la: LargeAttrClient,
    table: LargeAttrTable,
    s3: Any,
    faults: Faults,
    size: int,
    storage_class: str,
) -> None:
    """The staged copy is STANDARD and untagged (S3 cannot copy from an archive class);
    the copy to the final key applies the blob's options. Encryption applies to both."""
    data = pattern(size, 10)
    options = S3Options(
        storage_class=storage_class, server_side_encryption="AES256", tags=(("team", "docs"),)
    )
    staged = Faults().attach(la.storage.s3)
    writes: list[dict[str, Any]] = []
    for operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        staged.before(operation, writes.append, times=-1)
        faults.before(operation, writes.append, times=-1)

    def chunks() -> Iterator[bytes]:
        yield from (data[start : start + 100_000] for start in range(0, size, 100_000))

    result = await la.create(table, "doc", blobs={"html": Blob(chunks(), s3=options)})
    key = result.blobs[0].key
    head = s3.head_object(Bucket=table.bucket, Key=key)
    assert head["StorageClass"] == storage_class
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == size
    assert [w.get("Tagging") for w in writes if w["Key"] == key] == ["team=docs"]
    if storage_class != "GLACIER":  # moto refuses GetObjectTagging on archived objects
        tags = s3.get_object_tagging(Bucket=table.bucket, Key=key)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"team": "docs"}
    assert object_keys(s3, table) == {key}  # the staged copy is gone
    staging = [w for w in writes if "/_staging/" in w["Key"]]
    assert staging, writes
    for write in staging:
        assert write.get("ServerSideEncryption") == "AES256"
        assert "StorageClass" not in write
        assert "Tagging" not in write
    if storage_class != "GLACIER":  # an archived object cannot be read back
        assert await read(la, table, "doc", "html") == data


async def test_async_stream_and_small_stream(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any
) -> None:
    data = pattern(3 * MiB, 4)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 700_000):
            await asyncio.sleep(0)
            yield data[start : start + 700_000]

    await la.create(table, "doc", blobs={"html": chunks(), "image": iter([b"tiny", b" stream"])})
    assert await read(la, table, "doc", "html") == data
    assert await read(la, table, "doc", "image") == b"tiny stream"
    assert len(object_keys(s3, table)) == 2


@pytest.mark.parametrize(
    "value",
    [12, "some text", 3.5, {"a": 1}, io.StringIO("text"), object()],
    ids=["int", "str", "float", "dict", "text-file", "object"],
)
async def test_a_blob_that_is_not_bytes_file_or_stream_is_refused(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any, value: Any
) -> None:
    with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(InvalidInput):
        await la.create(table, "doc", blobs={"html": value})


async def test_missing_file_is_refused(
    la: LargeAttrClient, table: LargeAttrTable, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="not a readable file"):
        await la.create(table, "doc", blobs={"html": tmp_path / "missing.bin"})


async def test_s3_options_pass_through(la: LargeAttrClient, table: LargeAttrTable, s3: Any) -> None:
    options = S3Options(
        storage_class="STANDARD_IA",
        server_side_encryption="AES256",
        tags=(("team", "docs"), ("kind", "a b")),
        cache_control="max-age=60",
    )
    result = await la.create(
        table,
        "doc",
        blobs={
            "html": Blob(
                b"<p>x</p>", content_type="text/html", content_encoding="identity", s3=options
            )
        },
    )
    key = result.blobs[0].key
    head = s3.head_object(Bucket=table.bucket, Key=key)
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentEncoding"] == "identity"
    tags = s3.get_object_tagging(Bucket=table.bucket, Key=key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "docs", "kind": "a b"}


# ------------------------------------------------------------------ reading


async def test_corrupt_object_is_reported_never_returned(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, tmp_path: Path
) -> None:
    await la.create(table, "doc", blobs={"html": b"the real bytes"})
    item = await la.get(table, "doc")
    assert item is not None
    ref = item.blob("html")
    s3.put_object(Bucket=table.bucket, Key=ref.key, Body=b"tampered bytes")
    with pytest.raises(CorruptObject):
        await la.read_blob(ref)
    target = tmp_path / "out.html"
    with pytest.raises(CorruptObject):
        await la.download(ref, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


async def test_stream_range_download_and_presigned_url(
    la: LargeAttrClient, table: LargeAttrTable, tmp_path: Path
) -> None:
    data = pattern(3 * MiB, 5)
    await la.create(table, "doc", blobs={"image": Blob(data, content_type="image/jpeg")})
    item = await la.get(table, "doc")
    assert item is not None
    ref = item.blob("image")
    chunks = [chunk async for chunk in la.iter_blob(ref, chunk_size=256 * 1024)]
    assert len(chunks) > 1
    assert b"".join(chunks) == data
    part = b"".join([c async for c in la.iter_blob(ref, byte_range=(1000, 1999))])
    assert part == data[1000:2000]
    assert await la.download(ref, tmp_path / "img.jpg") == len(data)
    assert (tmp_path / "img.jpg").read_bytes() == data
    url = la.presigned_url(ref, expires_in=60)
    with urllib.request.urlopen(url) as response:
        assert response.read() == data
        assert response.headers["Content-Type"] == "image/jpeg"


# ------------------------------------------------------------------ worker-side files


async def test_worker_uploads_a_file_under_its_allowed_directory(
    temporal: Client,
    task_queue: str,
    la: LargeAttrClient,
    table: LargeAttrTable,
    allowed_dir: Path,
    faults: Faults,
) -> None:
    data = pattern(16 * MiB, 6)
    path = write(allowed_dir / f"{table.table_name}.bin", data)
    # The second part fails once: the retried activity resumes the multipart upload
    # from the parts S3 confirmed instead of sending everything again.
    sent: list[int] = []
    faults.before("UploadPart", lambda params: sent.append(int(params["PartNumber"])), times=-1)
    faults.fail("UploadPart", times=1, match=lambda p: int(p["PartNumber"]) == 2)
    await temporal.execute_workflow(
        CreateItemWorkflow.run,
        create_from_file(table, "doc", path),
        id=table.workflow_id("doc"),
        task_queue=task_queue,
    )
    assert await read(la, table, "doc", "html") == data
    parts = -(-len(data) // (5 * MiB))
    assert sorted(set(sent)) == list(range(1, parts + 1))
    assert sent.count(1) == 1, f"part 1 was sent again after the retry: {sent}"
    assert sent.count(2) == 2  # the failed attempt, then the retry


async def test_worker_refuses_files_outside_its_allowed_directory(
    temporal: Client,
    task_queue: str,
    table: LargeAttrTable,
    tmp_path: Path,
    s3: Any,
    dynamodb: Any,
) -> None:
    secret = write(tmp_path / "secret.txt", b"not for S3")
    with (
        no_change(s3, dynamodb, table, table.key("doc")),
        pytest.raises(WorkflowFailureError) as failure,
    ):
        await temporal.execute_workflow(
            CreateItemWorkflow.run,
            CreateItemInput(
                table=table.spec,
                key=table.key("doc"),
                blobs=(BlobInput(attribute="html", source=f"file:{secret}"),),
            ),
            id=table.workflow_id("doc"),
            task_queue=task_queue,
        )
    assert getattr(failure.value.cause, "type", None) == SourceUnavailable.__name__


async def test_failed_client_upload_is_compensated(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    """A blob held by the client whose multipart upload fails half-way: the saga aborts the
    open upload and deletes the other blob it stored; nothing is visible afterwards."""
    client_side = Faults().attach(la.storage.s3)
    client_side.fail(
        "UploadPart",
        times=-1,
        error=lambda: client_error("AccessDenied", 403),
        match=lambda p: int(p["PartNumber"]) == 2,
    )
    data = pattern(11 * MiB, 8)
    with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(AccessDenied):
        await la.create(table, "doc", blobs={"html": data, "image": b"small one"})
    assert client_side.injected["before:s3.UploadPart"] >= 1


async def test_a_worker_file_is_uploaded_by_the_worker(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, allowed_dir: Path, tmp_path: Path
) -> None:
    """Blob.worker_file: the worker reads the file (a file: source under --allow-files) and
    uploads it; the client only names it. A file outside the allowed folders is refused."""
    source = allowed_dir / f"{table.table_name}.html"
    source.write_bytes(b"<p>from the worker</p>" * 100)
    faults.calls.clear()
    result = await la.create(table, "doc", {"html": Blob.worker_file(source)})
    assert faults.calls["s3.PutObject"] == 1  # sent by the worker's clients
    item = await la.get(table, "doc")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == source.read_bytes()
    assert item.blob("html").content_type == "text/html"
    assert result.blobs[0].meta.size == source.stat().st_size

    outside = tmp_path / "secret.html"
    outside.write_bytes(b"not for the worker")
    with pytest.raises(SourceUnavailable, match="--allow-files"):
        await la.create(table, "other", {"html": Blob.worker_file(outside)})
    with pytest.raises(InvalidInput, match="absolute path"):
        await la.create(table, "other", {"html": Blob.worker_file("relative.html")})


async def test_user_metadata_reaches_every_upload_path(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    """S3Options.metadata lands on the object beside ours, whether the blob goes inline,
    from the client in parts, or as a one-pass stream (staged, then copied)."""
    options = S3Options(metadata=(("owner", "alice"), ("Project", "x-1")))
    blobs = {
        "html": Blob(b"<p>inline</p>", s3=options),
        "image": Blob(pattern(7 * MiB, 3), s3=options),  # multipart, from the client
    }

    def check(stored: Any) -> None:
        metadata = s3.head_object(Bucket=stored.bucket, Key=stored.key)["Metadata"]
        assert metadata["owner"] == "alice"
        assert metadata["project"] == "x-1"
        assert metadata["la-attr"] == stored.attribute  # ours is still there

    created = await la.create(table, "doc", blobs)
    for stored in created.blobs:
        check(stored)
    streamed = await la.update(
        table, "doc", {"html": Blob(iter([b"a" * 1000, b"b" * 1000]), s3=options)}
    )
    check(streamed.blobs[0])

    for bad, message in (
        ((("la-saga", "forged"),), "largeattr's own"),
        ((("owner", "é"),), "ASCII"),
        ((("big", "x" * 700),), "bytes"),
    ):
        with (
            no_change(s3, dynamodb, table, table.key("doc")),
            pytest.raises(InvalidInput, match=message),
        ):
            await la.update(table, "doc", {"html": Blob(b"x", s3=S3Options(metadata=bad))})
