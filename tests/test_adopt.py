"""Adopting items that pynamodb_mate's LargeAttributeMixin wrote (issue 12).

The items are written by pynamodb_mate itself (``create_large_attribute_item``, against the
session's moto server), adopted by largeattr, then read, updated and deleted by its sagas.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from typing import Any

import pynamodb_mate.api as pm
import pytest
from pynamodb_mate.patterns.large_attribute.impl import LargeAttributeMixin
from temporalio.client import Client

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.cli import run as cli
from largeattr.errors import CorruptObject, VersionConflict
from largeattr.messages import SagaOptions
from largeattr.transfer import MiB
from tests.conftest import BUCKET, object_keys, raw_item
from tests.faults import Faults
from tests.invariants import assert_invariants, nothing_written, tally_faults, tally_module

__all__ = ["tally_faults", "tally_module"]  # fixtures: the module's fault summary

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def mate_model(table: LargeAttrTable, aws: AwsConfig) -> Any:
    """pynamodb_mate's model of the table: a pk, two large attributes, a plain title."""

    class Meta:
        table_name = table.table_name
        region = aws.region_name
        host = aws.endpoint_url
        aws_access_key_id = aws.aws_access_key_id
        aws_secret_access_key = aws.aws_secret_access_key

    return type(
        f"Doc{uuid.uuid4().hex[:6]}",
        (pm.Model, LargeAttributeMixin),
        {
            "Meta": Meta,
            "pk": pm.UnicodeAttribute(hash_key=True),
            "html": pm.UnicodeAttribute(null=True),
            "image": pm.UnicodeAttribute(null=True),
            "title": pm.UnicodeAttribute(null=True),
        },
    )


def mate_prefix(table: LargeAttrTable) -> str:
    return f"mate/{table.table_name}"


def mate_create(model: Any, s3: Any, table: LargeAttrTable, pk: str, **kvs: bytes) -> Any:
    return model.create_large_attribute_item(
        s3_client=s3,
        pk=pk,
        sk=None,
        kvs=kvs,
        bucket=BUCKET,
        prefix=mate_prefix(table),
        update_at=NOW,
        attributes={"title": f"title of {pk}"},
    )


def mate_objects(s3: Any, table: LargeAttrTable) -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=mate_prefix(table) + "/"
    ):
        found.update(obj["Key"] for obj in page.get("Contents", []))
    return found


def contents(pk: str) -> dict[str, bytes]:
    return {"html": f"<p>{pk}</p>".encode(), "image": hashlib.sha256(pk.encode()).digest() * 40}


async def read_all(la: LargeAttrClient, table: LargeAttrTable, pk: str) -> dict[str, bytes]:
    item = await la.get(table, pk)
    assert item is not None
    return {name: await la.read_blob(ref) for name, ref in item.blobs.items()}


async def test_adopt_table_then_read_update_delete(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws: AwsConfig,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    model = mate_model(table, aws)
    pks = [f"doc-{i}" for i in range(4)]
    for pk in pks:
        mate_create(model, s3, table, pk, **contents(pk))
    assert len(mate_objects(s3, table)) == 8

    report = await la.adopt_table(table, rate=50.0)
    assert sorted(report.adopted) == [f"pk={pk}" for pk in pks], report.lines()
    assert (report.already, report.skipped, report.failed) == ([], [], [])

    assert mate_objects(s3, table) == set(), "the old objects are gone"
    for pk in pks:
        assert await read_all(la, table, pk) == contents(pk)
        item = await la.get(table, pk)
        assert item is not None
        assert item.version == 1
        assert item.attributes["title"] == f"title of {pk}"  # plain attributes untouched
        assert all(ref.meta is not None for ref in item.blobs.values())
    await assert_invariants(s3, dynamodb, temporal, table, pks)

    # largeattr's own sagas work on the adopted items.
    await la.update(table, "doc-0", {"html": b"<p>new</p>"}, set={"title": "v2"})
    await la.delete(table, "doc-1")
    assert (await read_all(la, table, "doc-0"))["html"] == b"<p>new</p>"
    assert await la.get(table, "doc-1") is None
    await assert_invariants(s3, dynamodb, temporal, table, pks)
    assert len(object_keys(s3, table)) == 2 + 2 + 2  # doc-0 (new html), doc-2, doc-3

    # Again: nothing to do, and it says so; no saga starts.
    again = await la.adopt_table(table)
    assert sorted(again.already) == ["pk=doc-0", "pk=doc-2", "pk=doc-3"]
    assert again.adopted == []
    assert again.failed == []
    one = await la.adopt(table, "doc-2")
    assert one.outcome == "already"
    assert "version 1" in one.reason


async def test_adopt_keeps_old_objects_when_asked_and_copies_big_ones_in_parts(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws: AwsConfig,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """11 MiB is above the tests' copy threshold (10 MiB): a multipart copy."""
    model = mate_model(table, aws)
    big = bytes(range(256)) * (11 * MiB // 256)
    mate_create(model, s3, table, "big", html=b"<p>big</p>", image=big)
    before = mate_objects(s3, table)

    result = await la.adopt(table, "big", options=SagaOptions(delete_old_objects=False))
    assert result.outcome == "adopted"
    assert result.deleted_objects == ()
    assert mate_objects(s3, table) == before
    assert await read_all(la, table, "big") == {"html": b"<p>big</p>", "image": big}
    await assert_invariants(s3, dynamodb, temporal, table, ["big"])


async def test_dry_run_writes_nothing(
    la: LargeAttrClient, table: LargeAttrTable, aws: AwsConfig, s3: Any, dynamodb: Any
) -> None:
    model = mate_model(table, aws)
    for pk in ("a", "b"):
        mate_create(model, s3, table, pk, **contents(pk))
    dynamodb.put_item(  # an attribute adopt cannot read: skipped, with the reason
        TableName=table.table_name, Item={"pk": {"S": "odd"}, "html": {"S": "not a uri"}}
    )
    objects = mate_objects(s3, table)
    with nothing_written(s3, dynamodb, table):
        report = await la.adopt_table(table, dry_run=True)
    assert mate_objects(s3, table) == objects
    assert report.dry_run
    assert sorted(report.adopted) == ["pk=a", "pk=b"]
    assert report.skipped == [("pk=odd", "html holds 'not a uri', not an s3:// URI")]
    assert "would adopt 2" in report.lines()[-1]


async def test_an_item_changed_during_adoption_is_not_clobbered(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws: AwsConfig,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    faults: Faults,
) -> None:
    model = mate_model(table, aws)
    mate_create(model, s3, table, "raced", **contents("raced"))

    def pynamodb_mate_writer(_: dict[str, Any]) -> None:
        """pynamodb_mate replaces html just before the adopt pivot is sent."""
        model.update_large_attribute_item(
            s3_client=s3,
            pk="raced",
            sk=None,
            kvs={"html": b"<p>written meanwhile</p>"},
            bucket=BUCKET,
            prefix=mate_prefix(table),
            update_at=NOW,
        )

    faults.before("UpdateItem", pynamodb_mate_writer)
    with pytest.raises(VersionConflict, match="html now hold"):
        await la.adopt(table, "raced")
    faults.clear()

    item = raw_item(dynamodb, table, table.key("raced"))
    assert item is not None
    assert "la_meta" not in item
    assert "la_version" not in item
    assert item["html"]["S"].endswith("md5=" + hashlib.md5(b"<p>written meanwhile</p>").hexdigest())
    assert object_keys(s3, table) == set(), "the copies were compensated"
    assert len(mate_objects(s3, table)) == 2  # the new html and the untouched image

    # Run again: the writer's value is adopted.
    assert (await la.adopt(table, "raced")).outcome == "adopted"
    assert (await read_all(la, table, "raced"))["html"] == b"<p>written meanwhile</p>"
    await assert_invariants(s3, dynamodb, temporal, table, ["raced"])


@pytest.mark.parametrize("parts", [1, 2], ids=["single-part", "multipart"])
async def test_a_corrupt_old_object_is_refused(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws: AwsConfig,
    s3: Any,
    dynamodb: Any,
    parts: int,
) -> None:
    """Single part: the ETag (its MD5) gives it away before a byte is read. Multipart: the
    ETag is no MD5, so the MD5 is computed while reading."""
    model = mate_model(table, aws)
    doc = mate_create(model, s3, table, "bad", html=b"<p>good</p>", image=b"fine")
    key = doc.html.split("/", 3)[3]
    wrong = b"x" * (5 * MiB) + b"corrupted"
    if parts == 1:
        s3.put_object(Bucket=BUCKET, Key=key, Body=wrong)
    else:
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        etags = [
            s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
            for n, body in ((1, wrong[: 5 * MiB]), (2, wrong[5 * MiB :]))
        ]
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
            },
        )
    objects = mate_objects(s3, table)
    with nothing_written(s3, dynamodb, table):
        with pytest.raises(CorruptObject, match="does not hold the bytes its key names"):
            await la.adopt(table, "bad")
        report = await la.adopt_table(table)
    assert mate_objects(s3, table) == objects
    assert [item for item, _ in report.failed] == ["pk=bad"]
    assert "CorruptObject" in report.failed[0][1]
    if parts == 1:  # the dry run's HEAD sees it too
        dry = await la.adopt_table(table, dry_run=True)
        assert "CorruptObject" in dry.failed[0][1]


async def test_cli_adopt(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws: AwsConfig,
    s3: Any,
    temporal_address: str,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", str(aws.aws_access_key_id))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", str(aws.aws_secret_access_key))
    model = mate_model(table, aws)
    for pk in ("c1", "c2"):
        mate_create(model, s3, table, pk, **contents(pk))
    argv = [
        "adopt",
        *("--table", table.table_name, "--bucket", table.bucket, "--prefix", table.prefix),
        *("--large", "html,image", "--address", temporal_address, "--task-queue", task_queue),
        *("--aws-endpoint-url", str(aws.endpoint_url), "--region", str(aws.region_name)),
    ]
    assert await asyncio.to_thread(cli, [*argv, "--dry-run"]) == 0
    assert "would adopt 2, already 0" in capsys.readouterr().out
    assert object_keys(s3, table) == set()
    assert await asyncio.to_thread(cli, [*argv, "--rate", "20"]) == 0
    out = capsys.readouterr().out
    assert "adopted: pk=c1" in out
    assert "adopted 2, already 0, skipped 0, failed 0" in out
    assert await read_all(la, table, "c2") == contents("c2")
    assert await asyncio.to_thread(cli, argv) == 0
    assert "adopted 0, already 2" in capsys.readouterr().out
    assert await asyncio.to_thread(cli, [*argv, "--rate", "0"]) == 2
    assert "rate must be a positive number" in capsys.readouterr().err
