"""The three sagas end to end: real Temporal dev server, moto server over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import unquote

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError

from largeattr import (
    Blob,
    ItemAlreadyExists,
    ItemBusy,
    ItemNotFound,
    LargeAttrClient,
    LargeAttrTable,
    SagaOptions,
    VersionConflict,
    dynamo,
    keys,
)
from largeattr.errors import AccessDenied, ItemTooLarge, UnknownAttribute
from largeattr.failures import with_our_failures
from largeattr.messages import BlobInput, CreateItemInput, ItemResult
from largeattr.workflows import CreateItemWorkflow
from tests.conftest import no_change, object_keys, raw_item, steps
from tests.faults import Faults, client_error

HTML = b"<html><body>hello</body></html>"
IMAGE = bytes(range(256)) * 40  # 10 KB


def key_of(uri: str) -> str:
    return keys.parse_s3_uri(uri)[1]


def uris(result: ItemResult) -> dict[str, str]:
    return {blob.attribute: blob.uri for blob in result.blobs}


async def test_create_get_read_back(la: LargeAttrClient, table: LargeAttrTable, s3: Any) -> None:
    result = await la.create(
        table,
        "doc-1",
        blobs={"html": Blob(HTML, content_type="text/html"), "image": IMAGE},
        attributes={"title": "Hello", "views": 3, "ratio": 0.5, "tags": {"a", "b"}},
    )
    assert result.version == 1
    assert {b.attribute for b in result.blobs} == {"html", "image"}
    assert all(b.created for b in result.blobs)

    item = await la.get(table, "doc-1")
    assert item is not None
    assert item.version == 1
    assert item.attributes["title"] == "Hello"
    assert item.attributes["views"] == 3
    assert item.attributes["tags"] == {"a", "b"}
    assert await la.read_blob(item.blob("html")) == HTML
    assert await la.read_blob(item.blob("image")) == IMAGE
    html = item.blob("html")
    assert html.size == len(HTML)
    assert html.content_type == "text/html"
    assert html.sha256 == hashlib.sha256(HTML).hexdigest()
    # The key holds the content hash and the escaped item key.
    assert html.key == (
        f"{table.prefix}/t={table.table_name}/pk=doc-1/attr=html/sha256={html.sha256}"
    )
    # Objects under the prefix are exactly the item's.
    assert object_keys(s3, table) == {html.key, item.blob("image").key}


async def test_item_value_is_plain_s3_uri_with_meta_beside_it(
    la: LargeAttrClient, table: LargeAttrTable, dynamodb: Any
) -> None:
    result = await la.create(table, "doc-1", blobs={"html": HTML})
    raw = raw_item(dynamodb, table, table.key("doc-1"))
    assert raw is not None
    # What pynamodb_mate writes and reads: a plain string attribute holding s3://bucket/key.
    assert raw["html"] == {"S": uris(result)["html"]}
    meta = raw[dynamo.META_ATTRIBUTE]["M"]["html"]["M"]
    assert meta["size"] == {"N": str(len(HTML))}
    assert meta["sha256"] == {"S": hashlib.sha256(HTML).hexdigest()}
    assert raw[table.version_attribute] == {"N": "1"}
    assert raw[dynamo.SAGA_ATTRIBUTE]["S"] == result.saga_id


async def test_object_metadata_records_item_attribute_and_time(
    la: LargeAttrClient, new_table: Any, s3: Any
) -> None:
    table = new_table(partition_key_type="N")
    result = await la.create(table, 42, blobs={"html": HTML})
    head = s3.head_object(Bucket=table.bucket, Key=key_of(uris(result)["html"]))
    metadata = head["Metadata"]
    assert json.loads(unquote(metadata["la-item"])) == {"pk": {"N": "42"}}
    assert metadata["la-attr"] == "html"
    assert metadata["la-table"] == table.table_name
    assert metadata["la-saga"] == result.saga_id
    assert metadata["la-updated-at"].startswith("20")
    assert head["ContentType"] == "application/octet-stream"


async def test_integer_and_non_ascii_keys(la: LargeAttrClient, new_table: Any, s3: Any) -> None:
    numeric = new_table(partition_key_type="N")
    await la.create(numeric, 7, blobs={"html": b"seven"})
    # 7, 7.0 and 7E0 are one DynamoDB number, so one item and one path.
    item = await la.get(numeric, 7)
    assert item is not None
    assert await la.read_blob(item.blob("html")) == b"seven"
    assert "/pk=7/" in item.blob("html").key

    text = new_table()
    name = "héllo wörld/日本語 🎉"
    result = await la.create(text, name, blobs={"html": b"unicode"})
    key = key_of(uris(result)["html"])
    assert key.isascii()
    assert "/pk=h%C3%A9llo%20w%C3%B6rld%2F%E6%97%A5" in key
    head = s3.head_object(Bucket=text.bucket, Key=key)
    assert json.loads(unquote(head["Metadata"]["la-item"])) == {"pk": {"S": name}}
    got = await la.get(text, name)
    assert got is not None
    assert await la.read_blob(got.blob("html")) == b"unicode"


async def test_escaping_keeps_lookalike_keys_apart(
    la: LargeAttrClient, new_table: Any, s3: Any
) -> None:
    """pynamodb_mate maps pk 'a/sk=b' and (pk 'a', sk 'b') to one S3 key; we must not."""
    flat = new_table()
    nested = new_table(sort_key="sk")
    nested = LargeAttrTable(
        table_name=nested.table_name,
        partition_key="pk",
        sort_key="sk",
        large_attributes=("html", "image"),
        bucket=flat.bucket,
        prefix=flat.prefix,  # same prefix: the escaped paths alone must keep them apart
    )
    one = await la.create(flat, "a/sk=b", blobs={"html": b"flat item"})
    two = await la.create(nested, ("a", "b"), blobs={"html": b"nested item"})
    three = await la.create(nested, ("a/sk=b", "c"), blobs={"html": b"third"})
    paths = {key_of(uris(r)["html"]) for r in (one, two, three)}
    assert len(paths) == 3
    flat_folder, nested_folder = (f"{t.prefix}/t={t.table_name}" for t in (flat, nested))
    assert key_of(uris(one)["html"]).startswith(f"{flat_folder}/pk=a%2Fsk%3Db/attr=html/")
    assert key_of(uris(two)["html"]).startswith(f"{nested_folder}/pk=a/sk=b/attr=html/")
    # Deleting one leaves the look-alikes readable.
    await la.delete(flat, "a/sk=b")
    item = await la.get(nested, ("a", "b"))
    assert item is not None
    assert await la.read_blob(item.blob("html")) == b"nested item"
    assert len(object_keys(s3, flat)) == 2


async def test_create_on_existing_item_fails_and_changes_nothing(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "doc-1", blobs={"html": HTML})
    with no_change(s3, dynamodb, table, table.key("doc-1")), pytest.raises(ItemAlreadyExists):
        await la.create(table, "doc-1", blobs={"html": b"other", "image": IMAGE})


async def test_create_overwrite_replaces_item_and_deletes_old_objects(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any
) -> None:
    first = await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    second = await la.create(table, "doc-1", blobs={"html": b"new"}, overwrite=True)
    assert second.version == 2
    assert set(second.deleted_objects) == set(uris(first).values())
    assert object_keys(s3, table) == {key_of(uris(second)["html"])}
    item = await la.get(table, "doc-1")
    assert item is not None
    assert set(item.blobs) == {"html"}


async def test_update_replaces_and_removes_large_attributes(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any
) -> None:
    first = await la.create(
        table, "doc-1", blobs={"html": HTML, "image": IMAGE}, attributes={"title": "v1", "views": 1}
    )
    second = await la.update(
        table,
        "doc-1",
        blobs={"html": b"<p>v2</p>", "image": None},
        set={"title": "v2"},
        add={"views": 5},
        expected_version=1,
    )
    assert second.version == 2
    assert set(second.deleted_objects) == set(uris(first).values())
    item = await la.get(table, "doc-1")
    assert item is not None
    assert set(item.blobs) == {"html"}
    assert item.attributes["title"] == "v2"
    assert item.attributes["views"] == 6
    assert await la.read_blob(item.blob("html")) == b"<p>v2</p>"
    assert object_keys(s3, table) == {item.blob("html").key}


async def test_update_of_missing_item_is_item_not_found(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    with no_change(s3, dynamodb, table, table.key("nope")), pytest.raises(ItemNotFound):
        await la.update(table, "nope", blobs={"html": HTML})


async def test_update_with_stale_version_is_a_conflict(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    await la.create(table, "doc-1", blobs={"html": HTML})
    await la.update(table, "doc-1", set={"title": "x"})
    with no_change(s3, dynamodb, table, table.key("doc-1")), pytest.raises(VersionConflict):
        await la.update(table, "doc-1", blobs={"html": b"late"}, expected_version=1)
    with pytest.raises(VersionConflict):
        await la.delete(table, "doc-1", expected_version=1)


async def test_identical_content_is_not_uploaded_again(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any
) -> None:
    first = await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    html_key = key_of(uris(first)["html"])
    before = s3.head_object(Bucket=table.bucket, Key=html_key)
    faults.calls.clear()
    second = await la.update(table, "doc-1", blobs={"html": HTML, "image": b"new image"})
    by_attr = {b.attribute: b for b in second.blobs}
    assert by_attr["html"].created is False
    assert by_attr["html"].uri == uris(first)["html"]
    assert by_attr["image"].created is True
    # Small blobs go as one conditional PUT (If-None-Match), no HEAD first: S3 refused the
    # identical html, so the object is the first saga's, untouched.
    assert faults.calls["s3.PutObject"] == 2
    after = s3.head_object(Bucket=table.bucket, Key=html_key)
    assert after["Metadata"]["la-saga"] == first.saga_id
    assert after["LastModified"] == before["LastModified"]
    assert second.deleted_objects == (uris(first)["image"],)
    assert key_of(uris(first)["html"]) in object_keys(s3, table)


async def test_delete_removes_item_then_objects(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any
) -> None:
    created = await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    result = await la.delete(table, "doc-1", expected_version=1)
    assert set(result.deleted_objects) == set(uris(created).values())
    assert await la.get(table, "doc-1") is None
    assert object_keys(s3, table) == set()
    with pytest.raises(ItemNotFound):
        await la.delete(table, "doc-1")


async def test_delete_with_empty_large_attribute(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    """pynamodb_mate crashes after the item is gone when an attribute is empty."""
    await la.create(table, "only-html", blobs={"html": HTML})
    await la.delete(table, "only-html")
    assert object_keys(s3, table) == set()
    # A foreign item with an empty large attribute and no bookkeeping at all.
    dynamodb.put_item(
        TableName=table.table_name, Item={"pk": {"S": "foreign"}, "html": {"NULL": True}}
    )
    result = await la.delete(table, "foreign")
    assert result.deleted_objects == ()
    assert raw_item(dynamodb, table, table.key("foreign")) is None


async def test_keep_old_objects_switch(la: LargeAttrClient, table: LargeAttrTable, s3: Any) -> None:
    keep = SagaOptions(delete_old_objects=False)
    first = await la.create(table, "doc-1", blobs={"html": HTML})
    second = await la.update(table, "doc-1", blobs={"html": b"v2"}, options=keep)
    assert second.deleted_objects == ()
    assert object_keys(s3, table) == {key_of(uris(first)["html"]), key_of(uris(second)["html"])}


# ------------------------------------------------------------------ compensation


@pytest.mark.parametrize(
    ("operation", "match", "expected"),
    [
        ("s3.PutObject", {"attr": "html"}, AccessDenied),  # first upload
        ("s3.PutObject", {"attr": "image"}, AccessDenied),  # second upload
        ("ddb.PutItem", None, AccessDenied),  # the pivot itself
    ],
    ids=["upload-html", "upload-image", "pivot"],
)
async def test_create_failure_before_pivot_is_compensated(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    operation: str,
    match: dict[str, str] | None,
    expected: type[Exception],
) -> None:
    def matches(params: dict[str, Any]) -> bool:
        return match is None or f"attr={match['attr']}/" in params.get("Key", "")

    _service, name = operation.split(".")
    faults.fail(name, times=-1, error=lambda: client_error("AccessDenied", 403), match=matches)
    with no_change(s3, dynamodb, table, table.key("doc-1")), pytest.raises(expected):
        await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})


@pytest.mark.parametrize(
    ("gone", "undone"),
    [
        (0, "deleted 2 of 2 objects"),
        (1, "deleted 1 of 2 objects; 1 was not there (already gone, or never written)"),
    ],
    ids=["none-gone", "one-gone"],
)
async def test_compensation_counts_only_what_it_deleted(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, gone: int, undone: str
) -> None:
    """A create uploads two objects (and, in one case, one is deleted behind its back), then
    its pivot is refused (the item exists): compensation deletes what is left. The step's
    summary says what it will try; its details, its state and the saga's error count what
    it did."""
    await la.create(table, "doc-1", attributes={"title": "first"})
    before = object_keys(s3, table)

    def delete_the_html(_: dict[str, Any]) -> None:
        (html,) = [k for k in object_keys(s3, table) - before if "attr=html/" in k]
        s3.delete_object(Bucket=table.bucket, Key=html)

    faults.calls.clear()
    if gone:
        faults.before("PutItem", delete_the_html)
    handle = await la.start_create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    with pytest.raises(ItemAlreadyExists) as refused:
        await la.result(handle)
    assert str(refused.value).endswith(f"overwrite=True. Compensation {undone}.")
    assert object_keys(s3, table) == before
    history = await handle.fetch_history()
    summary = "compensate: remove up to 2 objects this saga wrote"
    assert ("largeattr.compensate", summary, 1) in steps(history)
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.endswith(f"\n- compensation: {undone}")
    assert (await handle.query("state"))["compensation"] == undone
    # Compensation reads the item, then for each key lists its unfinished uploads and asks
    # S3 for the object (HEAD: whose it is, and whether it is there); it deletes only what
    # that HEAD found. No request is added to tell a missing object apart.
    assert dict(faults.calls) == {
        "s3.PutObject": 2,
        "dynamodb.PutItem": 1,
        "dynamodb.GetItem": 1,
        "s3.ListMultipartUploads": 2,
        "s3.HeadObject": 2,
        "s3.DeleteObject": 2 - gone,
    }


async def test_small_uploads_need_no_head(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults
) -> None:
    """A create with two small blobs: one conditional PUT per blob (it answers whether the
    content is there already), the pivot (its condition, the item is absent, is the check:
    no read before). No HEAD before or after: the minimum of three requests."""
    faults.calls.clear()
    await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    assert dict(faults.calls) == {
        "s3.PutObject": 2,
        "dynamodb.PutItem": 1,
    }


@pytest.mark.parametrize("step", ["upload-html", "pivot-conflict"])
async def test_update_failure_before_pivot_keeps_the_old_version(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    step: str,
) -> None:
    await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    if step == "upload-html":
        faults.fail(
            "PutObject",
            times=-1,
            error=lambda: client_error("AccessDenied", 403),
            match=lambda p: "attr=html/" in p.get("Key", ""),
        )
        expected: type[Exception] = AccessDenied
    else:
        # Another writer bumps the version between the saga's read and its pivot.
        def racing_writer(_: dict[str, Any]) -> None:
            dynamodb.update_item(
                TableName=table.table_name,
                Key={"pk": {"S": "doc-1"}},
                UpdateExpression="SET la_version = la_version + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

        faults.before("UpdateItem", racing_writer)
        expected = VersionConflict
    before = object_keys(s3, table)
    with pytest.raises(expected):
        await la.update(table, "doc-1", blobs={"html": b"new html", "image": b"new image"})
    assert object_keys(s3, table) == before  # the new objects were compensated
    item = await la.get(table, "doc-1")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == HTML
    assert await la.read_blob(item.blob("image")) == IMAGE


async def test_clean_up_on_failure_switch_off_leaves_objects(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any
) -> None:
    faults.fail("PutItem", times=-1, error=lambda: client_error("AccessDenied", 403))
    with pytest.raises(AccessDenied):
        await la.create(
            table, "doc-1", blobs={"html": HTML}, options=SagaOptions(clean_up_on_failure=False)
        )
    assert len(object_keys(s3, table)) == 1


async def test_compensation_keeps_objects_the_committed_item_references(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any
) -> None:
    """An update that reuses the live html and fails must not delete the live html."""
    first = await la.create(table, "doc-1", blobs={"html": HTML})
    faults.fail("UpdateItem", times=-1, error=lambda: client_error("AccessDenied", 403))
    with pytest.raises(AccessDenied):
        await la.update(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    assert object_keys(s3, table) == {key_of(uris(first)["html"])}


# ------------------------------------------------------------------ after the pivot


async def test_post_pivot_delete_retries_until_it_succeeds(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, temporal: Client
) -> None:
    first = await la.create(table, "doc-1", blobs={"html": HTML})
    faults.fail("DeleteObjects", times=3, error=lambda: client_error("InternalError", 500))
    handle = await la.start_update(table, "doc-1", blobs={"html": b"v2"})
    result = await la.result(handle)
    assert result.deleted_objects == (uris(first)["html"],)
    assert faults.calls["s3.DeleteObjects"] == 4
    assert object_keys(s3, table) == {key_of(uris(result)["html"])}
    # The new object was never touched (pynamodb_mate deletes it when the old delete fails).
    item = await la.get(table, "doc-1")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == b"v2"
    history = await handle.fetch_history()
    failed = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert failed == []  # retries of one activity are attempts, not failed events
    # One step, in its fourth attempt (a local activity's marker records its attempt).
    assert [s for s in steps(history) if s[0] == "largeattr.delete_objects"] == [
        ("largeattr.delete_objects", "delete 1 old object", 4)
    ]


async def test_pivot_whose_response_is_lost_commits_once(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any, dynamodb: Any
) -> None:
    """The write commits but the worker sees an error; the retry must recognise it."""
    first = await la.create(table, "doc-1", blobs={"html": HTML})
    faults.fail("UpdateItem", times=1, error=lambda: client_error("InternalError"), phase="after")
    result = await la.update(table, "doc-1", blobs={"html": b"v2"})
    assert result.version == 2
    assert result.deleted_objects == (uris(first)["html"],)
    raw = raw_item(dynamodb, table, table.key("doc-1"))
    assert raw is not None
    assert raw["la_version"] == {"N": "2"}
    assert object_keys(s3, table) == {key_of(uris(result)["html"])}


async def test_create_whose_pivot_response_is_lost(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any
) -> None:
    faults.fail("PutItem", times=1, error=lambda: client_error("InternalError"), phase="after")
    result = await la.create(table, "doc-1", blobs={"html": HTML})
    item = await la.get(table, "doc-1")
    assert item is not None
    assert item.version == 1
    assert object_keys(s3, table) == {key_of(uris(result)["html"])}


async def test_delete_whose_pivot_response_is_lost(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults, s3: Any
) -> None:
    await la.create(table, "doc-1", blobs={"html": HTML, "image": IMAGE})
    faults.fail("DeleteItem", times=1, error=lambda: client_error("InternalError"), phase="after")
    result = await la.delete(table, "doc-1")
    assert len(result.deleted_objects) == 2
    assert object_keys(s3, table) == set()


# ------------------------------------------------------------------ one item, one saga


async def test_second_operation_fails_fast_or_waits(
    la: LargeAttrClient, table: LargeAttrTable, faults: Faults
) -> None:
    await la.create(table, "doc-1", blobs={"html": HTML})
    faults.slow("PutObject", 1.5, times=1)
    slow = await la.start_update(table, "doc-1", blobs={"html": b"slow"})
    await asyncio.sleep(0.3)
    with pytest.raises(ItemBusy):
        await la.update(table, "doc-1", set={"title": "eager"}, on_busy="fail")
    waited = await la.update(table, "doc-1", blobs={"html": b"patient"}, on_busy="wait")
    first = await la.result(slow)
    assert (first.version, waited.version) == (2, 3)
    item = await la.get(table, "doc-1")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == b"patient"


# ------------------------------------------------------------------ other ways in


async def test_plain_temporal_client_with_public_input_types(
    temporal: Client, task_queue: str, la: LargeAttrClient, table: LargeAttrTable
) -> None:
    result = await temporal.execute_workflow(
        CreateItemWorkflow.run,
        CreateItemInput(
            table=table.spec,
            key=table.key("direct"),
            blobs=(BlobInput.inline("html", HTML, "text/html"),),
            attributes=table.attributes({"title": "direct"}, "create"),
        ),
        id=table.workflow_id("direct"),
        task_queue=task_queue,
    )
    assert result.version == 1
    item = await la.get(table, "direct")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == HTML
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal.execute_workflow(
            CreateItemWorkflow.run,
            CreateItemInput(table=table.spec, key=table.key("direct")),
            id=table.workflow_id("direct"),
            task_queue=task_queue,
        )
    assert getattr(failure.value.cause, "type", None) == "ItemAlreadyExists"
    # With largeattr's failure converter, the same failure is the class itself.
    ours = with_our_failures(temporal)
    with pytest.raises(WorkflowFailureError) as typed:
        await ours.execute_workflow(
            CreateItemWorkflow.run,
            CreateItemInput(table=table.spec, key=table.key("direct")),
            id=table.workflow_id("direct"),
            task_queue=task_queue,
        )
    assert isinstance(typed.value.cause, ItemAlreadyExists)
    assert "already exists (version 1)" in typed.value.cause.message


@pytest.mark.parametrize(
    "case",
    ["undeclared blob", "key in attributes", "large attribute as plain", "bookkeeping", "bad key"],
)
async def test_a_saga_started_directly_checks_its_input(
    case: str,
    temporal: Client,
    task_queue: str,
    table: LargeAttrTable,
    s3: Any,
    dynamodb: Any,
    faults: Faults,
) -> None:
    """The client's checks are made again by the saga: a plain Temporal client can start
    it with anything the input types allow."""
    key = table.key("direct")
    blobs: tuple[BlobInput, ...] = (BlobInput.inline("html", HTML, "text/html"),)
    attributes = table.attributes({"title": "direct"}, "create")
    expected = "InvalidInput"
    if case == "undeclared blob":
        blobs += (BlobInput.inline("pdf", b"%PDF", "application/pdf"),)
        expected = "UnknownAttribute"
    elif case == "key in attributes":
        attributes["pk"] = {"S": "another"}
    elif case == "large attribute as plain":
        attributes["image"] = {"S": "s3://elsewhere/x"}
    elif case == "bookkeeping":
        attributes[table.spec.version_attribute] = {"N": "99"}
    else:
        key = {**key, "extra": {"S": "x"}}
        expected = "InvalidKey"
    with (
        no_change(s3, dynamodb, table, table.key("direct")),
        pytest.raises(WorkflowFailureError) as failure,
    ):
        await temporal.execute_workflow(
            CreateItemWorkflow.run,
            CreateItemInput(table=table.spec, key=key, blobs=blobs, attributes=attributes),
            id=table.workflow_id("direct"),
            task_queue=task_queue,
        )
    assert getattr(failure.value.cause, "type", None) == expected
    assert sum(faults.calls.values()) == 0  # refused before any AWS call


async def test_error_details_reach_the_caller(la: LargeAttrClient, table: LargeAttrTable) -> None:
    await la.create(table, "doc-1", blobs={"html": HTML})
    with pytest.raises(VersionConflict) as raised:
        await la.update(table, "doc-1", set={"title": "x"}, expected_version=7)
    assert raised.value.details == {"expected": 7, "found": 1}


async def test_validation_fails_before_anything_is_written(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any
) -> None:
    with no_change(s3, dynamodb, table, table.key("doc-1")):
        with pytest.raises(UnknownAttribute):
            await la.create(table, "doc-1", blobs={"pdf": b"x"})
        with pytest.raises(ItemTooLarge):
            await la.create(table, "doc-1", blobs={"html": HTML}, attributes={"big": "x" * 410_000})
    await la.create(table, "doc-1", blobs={"html": HTML}, attributes={"big": "x" * 300_000})
    with no_change(s3, dynamodb, table, table.key("doc-1")), pytest.raises(ItemTooLarge):
        # Each part fits; the item after the update would not.
        await la.update(table, "doc-1", blobs={"image": IMAGE}, set={"more": "y" * 150_000})
