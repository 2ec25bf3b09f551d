"""Worker crashes at every step boundary of every saga, and a crash mid-upload that resumes.

Each case runs the saga on a worker *process* (``tests/crash_worker.py``) that stops dead
at one point: before an activity makes any AWS call, during one (the call committed at the
server, the activity never returned), or after the activity returned (its result is never
reported). The test SIGKILLs it there, switches on a fresh worker on the same task queue,
and checks that the saga ends as it would have without the crash, that the item is exactly
right, and that the checker finds no dangling reference, no orphan and no drift.

The failing sagas fail at their pivot for real: both workers wait at a gate just before the
pivot is sent, the test writes as another writer would (creates the item / bumps
``la_version``) and opens the gate, so the pivot's condition fails and the saga compensates.

The short steps are local activities: a kill is a kill in the middle of a workflow task
that ran some of them. Nothing of that task reaches the history; once it times out (the
workflow task timeout, 10 s) a fresh worker runs the task again from the start, each step
idempotent, and the pivot recognises its own earlier commit (``la_saga``).

The file-upload tests crash a multipart upload of a 40 MB file: mid-way (issue 4: the retry
resumes and sends only the parts S3 had not confirmed), after CompleteMultipartUpload, and
right after CreateMultipartUpload.

Temporal notices a killed worker's activity only when the attempt times out (10 s to 60 s
with the sagas' timeouts). By default the tests shorten the lost attempt's timeout with
UpdateActivityOptions (``tests.crash_support.expire_lost_activities``), so each case takes
seconds (it also resets the workflow's sticky queue, else the next workflow task waits on
the dead worker's sticky queue); ``CRASH_NATURAL_TIMEOUTS=1`` waits the real timeouts out
instead (DynamoDB steps ~11 s, inline uploads ~31 s, clean-up ~61 s per case).

    .venv/bin/python -m pytest tests/test_crashes.py              # the quick subset
    .venv/bin/python -m pytest tests/test_crashes.py -m faults -s # the whole matrix
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from largeattr import (
    AwsConfig,
    ItemAlreadyExists,
    LargeAttrClient,
    LargeAttrTable,
    Storage,
    VersionConflict,
)
from largeattr.check import check_drift, check_storage
from largeattr.transfer import MiB, TransferConfig
from largeattr.workflows import CreateItemWorkflow
from tests.conftest import create_from_file, object_keys, raw_item
from tests.crash_support import (
    CrashWorkers,
    expire_lost_activities,
    restore_activity_options,
)

NATURAL = os.environ.get("CRASH_NATURAL_TIMEOUTS", "") not in ("", "0")

HTML = b"<html><body>first version</body></html>"
NEW_HTML = b"<html><body>second version, longer</body></html>"
IMAGE = bytes(range(256)) * 40  # 10 KB
KEY = "doc"

# ---------------------------------------------------------------- the matrix

#: Each saga's steps in order, with the AWS call that commits its effect. The client reads
#: the item before it starts an update or a delete (a create needs no read); the steps are
#: local activities (all of them but the stream's promote), so a kill anywhere is a kill in
#: the middle of a workflow task: the task times out and a fresh worker runs its steps again.
SAGAS: dict[str, tuple[tuple[str, str], ...]] = {
    # upload html + image -> put item if absent
    "create": (("upload_blob", "PutObject"), ("put_item", "PutItem")),
    # upload the new html -> update item if version 1 -> delete old html and image
    "update": (
        ("upload_blob", "PutObject"),
        ("update_item", "UpdateItem"),
        ("delete_objects", "DeleteObjects"),
    ),
    # delete item if version 1 -> delete its objects
    "delete": (("delete_item", "DeleteItem"), ("delete_objects", "DeleteObjects")),
    # stage a stream (in the client process) -> promote it (a regular activity: server-side
    # copy, then delete the staged copy) -> put item. Only promote is matrixed here.
    "create_stream": (("promote_blob", "CopyObject"),),
    # upload -> [another writer creates the item] -> put item fails -> compensate
    "create_conflict": (
        ("upload_blob", "PutObject"),
        ("put_item", "PutItem"),
        ("compensate", "DeleteObject"),
    ),
    # upload -> [another writer bumps la_version] -> update fails -> compensate
    "update_conflict": (
        ("upload_blob", "PutObject"),
        ("update_item", "UpdateItem"),
        ("compensate", "DeleteObject"),
    ),
}

#: Where the other writer writes in the conflict sagas: just before the pivot is sent.
CONFLICT_GATE = {"create_conflict": "before:put_item", "update_conflict": "before:update_item"}


@dataclass(frozen=True)
class Case:
    saga: str
    point: str  # where the first worker stops, e.g. "during:PutItem"
    activity: str  # the activity running there

    @property
    def id(self) -> str:
        return f"{self.saga}-{self.point}"


def matrix() -> list[Case]:
    cases = []
    for saga, steps in SAGAS.items():
        for activity, operation in steps:
            cases.append(Case(saga, f"before:{activity}", activity))
            cases.append(Case(saga, f"during:{operation}", activity))
            cases.append(Case(saga, f"after:{activity}", activity))
    # promote's second write: the staged copy's delete
    cases.append(Case("create_stream", "during:DeleteObject", "promote_blob"))
    return cases


MATRIX = matrix()
#: Quick enough for the default suite: the committed-but-unanswered pivot of a create, an
#: update whose pivot result is lost, a delete's post-pivot clean-up, a compensation.
DEFAULT_SUBSET = [
    Case("create", "during:PutItem", "put_item"),
    Case("update", "after:update_item", "update_item"),
    Case("delete", "during:DeleteObjects", "delete_objects"),
    Case("update_conflict", "during:DeleteObject", "compensate"),
]

# ---------------------------------------------------------------- fixtures


@pytest.fixture
def crash_workers(temporal_address: str, aws: AwsConfig, tmp_path: Path) -> Iterator[CrashWorkers]:
    workers = CrashWorkers(temporal_address, aws, tmp_path)
    try:
        yield workers
    finally:
        workers.close()


@dataclass
class Env:
    temporal: Client
    la: LargeAttrClient  # bound to the in-process worker: setup and reads
    workers: CrashWorkers
    aws: AwsConfig
    transfer: TransferConfig
    s3: Any
    dynamodb: Any
    new_table: Callable[..., LargeAttrTable]


@pytest.fixture
def env(
    temporal: Client,
    la: LargeAttrClient,
    crash_workers: CrashWorkers,
    aws: AwsConfig,
    test_transfer: TransferConfig,
    s3: Any,
    dynamodb: Any,
    new_table: Callable[..., LargeAttrTable],
) -> Env:
    return Env(temporal, la, crash_workers, aws, test_transfer, s3, dynamodb, new_table)


@pytest.fixture
async def terminate_left_over(temporal: Client) -> AsyncIterator[list[str]]:
    """Workflow ids to terminate if a failed test left them running."""
    ids: list[str] = []
    yield ids
    for workflow_id in ids:
        handle = temporal.get_workflow_handle(workflow_id)
        with contextlib.suppress(Exception):
            description = await handle.describe()
            if description.status is not None and description.status.name == "RUNNING":
                await handle.terminate("crash test ended")


# ---------------------------------------------------------------- one case


async def start_saga(
    saga: str, client: LargeAttrClient, table: LargeAttrTable
) -> WorkflowHandle[Any, Any]:
    if saga == "create_stream":
        chunks = (HTML[i : i + 7] for i in range(0, len(HTML), 7))
        return await client.start_create(
            table, KEY, blobs={"html": chunks, "image": IMAGE}, attributes={"title": "new"}
        )
    if saga in ("create", "create_conflict"):
        return await client.start_create(
            table, KEY, blobs={"html": HTML, "image": IMAGE}, attributes={"title": "new"}
        )
    if saga in ("update", "update_conflict"):
        return await client.start_update(
            table,
            KEY,
            blobs={"html": NEW_HTML, "image": None},
            set={"title": "updated"},
            expected_version=1,
        )
    assert saga == "delete"
    return await client.start_delete(table, KEY, expected_version=1)


async def write_conflict_at_gate(
    env: Env, table: LargeAttrTable, saga: str, seen: dict[str, Any]
) -> None:
    """When a worker is about to send the pivot (its gate), write as another writer would,
    then let the saga go on: its pivot must then fail."""
    gate = CONFLICT_GATE[saga]
    deadline = time.monotonic() + 90
    while not env.workers.gate_reached(gate):
        assert time.monotonic() < deadline, "no worker reached the pivot"
        await asyncio.sleep(0.02)
    if saga == "create_conflict":  # someone else creates the item
        env.dynamodb.put_item(
            TableName=table.table_name,
            Item={"pk": {"S": KEY}, "title": {"S": "created by someone else"}},
        )
    else:  # a writer outside largeattr that increments the version, as pynamodb does
        env.dynamodb.update_item(
            TableName=table.table_name,
            Key={"pk": {"S": KEY}},
            UpdateExpression="SET title = :t, la_version = la_version + :one",
            ExpressionAttributeValues={":t": {"S": "changed by someone else"}, ":one": {"N": "1"}},
        )
    seen["item"] = raw_item(env.dynamodb, table, table.key(KEY))
    env.workers.release(gate)


async def run_case(env: Env, case: Case, left_over: list[str]) -> dict[str, float]:
    table = env.new_table()
    item_key = table.key(KEY)
    if case.saga in ("update", "delete", "update_conflict"):
        await env.la.create(
            table, KEY, blobs={"html": HTML, "image": IMAGE}, attributes={"title": "v1"}
        )
    before = raw_item(env.dynamodb, table, item_key)
    old_objects = object_keys(env.s3, table)

    conflict = case.saga.endswith("_conflict")
    gates = (CONFLICT_GATE[case.saga],) if conflict else ()
    queue = env.workers.new_queue()
    go = env.workers.directory / f"go-{queue}"
    first = env.workers.start(queue, pause=case.point, gates=gates)
    # The replacement starts up now and polls only once the first one is dead.
    fresh = env.workers.start(queue, gates=gates, start_when=go)
    seen: dict[str, Any] = {}
    conflict_task = (
        asyncio.create_task(write_conflict_at_gate(env, table, case.saga, seen))
        if conflict
        else None
    )
    client = LargeAttrClient(env.temporal, task_queue=queue, aws=env.aws, transfer=env.transfer)
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        handle = await start_saga(case.saga, client, table)
        left_over.append(handle.id)
        marker = await first.wait_marker(timeout=90)
        timings["to_pause"] = time.monotonic() - t0
        assert marker["point"] == case.point.split("#")[0]
        if "activity" in marker:
            assert marker["activity"] == f"largeattr.{case.activity}", marker

        first.kill()
        t1 = time.monotonic()
        updated = {} if NATURAL else await expire_lost_activities(env.temporal, handle.id)
        go.touch()
        restore = asyncio.create_task(restore_activity_options(env.temporal, handle.id, updated))
        outcome: Any
        try:
            outcome = await asyncio.wait_for(client.result(handle), timeout=150)
        except (ItemAlreadyExists, VersionConflict) as err:
            outcome = err
        timings["recovery"] = time.monotonic() - t1
        await restore
        if conflict_task is not None:
            await asyncio.wait_for(conflict_task, timeout=10)
    finally:
        if conflict_task is not None and not conflict_task.done():
            conflict_task.cancel()
        await client.close()
    assert fresh.process.poll() is None, f"the fresh worker died:\n{fresh.log_tail()}"

    # The outcome and the item, exactly.
    item = await env.la.get(table, KEY)
    if case.saga in ("create", "create_stream"):
        assert not isinstance(outcome, Exception), outcome
        assert outcome.version == 1
        assert item is not None
        assert item.version == 1
        assert item.saga_id == outcome.saga_id
        assert item.attributes["title"] == "new"
        assert set(item.blobs) == {"html", "image"}
        assert await env.la.read_blob(item.blob("html")) == HTML
        assert await env.la.read_blob(item.blob("image")) == IMAGE
        assert len(object_keys(env.s3, table)) == 2
    elif case.saga == "update":
        assert not isinstance(outcome, Exception), outcome
        assert outcome.version == 2
        assert item is not None
        assert item.version == 2
        assert item.saga_id == outcome.saga_id
        assert item.attributes["title"] == "updated"
        assert set(item.blobs) == {"html"}
        assert await env.la.read_blob(item.blob("html")) == NEW_HTML
        assert len(outcome.deleted_objects) == 2
        assert object_keys(env.s3, table) == {item.blob("html").key}
    elif case.saga == "delete":
        assert not isinstance(outcome, Exception), outcome
        assert item is None
        assert object_keys(env.s3, table) == set()
    elif case.saga == "create_conflict":
        assert isinstance(outcome, ItemAlreadyExists), outcome
        assert raw_item(env.dynamodb, table, item_key) == seen["item"]
        assert object_keys(env.s3, table) == set()
    else:
        assert isinstance(outcome, VersionConflict), outcome
        assert raw_item(env.dynamodb, table, item_key) == seen["item"]
        assert seen["item"] != before
        assert object_keys(env.s3, table) == old_objects

    # The invariants.
    storage = Storage(env.s3, env.dynamodb)
    report = check_storage(storage, table.spec)
    assert report.dangling == [], list(report.lines())
    assert report.orphans == [], list(report.lines())
    assert await check_drift(storage, table.spec, env.temporal, [item_key]) == []
    return timings


def _report(case: Case, timings: dict[str, float], started: float) -> None:
    print(
        f"\n[crash] {case.id}: paused after {timings['to_pause']:.1f}s, recovered in "
        f"{timings['recovery']:.1f}s, case {time.monotonic() - started:.1f}s"
        f"{' (natural timeouts)' if NATURAL else ''}"
    )


@pytest.mark.faults
@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", MATRIX, ids=[c.id for c in MATRIX])
async def test_worker_crash_matrix(env: Env, case: Case, terminate_left_over: list[str]) -> None:
    started = time.monotonic()
    timings = await run_case(env, case, terminate_left_over)
    _report(case, timings, started)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", DEFAULT_SUBSET, ids=[c.id for c in DEFAULT_SUBSET])
async def test_worker_crash(env: Env, case: Case, terminate_left_over: list[str]) -> None:
    started = time.monotonic()
    timings = await run_case(env, case, terminate_left_over)
    _report(case, timings, started)


# ---------------------------------------------------------------- resume after a crash


def _parts(path: Path, word: str) -> list[int]:
    if not path.exists():
        return []
    lines = (line.split() for line in path.read_text().splitlines())
    return [int(number) for w, number in lines if w == word]


def _open_upload(s3: Any, table: LargeAttrTable) -> tuple[str, set[int]]:
    """The one open multipart upload under the table's prefix, and its parts S3 holds."""
    uploads = s3.list_multipart_uploads(Bucket=table.bucket, Prefix=f"{table.prefix}/")
    [upload] = uploads.get("Uploads", [])
    parts: set[int] = set()
    marker = 0
    while True:
        page = s3.list_parts(
            Bucket=table.bucket,
            Key=upload["Key"],
            UploadId=upload["UploadId"],
            PartNumberMarker=marker,
        )
        parts.update(int(p["PartNumber"]) for p in page.get("Parts", []))
        if not page.get("IsTruncated"):
            return upload["UploadId"], parts
        marker = int(page["NextPartNumberMarker"])


@dataclass
class FileUpload:
    """What a create of one file blob did, crashed at ``point`` and finished by a fresh
    worker."""

    size: int
    parts: int
    sent_before: list[int]
    done_before: list[int]
    sent_after: list[int]
    upload_id: str | None
    confirmed: set[int]
    recovered: float


async def crash_file_upload(
    *,
    temporal: Client,
    la: LargeAttrClient,
    workers: CrashWorkers,
    table: LargeAttrTable,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    left_over: list[str],
    point: str,
    shortcut: bool,
) -> FileUpload:
    """Create an item whose blob is a ~40 MB file the worker reads (5 MiB parts), kill the
    worker at ``point``, let a fresh one finish; check the item and the invariants."""
    files = tmp_path / "files"
    files.mkdir()
    data = random.Random(4).randbytes(40 * MiB - 12_345)
    path = files / "page.html"
    path.write_bytes(data)
    first_log, second_log = tmp_path / "parts-first.txt", tmp_path / "parts-second.txt"
    queue = workers.new_queue()
    go = tmp_path / f"go-{queue}"
    first = workers.start(queue, pause=point, record_parts=first_log, allow_files=[files])
    fresh = workers.start(queue, record_parts=second_log, allow_files=[files], start_when=go)
    handle = await temporal.start_workflow(
        CreateItemWorkflow.run,
        create_from_file(table, KEY, path),
        id=table.workflow_id(KEY),
        task_queue=queue,
    )
    left_over.append(handle.id)
    marker = await first.wait_marker(timeout=120)
    assert marker["point"] == point.split("#")[0]
    first.kill()
    killed = time.monotonic()
    await asyncio.sleep(1)  # let the server finish any part it had wholly received
    upload_id: str | None = None
    confirmed: set[int] = set()
    if point.startswith("during:UploadPart"):
        upload_id, confirmed = _open_upload(s3, table)
    updated = await expire_lost_activities(temporal, handle.id) if shortcut and not NATURAL else {}
    go.touch()
    restore = asyncio.create_task(restore_activity_options(temporal, handle.id, updated))
    await asyncio.wait_for(handle.result(), timeout=150)
    recovered = time.monotonic() - killed
    await restore

    item = await la.get(table, KEY)
    assert item is not None
    assert await la.read_blob(item.blob("html")) == data
    storage = Storage(s3, dynamodb)
    report = check_storage(storage, table.spec)
    assert report.ok(), list(report.lines())
    assert await check_drift(storage, table.spec, temporal, [table.key(KEY)]) == []
    assert fresh.process.poll() is None, fresh.log_tail()
    return FileUpload(
        size=len(data),
        parts=-(-len(data) // (5 * MiB)),
        sent_before=_parts(first_log, "sent"),
        done_before=_parts(first_log, "done"),
        sent_after=_parts(second_log, "sent"),
        upload_id=upload_id,
        confirmed=confirmed,
        recovered=recovered,
    )


@pytest.mark.faults
@pytest.mark.timeout(300)
async def test_crash_mid_upload_resumes_from_the_parts_s3_confirmed(
    temporal: Client,
    la: LargeAttrClient,
    crash_workers: CrashWorkers,
    table: LargeAttrTable,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    terminate_left_over: list[str],
) -> None:
    """Issue 4: a 40 MB file in 5 MiB parts; the worker is SIGKILLed once S3 confirmed its
    4th part. The retried upload (after the 30 s heartbeat timeout: no shortcut here)
    resumes the same multipart upload and sends only the parts S3 does not have."""
    run = await crash_file_upload(
        temporal=temporal,
        la=la,
        workers=crash_workers,
        table=table,
        s3=s3,
        dynamodb=dynamodb,
        tmp_path=tmp_path,
        left_over=terminate_left_over,
        point="during:UploadPart#4",
        shortcut=False,
    )
    print(
        f"\n[resume] {run.size:,} bytes = {run.parts} parts of 5 MiB. Killed worker: sent "
        f"{len(run.sent_before)} {sorted(run.sent_before)}, S3 confirmed {len(run.confirmed)} "
        f"{sorted(run.confirmed)} of upload {run.upload_id}. Fresh worker: sent "
        f"{len(run.sent_after)} {sorted(run.sent_after)}. Saga done {run.recovered:.1f}s "
        "after the kill."
    )
    assert len(run.done_before) >= 4
    assert set(run.done_before) <= run.confirmed
    assert sorted(run.sent_after) == sorted(set(range(1, run.parts + 1)) - run.confirmed), (
        "the resumed upload must send exactly the parts S3 had not confirmed"
    )
    assert not {1, 2, 3} & set(run.sent_after)


@pytest.mark.faults
@pytest.mark.timeout(300)
async def test_crash_after_multipart_upload_completed_sends_nothing_again(
    temporal: Client,
    la: LargeAttrClient,
    crash_workers: CrashWorkers,
    table: LargeAttrTable,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    terminate_left_over: list[str],
) -> None:
    """CompleteMultipartUpload committed, the activity never returned: the retry finds the
    object intact and uploads nothing."""
    run = await crash_file_upload(
        temporal=temporal,
        la=la,
        workers=crash_workers,
        table=table,
        s3=s3,
        dynamodb=dynamodb,
        tmp_path=tmp_path,
        left_over=terminate_left_over,
        point="during:CompleteMultipartUpload",
        shortcut=True,
    )
    print(f"\n[complete] first worker sent {len(run.sent_before)}, fresh {len(run.sent_after)}")
    assert sorted(run.sent_before) == list(range(1, run.parts + 1))
    assert run.sent_after == []


@pytest.mark.faults
@pytest.mark.timeout(300)
async def test_crash_right_after_multipart_upload_created_leaves_no_open_upload(
    temporal: Client,
    la: LargeAttrClient,
    crash_workers: CrashWorkers,
    table: LargeAttrTable,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    terminate_left_over: list[str],
) -> None:
    """CreateMultipartUpload answered, the worker dies before its heartbeat carried the
    upload id: the retry cannot resume that upload, and must not leave it open."""
    run = await crash_file_upload(
        temporal=temporal,
        la=la,
        workers=crash_workers,
        table=table,
        s3=s3,
        dynamodb=dynamodb,
        tmp_path=tmp_path,
        left_over=terminate_left_over,
        point="during:CreateMultipartUpload",
        shortcut=True,
    )
    assert run.sent_before == []
    assert sorted(run.sent_after) == list(range(1, run.parts + 1))
