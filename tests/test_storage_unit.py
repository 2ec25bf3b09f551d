"""The pivots and the S3 primitives of ``Storage``, without Temporal, on the moto server.

Each pivot is one conditional DynamoDB write: its condition failures must become the errors
a user can catch, a retried pivot must recognise its own committed write (``la_saga``), and
the objects it supersedes come from the item as it was (``ALL_OLD``), not from the read.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from largeattr import (
    ItemAlreadyExists,
    ItemNotFound,
    LargeAttrTable,
    Storage,
    VersionConflict,
    dynamo,
    keys,
)
from largeattr.blobs import object_metadata
from largeattr.messages import (
    BlobMeta,
    DeleteItemArgs,
    ItemState,
    PivotResult,
    PutItemArgs,
    StoredBlob,
    UpdateItemArgs,
    UpdateItemInput,
)
from largeattr.transfer.put import PutSpec, put_small
from tests.conftest import BUCKET

pytestmark = pytest.mark.unit

NOW = "2026-01-01T00:00:00+00:00"
ABSENT = ItemState(exists=False)


@pytest.fixture
def storage(s3: Any, dynamodb: Any) -> Storage:
    return Storage(s3, dynamodb)


def stored(table: LargeAttrTable, attribute: str, content: bytes, key: str = "doc") -> StoredBlob:
    """A blob as an upload step returns it (pivots only record its URI: no object needed)."""
    sha = hashlib.sha256(content).hexdigest()
    object_key = keys.object_key(table.spec, table.key(key), attribute, sha)
    return StoredBlob(attribute, table.bucket, object_key, BlobMeta(len(content), sha, "text/html"))


def create(
    storage: Storage,
    table: LargeAttrTable,
    blobs: tuple[StoredBlob, ...],
    saga: str = "saga-1",
    expected: ItemState = ABSENT,
) -> PivotResult:
    return storage.items.put_item(
        PutItemArgs(
            table.spec, table.key("doc"), {"title": {"S": saga}}, blobs, expected, saga, NOW
        )
    )


def update_args(
    storage: Storage,
    table: LargeAttrTable,
    saga: str,
    blobs: tuple[StoredBlob, ...] = (),
    expected: ItemState | None = None,
    **changes: Any,
) -> UpdateItemArgs:
    request = UpdateItemInput(table.spec, table.key("doc"), **changes)
    read = expected or storage.items.read_item(table.spec, table.key("doc"))
    return UpdateItemArgs(table.spec, request, blobs, read, saga, NOW)


def state(storage: Storage, table: LargeAttrTable) -> ItemState:
    return storage.items.read_item(table.spec, table.key("doc"))


def outside_write(dynamodb: Any, table: LargeAttrTable, expression: str, **values: Any) -> None:
    """A writer that bypasses the sagas (and so does not bump the version)."""
    dynamodb.update_item(
        TableName=table.table_name,
        Key={"pk": {"S": "doc"}},
        UpdateExpression=expression,
        ExpressionAttributeValues={f":{k}": v for k, v in values.items()},
    )


# ---------------------------------------------------------------- create: put_item


def test_create_pivot_puts_the_item_if_absent(storage: Storage, table: LargeAttrTable) -> None:
    html = stored(table, "html", b"<p>a</p>")
    assert create(storage, table, (html,)) == PivotResult(version=1, superseded=())
    now = state(storage, table)
    assert (now.version, now.saga_id, now.refs) == (1, "saga-1", {"html": html.uri})
    assert now.meta["html"] == html.meta


def test_create_pivot_on_an_existing_item_is_item_already_exists(
    storage: Storage, table: LargeAttrTable
) -> None:
    create(storage, table, (stored(table, "html", b"first"),))
    with pytest.raises(ItemAlreadyExists):
        create(storage, table, (stored(table, "html", b"second"),), saga="saga-2")
    assert state(storage, table).saga_id == "saga-1"


def test_a_retried_create_pivot_recognises_its_own_write(
    storage: Storage, table: LargeAttrTable
) -> None:
    """The first attempt committed and its response was lost: the retry's condition fails,
    and the item it gets back carries this saga's id."""
    blobs = (stored(table, "html", b"once"),)
    first = create(storage, table, blobs)
    assert create(storage, table, blobs) == first
    assert state(storage, table).version == 1


def test_overwrite_supersedes_what_the_item_held_not_what_was_read(
    storage: Storage, table: LargeAttrTable
) -> None:
    old_html, image = stored(table, "html", b"old"), stored(table, "image", b"img")
    create(storage, table, (old_html, image))
    # A read that saw no blobs at all: the superseded objects still come from ALL_OLD.
    blind = ItemState(exists=True, version=1)
    new_html = stored(table, "html", b"new")
    result = create(storage, table, (new_html, image), saga="saga-2", expected=blind)
    assert result == PivotResult(version=2, superseded=(old_html.uri,))
    assert state(storage, table).refs == {"html": new_html.uri, "image": image.uri}


def test_overwrite_of_a_changed_item_is_a_version_conflict(
    storage: Storage, table: LargeAttrTable
) -> None:
    create(storage, table, (stored(table, "html", b"v1"),))
    read = state(storage, table)
    create(storage, table, (stored(table, "html", b"v2"),), saga="saga-2", expected=read)
    with pytest.raises(VersionConflict) as conflict:
        create(storage, table, (stored(table, "html", b"late"),), saga="saga-3", expected=read)
    assert conflict.value.details == {"expected": 1, "found": 2}
    assert state(storage, table).saga_id == "saga-2"


# ---------------------------------------------------------------- update_item


def test_update_pivot_replaces_a_blob_and_sets_an_attribute(
    storage: Storage, table: LargeAttrTable, dynamodb: Any
) -> None:
    old_html, image = stored(table, "html", b"old"), stored(table, "image", b"img")
    create(storage, table, (old_html, image))
    new_html = stored(table, "html", b"new")
    args = update_args(
        storage, table, "saga-2", (new_html,), set_attributes={"title": dynamo.to_wire("v2")}
    )
    assert storage.items.update_item(args) == PivotResult(version=2, superseded=(old_html.uri,))
    now = state(storage, table)
    assert now.refs == {"html": new_html.uri, "image": image.uri}
    assert set(now.meta) == {"html", "image"}
    item = dynamodb.get_item(TableName=table.table_name, Key={"pk": {"S": "doc"}})["Item"]
    assert item["title"] == {"S": "v2"}


def test_update_pivot_removing_a_blob_supersedes_it(
    storage: Storage, table: LargeAttrTable
) -> None:
    html, image = stored(table, "html", b"h"), stored(table, "image", b"i")
    create(storage, table, (html, image))
    args = update_args(storage, table, "saga-2", remove_blobs=("image",))
    assert storage.items.update_item(args) == PivotResult(version=2, superseded=(image.uri,))
    now = state(storage, table)
    assert now.refs == {"html": html.uri}
    assert set(now.meta) == {"html"}


def test_update_supersedes_what_the_item_held_not_what_was_read(
    storage: Storage, table: LargeAttrTable, dynamodb: Any
) -> None:
    create(storage, table, (stored(table, "html", b"read"),))
    read = state(storage, table)
    sneaked = stored(table, "html", b"sneaked in")
    outside_write(dynamodb, table, "SET html = :uri", uri={"S": sneaked.uri})
    args = update_args(storage, table, "saga-2", (stored(table, "html", b"new"),), read)
    assert storage.items.update_item(args).superseded == (sneaked.uri,)


def test_update_of_a_changed_item_is_a_version_conflict(
    storage: Storage, table: LargeAttrTable, dynamodb: Any
) -> None:
    create(storage, table, (stored(table, "html", b"v1"),))
    read = state(storage, table)
    outside_write(dynamodb, table, "SET la_version = :v", v={"N": "7"})
    args = update_args(storage, table, "saga-2", (stored(table, "html", b"v2"),), read)
    with pytest.raises(VersionConflict) as conflict:
        storage.items.update_item(args)
    assert conflict.value.details == {"expected": 1, "found": 7}


def test_update_of_a_deleted_item_is_item_not_found(
    storage: Storage, table: LargeAttrTable, dynamodb: Any
) -> None:
    create(storage, table, (stored(table, "html", b"v1"),))
    args = update_args(storage, table, "saga-2", set_attributes={"title": dynamo.to_wire("x")})
    dynamodb.delete_item(TableName=table.table_name, Key={"pk": {"S": "doc"}})
    with pytest.raises(ItemNotFound):
        storage.items.update_item(args)
    assert not state(storage, table).exists  # an update never upserts


def test_a_retried_update_pivot_recognises_its_own_write(
    storage: Storage, table: LargeAttrTable
) -> None:
    old_html = stored(table, "html", b"old")
    create(storage, table, (old_html,))
    args = update_args(storage, table, "saga-2", (stored(table, "html", b"new"),))
    first = storage.items.update_item(args)
    assert storage.items.update_item(args) == first == PivotResult(2, (old_html.uri,))
    assert state(storage, table).version == 2


# ---------------------------------------------------------------- delete_item


def test_delete_pivot_supersedes_the_objects_the_table_owns(
    storage: Storage, table: LargeAttrTable
) -> None:
    html = stored(table, "html", b"h")
    elsewhere = StoredBlob("image", "another-bucket", "x/y", BlobMeta(1, "0" * 64, "image/png"))
    create(storage, table, (html, elsewhere))
    args = DeleteItemArgs(table.spec, table.key("doc"), state(storage, table), "saga-2")
    assert storage.items.delete_item(args) == PivotResult(version=1, superseded=(html.uri,))
    assert not state(storage, table).exists


def test_delete_of_a_changed_item_is_a_version_conflict(
    storage: Storage, table: LargeAttrTable, dynamodb: Any
) -> None:
    create(storage, table, (stored(table, "html", b"h"),))
    read = state(storage, table)
    outside_write(dynamodb, table, "SET la_version = :v", v={"N": "2"})
    with pytest.raises(VersionConflict):
        storage.items.delete_item(DeleteItemArgs(table.spec, table.key("doc"), read, "saga-2"))
    assert state(storage, table).exists


def test_a_retried_delete_pivot_finds_the_item_gone(
    storage: Storage, table: LargeAttrTable
) -> None:
    html = stored(table, "html", b"h")
    create(storage, table, (html,))
    args = DeleteItemArgs(table.spec, table.key("doc"), state(storage, table), "saga-2")
    first = storage.items.delete_item(args)
    assert storage.items.delete_item(args) == first == PivotResult(1, (html.uri,))


# ---------------------------------------------------------------- S3


def put_spec(table: LargeAttrTable) -> PutSpec:
    return PutSpec(
        bucket=BUCKET,
        key=f"{table.prefix}/unit/{uuid.uuid4().hex}",
        content_type="text/plain",
        metadata=object_metadata(table.spec, table.key("doc"), "html", "saga-1", NOW, "0" * 64),
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_small_never_overwrites(s3: Any, table: LargeAttrTable) -> None:
    spec = put_spec(table)
    assert put_small(s3, spec, b"first", sha(b"first")) is True
    assert put_small(s3, spec, b"second", sha(b"second")) is False
    assert s3.get_object(Bucket=BUCKET, Key=spec.key)["Body"].read() == b"first"
    # Staging writes (if_none_match=False) may replace their own key.
    assert put_small(s3, spec, b"third", sha(b"third"), if_none_match=False) is True
    assert s3.get_object(Bucket=BUCKET, Key=spec.key)["Body"].read() == b"third"


def test_delete_objects_counts_missing_keys_as_deleted(
    storage: Storage, s3: Any, table: LargeAttrTable
) -> None:
    present, missing = put_spec(table), f"{table.prefix}/unit/never-written"
    put_small(s3, present, b"x", sha(b"x"))
    deleted = storage.cleanup.delete_objects(BUCKET, [present.key, missing, present.key])
    assert deleted == (present.key, missing)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{table.prefix}/unit/")
    assert listed.get("Contents", []) == []


def test_delete_objects_in_a_missing_bucket_has_nothing_to_do(storage: Storage) -> None:
    assert storage.cleanup.delete_objects(f"no-such-{uuid.uuid4().hex[:8]}", ["a"]) == ("a",)
