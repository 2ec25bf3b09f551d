"""The invariant checker finds what it should, and only that."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.stub import Stubber
from temporalio.client import Client

from largeattr import (
    AwsConfig,
    LargeAttrClient,
    LargeAttrTable,
    SagaOptions,
    Storage,
    UnknownAttribute,
    keys,
)
from largeattr.check import Dangling, check_drift, check_storage, known_keys
from largeattr.cli import run as cli_run


async def test_clean_table_is_ok(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    await la.create(table, "a", blobs={"html": b"a", "image": b"A"})
    await la.create(table, "b", blobs={"html": b"b"})
    await la.update(table, "b", blobs={"html": b"b2"})
    await la.create(table, "c", blobs={"html": b"c"})
    await la.delete(table, "c")
    storage = Storage(s3, dynamodb)
    report = check_storage(storage, table.spec)
    assert report.ok(), list(report.lines())
    assert (report.items, report.references, report.objects) == (2, 3, 3)
    keys = [table.key(k) for k in ("a", "b", "c")]
    assert await check_drift(storage, table.spec, temporal, keys) == []


async def test_checker_finds_dangling_orphans_and_drift(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    await la.create(table, "missing", blobs={"html": b"gone soon"})
    await la.create(table, "tampered", blobs={"html": b"original"})
    await la.create(table, "drifted", blobs={"html": b"fine"})
    old = await la.create(table, "kept", blobs={"html": b"old version"})
    keep = SagaOptions(delete_old_objects=False)
    await la.update(table, "kept", blobs={"html": b"new version"}, options=keep)
    storage = Storage(s3, dynamodb)
    missing = (await la.get(table, "missing")).blob("html")  # type: ignore[union-attr]
    tampered = (await la.get(table, "tampered")).blob("html")  # type: ignore[union-attr]
    s3.delete_object(Bucket=table.bucket, Key=missing.key)
    s3.put_object(Bucket=table.bucket, Key=tampered.key, Body=b"evil")
    s3.put_object(Bucket=table.bucket, Key=f"{table.prefix}/stray/object", Body=b"x")
    s3.create_multipart_upload(Bucket=table.bucket, Key=f"{table.prefix}/half/upload")
    ours = keys.staging_key(table.spec, "saga-1", "html")
    s3.create_multipart_upload(Bucket=table.bucket, Key=ours)
    dynamodb.update_item(  # a writer outside largeattr
        TableName=table.table_name,
        Key={"pk": {"S": "drifted"}},
        UpdateExpression="SET la_saga = :s",
        ExpressionAttributeValues={":s": {"S": "someone-else"}},
    )
    report = check_storage(storage, table.spec)
    assert {(d.item, d.reason.split(" ")[0]) for d in report.dangling} == {
        ("pk=missing", "object"),
        ("pk=tampered", "size"),
    }
    assert {(o.key, o.kind) for o in report.orphans} == {
        (old.blobs[0].key, "object"),
        (ours, "upload"),
        (f"{table.prefix}/half/upload", "upload"),  # reconcile aborts it too, once stale
    }
    # Not ours (no largeattr metadata, not a key of this table): listed apart.
    assert {(o.key.split("/", 2)[2], o.kind) for o in report.unattributed} == {
        ("stray/object", "object"),
    }
    drift = await check_drift(storage, table.spec, temporal, known_keys(storage, table.spec))
    assert [d.item for d in drift] == ["pk=drifted"]
    assert not report.ok()


async def test_checker_hashes_bytes_of_same_size(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "x", blobs={"html": b"abcd"})
    ref = (await la.get(table, "x")).blob("html")  # type: ignore[union-attr]
    s3.put_object(Bucket=table.bucket, Key=ref.key, Body=b"abce")
    storage = Storage(s3, dynamodb)
    assert check_storage(storage, table.spec, verify_bytes=False).ok()
    report = check_storage(storage, table.spec)
    assert report.dangling[0].reason.startswith("bytes hash to")


async def test_check_command_exit_code(
    la: LargeAttrClient,
    table: LargeAttrTable,
    s3: Any,
    aws: Any,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await la.create(table, "x", blobs={"html": b"abcd"})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    argv = [
        "check",
        f"--table={table.table_name}",
        f"--bucket={table.bucket}",
        f"--prefix={table.prefix}",
        "--large=html,image",
        f"--aws-endpoint-url={aws.endpoint_url}",
        "--region=us-east-1",
        "--orphan-grace=0",
    ]
    assert cli_run(argv) == 0
    # An object without our metadata: reported, but reconcile never deletes it, so the
    # check stays green.
    s3.put_object(Bucket=table.bucket, Key=f"{table.prefix}/stray", Body=b"x")
    capsys.readouterr()
    assert cli_run(argv) == 0
    out = capsys.readouterr().out
    assert f"UNATTRIBUTED object {table.prefix}/stray" in out
    assert "ORPHAN" not in out
    keep = SagaOptions(delete_old_objects=False)
    await la.update(table, "x", blobs={"html": b"abce"}, options=keep)
    assert cli_run(argv) == 1
    assert "ORPHAN" in capsys.readouterr().out


async def test_empty_or_malformed_large_attributes(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "fine", blobs={"html": b"fine"})
    dynamodb.put_item(  # as pynamodb_mate can write them: an empty value, a bare key
        TableName=table.table_name,
        Item={"pk": {"S": "odd"}, "html": {"S": ""}, "image": {"S": "just/a/key"}},
    )
    item = await la.get(table, "odd")
    assert item is not None
    assert set(item.blobs) == {"image"}  # an empty large attribute is no blob
    with pytest.raises(UnknownAttribute, match="no large attribute 'html'"):
        item.blob("html")
    report = check_storage(Storage(s3, dynamodb), table.spec)
    assert (report.items, report.references) == (2, 2)
    assert report.dangling == [
        Dangling("pk=odd", "image", "just/a/key", "not an s3://bucket/key URI")
    ]


def test_check_reads_every_page_of_multipart_uploads(
    aws: AwsConfig, table: LargeAttrTable, dynamodb: Any
) -> None:
    s3, _ = aws.clients()
    initiated = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with Stubber(s3) as stub:
        stub.add_response("list_objects_v2", {"KeyCount": 0, "IsTruncated": False})
        for n, more in ((1, True), (2, False)):
            page: dict[str, Any] = {
                "IsTruncated": more,
                "Uploads": [
                    {
                        "Key": keys.staging_key(table.spec, f"u{n}", "html"),
                        "UploadId": f"id{n}",
                        "Initiated": initiated,
                    }
                ],
            }
            if more:
                page.update(
                    NextKeyMarker=keys.staging_key(table.spec, f"u{n}", "html"),
                    NextUploadIdMarker=f"id{n}",
                )
            stub.add_response("list_multipart_uploads", page)
        report = check_storage(Storage(s3, dynamodb), table.spec)
        stub.assert_no_pending_responses()
    assert sorted((o.key.split("/")[-2], o.kind) for o in report.orphans) == [
        ("u1", "upload"),
        ("u2", "upload"),
    ]
