"""Tables sharing a bucket and a prefix never share objects, and no deleter of one table
(a saga, compensation, reconcile, the step-by-step clean-up) touches another's objects,
nor objects written under the previous key scheme (``{prefix}/pk=...``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from largeattr import LargeAttrClient, LargeAttrTable, SagaOptions, Storage, keys
from largeattr.check import check_storage
from largeattr.provision import ensure_table
from largeattr.stepbystep import StepByStep
from tests.conftest import BUCKET

CUSTOM = "{prefix}/t={table}/{shard}/id={pk}/{attr}/{sha256}"
PAGE = b"<html>same bytes in both tables</html>"


@pytest.fixture(params=[None, CUSTOM], ids=["default-keys", "custom-template"])
def two_tables(request: pytest.FixtureRequest, dynamodb: Any) -> tuple[LargeAttrTable, ...]:
    """Tables a and b, declared with prefixes '/docs-x/' and 'docs-x': one folder."""
    run = uuid.uuid4().hex[:8]
    made = []
    for name, prefix in ((f"a-{run}", f"/docs-{run}/"), (f"b-{run}", f"docs-{run}")):
        table = LargeAttrTable(
            table_name=name,
            partition_key="pk",
            large_attributes=("html",),
            bucket=BUCKET,
            prefix=prefix,
            key_template=request.param,
        )
        ensure_table(dynamodb, table, "S", "S")
        made.append(table)
    assert made[0].prefix == made[1].prefix
    return tuple(made)


def assert_clean(storage: Storage, table: LargeAttrTable) -> None:
    report = check_storage(storage, table.spec)
    assert report.ok(), list(report.lines())
    assert report.unattributed == [], list(report.lines())
    assert report.legacy == [], list(report.lines())


async def test_a_delete_in_one_table_leaves_the_other_intact(
    la: LargeAttrClient, two_tables: tuple[LargeAttrTable, ...], s3: Any, dynamodb: Any
) -> None:
    a, b = two_tables
    in_a = await la.create(a, "id-1", blobs={"html": PAGE})
    in_b = await la.create(b, "id-1", blobs={"html": PAGE})
    assert in_a.blobs[0].key != in_b.blobs[0].key  # two objects, one per table
    assert in_a.blobs[0].created
    assert in_b.blobs[0].created
    storage = Storage(s3, dynamodb)

    deleted = await la.delete(a, "id-1")
    assert deleted.deleted_objects == (in_a.blobs[0].uri,)
    item = await la.get(b, "id-1")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == PAGE
    report = check_storage(storage, b.spec)
    assert report.dangling == [], list(report.lines())
    assert report.other_tables == 0  # a's object is gone; b's is referenced
    assert_clean(storage, b)
    assert_clean(storage, a)

    # The other way round, through an update that replaces the content.
    await la.create(a, "id-1", blobs={"html": PAGE})
    updated = await la.update(b, "id-1", blobs={"html": b"<html>b moved on</html>"})
    assert updated.deleted_objects == (in_b.blobs[0].uri,)
    again = await la.get(a, "id-1")
    assert again is not None
    assert await la.read_blob(again.blob("html")) == PAGE
    assert_clean(storage, a)
    assert_clean(storage, b)
    assert check_storage(storage, a.spec).other_tables == 1  # b's live object, left alone


async def test_reconcile_of_one_table_never_touches_the_other(
    la: LargeAttrClient, two_tables: tuple[LargeAttrTable, ...], s3: Any, dynamodb: Any
) -> None:
    a, b = two_tables
    await la.create(b, "id-1", blobs={"html": PAGE})
    await la.create(a, "id-1", blobs={"html": PAGE})
    # An orphan of a's own: an object under a's key that its item does not reference.
    stale = await la.create(a, "id-2", blobs={"html": b"stale"})
    keep = SagaOptions(delete_old_objects=False)
    await la.update(a, "id-2", blobs={"html": b"fresh"}, options=keep)

    result = await la.reconcile(a, grace_seconds=0)
    assert result.objects_deleted == 1, result
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=stale.blobs[0].key)["KeyCount"] == 0
    storage = Storage(s3, dynamodb)
    assert_clean(storage, a)
    assert_clean(storage, b)
    item = await la.get(b, "id-1")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == PAGE


async def test_step_by_step_delete_in_one_table_leaves_the_other_intact(
    two_tables: tuple[LargeAttrTable, ...], s3: Any, dynamodb: Any
) -> None:
    a, b = two_tables
    storage = Storage(s3, dynamodb)
    written = {}
    for table in (a, b):
        steps = StepByStep(storage, table)
        put = steps.put_blobs("id-1", {"html": PAGE})
        dynamodb.put_item(
            TableName=table.table_name,
            Item={"pk": {"S": "id-1"}, "html": {"S": put.blobs[0].uri}},
        )
        written[table.table_name] = put
    old_item = {"pk": "id-1", "html": written[a.table_name].blobs[0].uri}
    dynamodb.delete_item(TableName=a.table_name, Key={"pk": {"S": "id-1"}})
    result = StepByStep(storage, a).clean_up_after_delete(old_item)
    assert result.deleted == (written[a.table_name].blobs[0].key,)
    report = check_storage(storage, b.spec)
    assert report.dangling == [], list(report.lines())
    assert report.ok(), list(report.lines())
    # Given b's URI by mistake, a's clean-up still deletes nothing of b's.
    foreign = {"pk": "id-1", "html": written[b.table_name].blobs[0].uri}
    assert StepByStep(storage, a).clean_up_after_delete(foreign).deleted == ()
    assert check_storage(storage, b.spec).ok()


# ---------------------------------------------------------------- the previous key scheme


def legacy_key(table: LargeAttrTable, sha256: str) -> str:
    """Where the previous default scheme put item id-1's html: no table folder."""
    return f"{table.prefix}/pk=id-1/attr=html/sha256={sha256}"


async def test_objects_of_the_previous_scheme_are_read_but_never_deleted(
    la: LargeAttrClient, dynamodb: Any, s3: Any
) -> None:
    """Two tables on one prefix could share an object under the previous scheme (the
    second writer found identical bytes and did not upload them), and its `la-table`
    names only the first writer: so neither metadata nor shape proves that a legacy
    object is one table's alone. Such objects stay readable, are never deleted by a
    saga or by reconcile, and `largeattr check` lists them apart (LEGACY)."""
    run = uuid.uuid4().hex[:8]
    a, b = (
        LargeAttrTable(
            table_name=f"{name}-{run}",
            partition_key="pk",
            large_attributes=("html",),
            bucket=BUCKET,
            prefix=f"legacy-{run}",
        )
        for name in ("a", "b")
    )
    for table in (a, b):
        ensure_table(dynamodb, table, "S", "S")
    # As the previous version left it: a wrote the object, b referenced the same one.
    created = await la.create(a, "id-1", blobs={"html": PAGE})
    blob = created.blobs[0]
    old = legacy_key(a, blob.meta.sha256)
    s3.copy_object(Bucket=BUCKET, Key=old, CopySource={"Bucket": BUCKET, "Key": blob.key})
    s3.delete_object(Bucket=BUCKET, Key=blob.key)
    old_uri = keys.s3_uri(BUCKET, old)
    for table in (a, b):
        raw = dynamodb.get_item(TableName=a.table_name, Key={"pk": {"S": "id-1"}})["Item"]
        dynamodb.put_item(TableName=table.table_name, Item={**raw, "html": {"S": old_uri}})
    storage = Storage(s3, dynamodb)
    assert not keys.owned_by(a.spec, old_uri)
    assert not keys.owned_by(b.spec, old_uri)

    item = await la.get(a, "id-1")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == PAGE  # still readable
    deleted = await la.delete(a, "id-1")
    assert deleted.deleted_objects == ()  # b still references it
    other = await la.get(b, "id-1")
    assert other is not None
    assert await la.read_blob(other.blob("html")) == PAGE
    assert (await la.reconcile(a, grace_seconds=0)).objects_deleted == 0

    report = check_storage(storage, a.spec)
    assert report.ok(), list(report.lines())  # legacy objects never fail the check
    assert [o.key for o in report.legacy] == [old]
    assert any(line.startswith("LEGACY") for line in report.lines())
    assert check_storage(storage, b.spec).ok()  # b references it: nothing to report

    updated = await la.update(b, "id-1", blobs={"html": b"<html>new</html>"})
    assert updated.deleted_objects == ()  # never ours to delete, even once unreferenced
    assert s3.head_object(Bucket=BUCKET, Key=old)["ContentLength"] == len(PAGE)
