"""Concurrency on one item (issue 3, scenario 3): many writers, racing creates, identical
content, reverts while a slower update is in flight, and writers that bypass largeattr.

What must hold: no lost update, no deleted live object, conflicts reported as typed errors,
and after every scenario the checker finds no dangling reference, no orphan and no drift.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from largeattr import (
    AccessDenied,
    ItemAlreadyExists,
    ItemBusy,
    ItemNotFound,
    ItemResult,
    LargeAttrClient,
    LargeAttrTable,
    VersionConflict,
    keys,
)
from tests.conftest import object_keys, raw_item
from tests.faults import Faults, client_error
from tests.invariants import (
    assert_invariants,
    drift_of,
    tally_faults,  # noqa: F401 - autouse fixture
    tally_module,  # noqa: F401 - autouse fixture
)

A = b"<html>A: the original page</html>"
B = b"<html>B: the page after the first update</html>"


def html_of(i: int) -> bytes:
    return f"<html><body>writer {i}: {'x' * (i % 7)}</body></html>".encode()


def key_of(uri: str) -> str:
    return keys.parse_s3_uri(uri)[1]


def html_key(table: LargeAttrTable, content: bytes) -> str:
    return keys.object_key(
        table.spec, table.key("doc"), "html", hashlib.sha256(content).hexdigest()
    )


async def read_html(la: LargeAttrClient, table: LargeAttrTable, key: Any = "doc") -> bytes:
    item = await la.get(table, key)
    assert item is not None
    return await la.read_blob(item.blob("html"))


# ------------------------------------------------------------------ many writers


@pytest.mark.parametrize(
    "writers", [pytest.param(12, id="12"), pytest.param(50, id="50", marks=pytest.mark.faults)]
)
async def test_concurrent_updates_lose_nothing(
    la: LargeAttrClient,
    table: LargeAttrTable,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    writers: int,
) -> None:
    """N concurrent updates with different content: each commits exactly once, in some
    order; the item ends at version N+1 with every writer's mark and the last writer's
    html; every superseded object is deleted and the live one is not."""
    first = await la.create(table, "doc", {"html": A}, {"writers": {"creator"}})
    results: list[ItemResult] = await asyncio.gather(
        *(
            la.update(table, "doc", {"html": html_of(i)}, add={"writers": {f"w{i}"}})
            for i in range(writers)
        )
    )
    # Each writer committed once, one after the other.
    assert sorted(r.version for r in results) == list(range(2, writers + 2))
    item = await la.get(table, "doc")
    assert item is not None
    assert item.version == writers + 1
    assert item.attributes["writers"] == {"creator"} | {f"w{i}" for i in range(writers)}
    last = max(range(writers), key=lambda i: results[i].version)
    assert await la.read_blob(item.blob("html")) == html_of(last)
    assert item.blob("html").uri == results[last].blobs[0].uri
    # Every object any saga stored was deleted by the next one, except the live one.
    stored = {first.blobs[0].uri} | {r.blobs[0].uri for r in results}
    deleted = [uri for r in results for uri in r.deleted_objects]
    assert len(deleted) == len(set(deleted)) == writers
    assert set(deleted) == stored - {item.blob("html").uri}
    assert object_keys(s3, table) == {item.blob("html").key}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ racing creates


async def test_concurrent_creates_exactly_one_wins(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    outcomes = await asyncio.gather(
        *(la.create(table, "doc", {"html": html_of(i)}, {"n": i}) for i in range(8)),
        return_exceptions=True,
    )
    won = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, ItemResult)]
    lost = [o for o in outcomes if not isinstance(o, ItemResult)]
    assert len(won) == 1, outcomes
    assert all(type(o) is ItemAlreadyExists for o in lost), lost
    assert all("use update, or create with overwrite=True" in str(o) for o in lost)
    winner, result = won[0]
    assert result.version == 1
    item = await la.get(table, "doc")
    assert item is not None
    assert item.attributes["n"] == winner
    assert await read_html(la, table) == html_of(winner)
    assert object_keys(s3, table) == {item.blob("html").key}  # losers left nothing
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_concurrent_creates_fail_fast_while_one_runs(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    faults.slow("PutObject", 2.0, times=1)
    running = await la.start_create(table, "doc", {"html": A})
    outcomes = await asyncio.gather(
        *(la.create(table, "doc", {"html": html_of(i)}, on_busy="fail") for i in range(8)),
        return_exceptions=True,
    )
    assert all(type(o) is ItemBusy for o in outcomes), outcomes
    assert all("on_busy='wait'" in str(o) for o in outcomes)
    waited = await asyncio.gather(
        la.create(table, "doc", {"html": B}, on_busy="wait"), return_exceptions=True
    )
    assert type(waited[0]) is ItemAlreadyExists
    assert (await la.result(running)).version == 1
    assert await read_html(la, table) == A
    assert object_keys(s3, table) == {html_key(table, A)}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_concurrent_overwrites_serialise(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    results = await asyncio.gather(
        *(la.create(table, "doc", {"html": html_of(i)}, overwrite=True) for i in range(8))
    )
    assert sorted(r.version for r in results) == list(range(1, 9))
    last = max(range(8), key=lambda i: results[i].version)
    assert await read_html(la, table) == html_of(last)
    assert object_keys(s3, table) == {results[last].blobs[0].key}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ identical content


@pytest.mark.parametrize(
    "case", ["stale-version", "pivot-fails-after-upload", "pivot-fails-reusing"]
)
async def test_identical_content_where_one_writer_fails(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    case: str,
) -> None:
    """Two writers store the same new html; one of them fails. pynamodb_mate's clean-up of
    the failed writer deletes the object the other one references; here it must survive."""
    await la.create(table, "doc", {"html": A})
    faults.calls.clear()
    faults.slow("PutObject", 1.0, times=1)  # keep the first writer busy while the second starts
    winner_kwargs: dict[str, Any] = {"set": {"who": "winner"}}
    if case == "stale-version":
        loser_kwargs: dict[str, Any] = {"set": {"who": "late"}, "expected_version": 1}
    else:
        # The failing writer's pivot is refused; it is told apart by the value it sets.
        loser_kwargs = {"set": {"who": "loser"}}
        faults.fail(
            "UpdateItem",
            times=-1,
            error=lambda: client_error("AccessDenied", 403),
            match=lambda p: {"S": "loser"} in p.get("ExpressionAttributeValues", {}).values(),
        )
    expected_error = VersionConflict if case == "stale-version" else AccessDenied
    loser_first = case == "pivot-fails-after-upload"
    first_kwargs, second_kwargs = (
        (loser_kwargs, winner_kwargs) if loser_first else (winner_kwargs, loser_kwargs)
    )
    first = await la.start_update(table, "doc", {"html": B}, **first_kwargs)
    await asyncio.sleep(0.2)
    second = asyncio.ensure_future(la.update(table, "doc", {"html": B}, **second_kwargs))
    outcomes = await asyncio.gather(la.result(first), second, return_exceptions=True)
    winner = outcomes[1] if loser_first else outcomes[0]
    loser = outcomes[0] if loser_first else outcomes[1]
    assert isinstance(winner, ItemResult), winner
    assert type(loser) is expected_error, loser
    assert winner.version == 2
    if case != "stale-version":
        assert faults.injected["before:dynamodb.UpdateItem"] == 1  # the loser's pivot
        # Reusing: the loser's conditional PUT found the winner's object (refused, not
        # stored again) and must not delete it. After-upload: the loser stored B,
        # compensated it, and the winner stored B again.
        assert faults.calls["s3.PutObject"] == 2
        if case == "pivot-fails-reusing":
            head = s3.head_object(Bucket=table.bucket, Key=html_key(table, B))
            assert head["Metadata"]["la-saga"] == winner.saga_id
    item = await la.get(table, "doc")
    assert item is not None
    assert item.attributes["who"] == "winner"
    assert await la.read_blob(item.blob("html")) == B  # the live object survived
    assert object_keys(s3, table) == {html_key(table, B)}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ reverts


SERVICE = {"PutObject": "s3", "UpdateItem": "dynamodb", "DeleteObjects": "s3"}


@pytest.mark.parametrize("slow_step", list(SERVICE))
async def test_revert_while_a_slower_update_is_in_flight(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    slow_step: str,
) -> None:
    """A -> B is slow (at its upload, its pivot or its clean-up); B -> A is issued
    meanwhile. pynamodb_mate's slow update deletes A after the revert referenced it."""
    created = await la.create(table, "doc", {"html": A})
    slow = faults.slow(slow_step, 2.0, times=1)
    forward = await la.start_update(table, "doc", {"html": B})
    deadline = time.monotonic() + 10
    while slow.hits == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # until the forward update is stalled at its slow step
    assert slow.hits == 1, f"the forward update never reached {slow_step}"
    assert faults.injected[f"before:{SERVICE[slow_step]}.{slow_step}"] == 1
    # The revert is issued while the forward update is still in flight (not after it).
    assert (await forward.describe()).status == WorkflowExecutionStatus.RUNNING
    revert_issued = datetime.now(UTC)
    revert = await la.update(table, "doc", {"html": A})
    forward_result = await la.result(forward)
    forward_closed = (await forward.describe()).close_time
    assert forward_closed is not None
    assert forward_closed > revert_issued, "the revert was issued after the forward update"
    assert (forward_result.version, revert.version) == (2, 3)
    assert forward_result.deleted_objects == (created.blobs[0].uri,)
    assert revert.deleted_objects == (forward_result.blobs[0].uri,)
    assert revert.blobs[0].created  # A was uploaded again after the forward update removed it
    assert await read_html(la, table) == A
    assert object_keys(s3, table) == {html_key(table, A)}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_revert_race_with_expected_version_is_a_conflict(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """A revert that insists on the version it saw (1) loses to the slow update (now 2)."""
    await la.create(table, "doc", {"html": A})
    faults.slow("PutObject", 1.5, times=1)
    forward = await la.start_update(table, "doc", {"html": B})
    await asyncio.sleep(0.3)
    with pytest.raises(VersionConflict, match="re-read it and retry"):
        await la.update(table, "doc", {"html": A}, expected_version=1)
    assert (await la.result(forward)).version == 2
    assert await read_html(la, table) == B
    assert object_keys(s3, table) == {html_key(table, B)}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ writers outside largeattr


def direct_update(dynamodb: Any, table: LargeAttrTable, expression: str, **values: Any) -> None:
    """A plain DynamoDB write, as another tool would make it (``#views`` is ``views``,
    a DynamoDB reserved word)."""
    names = {"#views": "views"} if "#views" in expression else {}
    dynamodb.update_item(
        TableName=table.table_name,
        Key={"pk": {"S": "doc"}},
        UpdateExpression=expression,
        ExpressionAttributeValues={f":{k}": v for k, v in values.items()},
        **({"ExpressionAttributeNames": names} if names else {}),
    )


@pytest.mark.parametrize("operation", ["update", "update-attributes", "delete", "overwrite"])
async def test_bypassing_writer_that_bumps_the_version_is_caught(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    operation: str,
) -> None:
    """A writer outside largeattr (pynamodb with a VersionAttribute) changes the item
    between the saga's read and its pivot: VersionConflict, its write is kept, and the
    saga leaves nothing behind."""
    await la.create(table, "doc", {"html": A, "image": B}, {"views": 1})
    live = object_keys(s3, table)

    def racing_writer(_: dict[str, Any]) -> None:
        direct_update(
            dynamodb,
            table,
            "SET title = :t, la_version = la_version + :one ADD #views :one",
            t={"S": "direct"},
            one={"N": "1"},
        )

    pivots = {
        "update": "UpdateItem",
        "update-attributes": "UpdateItem",
        "delete": "DeleteItem",
        "overwrite": "PutItem",
    }
    faults.before(pivots[operation], racing_writer)
    if operation == "update":
        call = la.update(table, "doc", {"html": b"new", "image": None}, add={"views": 10})
    elif operation == "update-attributes":
        call = la.update(table, "doc", add={"views": 10}, set={"title": "saga"})
    elif operation == "delete":
        call = la.delete(table, "doc")
    else:
        call = la.create(table, "doc", {"html": b"replacement"}, overwrite=True)
    with pytest.raises(VersionConflict, match="re-read it and retry"):
        await call
    assert sum(rule.hits for rule in faults.rules) == 1
    item = await la.get(table, "doc")
    assert item is not None
    assert item.version == 2  # the direct writer's version
    assert item.attributes["title"] == "direct"  # its write was not lost
    assert item.attributes["views"] == 2  # ... nor overwritten by the saga's ADD
    assert await la.read_blob(item.blob("html")) == A
    assert await la.read_blob(item.blob("image")) == B
    assert object_keys(s3, table) == live
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


@pytest.mark.parametrize("where", ["inside-prefix", "outside-prefix"])
@pytest.mark.parametrize("timing", ["before-the-saga", "between-read-and-pivot"])
@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_bypassing_writer_that_keeps_the_version(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    where: str,
    timing: str,
    operation: str,
) -> None:
    """A writer outside largeattr points html at an object of its own WITHOUT changing
    la_version, so no condition can see it. What happens (documented here):

    * the saga commits over it (the version matched);
    * the objects to delete come from the pivot's own response (ALL_OLD), so the saga
      never deletes the writer's object: it is no key this table's template produces,
      whether it lies under the table's prefix or not (tables may share a prefix);
    * A, which the writer unlinked without deleting, is an orphan: the checker reports it,
      and the reconcile workflow removes it;
    * no live object is deleted and no reference dangles at any point after the saga.
    """
    await la.create(table, "doc", {"html": A})
    a_key = html_key(table, A)
    foreign_key = (
        f"{table.prefix}/direct-writer/page.html"
        if where == "inside-prefix"
        else f"elsewhere/{table.table_name}/page.html"
    )
    s3.put_object(Bucket=table.bucket, Key=foreign_key, Body=b"<html>direct</html>")
    foreign_uri = keys.s3_uri(table.bucket, foreign_key)

    def repoint(_: Any = None) -> None:
        direct_update(dynamodb, table, "SET html = :u", u={"S": foreign_uri})

    if timing == "before-the-saga":
        repoint()
    else:
        faults.before("UpdateItem" if operation == "update" else "DeleteItem", repoint)

    if operation == "update":
        result = await la.update(table, "doc", {"html": b"<html>C</html>"})
        assert result.version == 2
        assert await read_html(la, table) == b"<html>C</html>"
        live = {html_key(table, b"<html>C</html>")}
    else:
        result = await la.delete(table, "doc")
        assert raw_item(dynamodb, table, table.key("doc")) is None
        live = set()
    # Not a key this table's template produces, so never ours, inside the prefix or not.
    assert foreign_uri not in result.deleted_objects
    foreign_exists = bool(
        s3.list_objects_v2(Bucket=table.bucket, Prefix=foreign_key).get("KeyCount")
    )
    assert foreign_exists
    inside = {foreign_key} if where == "inside-prefix" else set()
    # A was unlinked by the direct writer; nobody references it any more.
    assert object_keys(s3, table) == live | {a_key} | inside
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"], expected_orphans={a_key})
    reconciled = await la.reconcile(table, grace_seconds=0)
    assert reconciled.objects_deleted == 1
    assert object_keys(s3, table) == live | inside
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])
    s3.delete_object(Bucket=table.bucket, Key=foreign_key)


async def test_bypassing_writer_deletes_the_item_during_an_update(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """The item disappears between the read and the pivot: ItemNotFound, the saga's new
    object is compensated; the old object, which the deleter left, is the checker's (and
    reconcile's) business, and check_drift reports the item as gone behind our back."""
    await la.create(table, "doc", {"html": A})

    def delete_directly(_: dict[str, Any]) -> None:
        dynamodb.delete_item(TableName=table.table_name, Key={"pk": {"S": "doc"}})

    faults.before("UpdateItem", delete_directly)
    with pytest.raises(ItemNotFound, match="create it instead"):
        await la.update(table, "doc", {"html": B})
    assert object_keys(s3, table) == {html_key(table, A)}  # B was compensated
    drift = await drift_of(s3, dynamodb, temporal, table, ["doc"])
    assert [d.reason.split(" run ")[0] for d in drift] == ["committed by CreateItem"]
    reconciled = await la.reconcile(table, grace_seconds=0)
    assert reconciled.objects_deleted == 1
    assert object_keys(s3, table) == set()


async def test_bypassing_writer_creates_the_item_during_a_create(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    def create_directly(_: dict[str, Any]) -> None:
        dynamodb.put_item(
            TableName=table.table_name, Item={"pk": {"S": "doc"}, "title": {"S": "direct"}}
        )

    faults.before("PutItem", create_directly)
    with pytest.raises(ItemAlreadyExists, match="already exists"):
        await la.create(table, "doc", {"html": A})
    assert object_keys(s3, table) == set()  # the saga's upload was compensated
    raw = raw_item(dynamodb, table, table.key("doc"))
    assert raw == {"pk": {"S": "doc"}, "title": {"S": "direct"}}  # the direct item is intact
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ the lock itself


async def test_two_sagas_under_different_workflow_ids_do_not_dangle(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    temporal: Client,
    task_queue: str,
    s3: Any,
    dynamodb: Any,
) -> None:
    """The workflow id is the per-item lock. A caller using the plain Temporal client with
    another id (README: 'one id per item: this is what serialises operations') gets two
    sagas on one item at once. Here saga 1 (A -> B) commits, then stalls in its clean-up;
    saga 2 (B -> A), under another id, finds A still there, reuses it and commits; saga 1's
    clean-up then deletes A, which the item references: a dangling reference, the exact
    pynamodb_mate revert race. A saga must refuse to run under an id other than its
    item's (or the clean-up must not delete what the item references)."""
    from largeattr.messages import BlobInput, UpdateItemInput
    from largeattr.workflows import UpdateItemWorkflow

    await la.create(table, "doc", {"html": A})

    def request(content: bytes) -> UpdateItemInput:
        return UpdateItemInput(
            table=table.spec, key=table.key("doc"), blobs=(BlobInput.inline("html", content),)
        )

    faults.slow("DeleteObjects", 3.0, times=1)
    outcomes: list[object] = []
    try:
        one = await temporal.start_workflow(
            UpdateItemWorkflow.run,
            request(B),
            id=table.workflow_id("doc"),
            task_queue=task_queue,
        )
        for _ in range(100):  # until saga 1 committed
            raw = raw_item(dynamodb, table, table.key("doc"))
            if raw and raw["la_version"] == {"N": "2"}:
                break
            await asyncio.sleep(0.05)
        two = await temporal.start_workflow(
            UpdateItemWorkflow.run,
            request(A),
            id=f"{table.workflow_id('doc')}/another-id",
            task_queue=task_queue,
        )
        outcomes = list(
            await asyncio.gather(la.result(one), la.result(two), return_exceptions=True)
        )
    except Exception as err:  # a refusal to start is an acceptable outcome
        outcomes.append(err)
    item = await la.get(table, "doc")
    assert item is not None
    for attribute, ref in item.blobs.items():
        found = s3.list_objects_v2(Bucket=table.bucket, Prefix=ref.key).get("KeyCount")
        assert found, f"{attribute} references {ref.key}, which was deleted ({outcomes})"
    assert await la.read_blob(item.blob("html")) in (A, B)
