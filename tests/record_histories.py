"""Record one workflow history of each saga kind, for tests/test_replay.py.

    .venv/bin/python tests/record_histories.py            # adds missing fast_<kind>.json
    .venv/bin/python tests/record_histories.py --replace  # also rewrites existing ones

Starts its own Temporal dev server and moto server on free 127.0.0.1 ports, runs a worker in
this process, runs every kind in ``RECORDED`` once and writes ``tests/histories/<kind>.json``.
Each recorded history is checked against its kind (workflow type, outcome, the activities
that must have run, and how) before it is written, so a recording that missed its path fails
here.

Two generations of histories live side by side. The kinds without a prefix were recorded
before the fast path (``FAST_PATH``: short steps as local activities): today's code cannot
record them again, since every new saga takes the patched path, so they are kept as they
are (this script as of commit 43618b5 recorded them). The ``fast_`` kinds are the same sagas
on the fast path. Reconcile and CleanItem do not depend on the patch: one history each.
``reconcile_batched`` is the batched reconcile pass; the per-page ``reconcile`` is frozen.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from largeattr.workflows.saga import FAST_PATH

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = Path(__file__).resolve().parent / "histories"
#: A history does not hold its workflow id, and the sagas check theirs: kept beside them.
WORKFLOW_IDS = HISTORIES / "workflow_ids.json"
#: The marker names the Python SDK's core writes for ``workflow.patched`` and for a local
#: activity's result (sdk-core: ``PATCH_MARKER_NAME``, ``LOCAL_ACTIVITY_MARKER_NAME``).
PATCH_MARKER = "core_patch"
LOCAL_ACTIVITY_MARKER = "core_local_activity"
#: The saga workflows, the ones ``FAST_PATH`` changed.
SAGAS = ("largeattr.CreateItem", "largeattr.UpdateItem", "largeattr.DeleteItem")


@dataclass(frozen=True)
class Kind:
    """What a recorded history must show: the workflow, how it ended, what it ran and how."""

    workflow_type: str
    completed: bool
    #: Run as regular activities (scheduled).
    activities: frozenset[str]
    #: Run as local activities (a marker).
    local: frozenset[str] = frozenset()
    #: Run in neither form.
    never: frozenset[str] = frozenset()
    #: Took the ``FAST_PATH`` patch (its marker is in the history); False: it must not have.
    fast: bool = False


def kind(
    workflow_type: str,
    completed: bool,
    *activities: str,
    local: tuple[str, ...] = (),
    never: tuple[str, ...] = (),
    fast: bool = False,
) -> Kind:
    def names(short: tuple[str, ...]) -> frozenset[str]:
        return frozenset(f"largeattr.{a}" for a in short)

    return Kind(
        f"largeattr.{workflow_type}", completed, names(activities), names(local), names(never), fast
    )


def fast(workflow_type: str, completed: bool, *activities: str, local: tuple[str, ...]) -> Kind:
    """A saga on the fast path: it never reads the item itself (a plain create does not
    need to, an overwrite, update or delete takes the item as the client read it)."""
    return kind(workflow_type, completed, *activities, local=local, never=("read_item",), fast=True)


KINDS: dict[str, Kind] = {
    # Recorded before the fast path: every step a regular activity, each saga reads first.
    "create_inline": kind("CreateItem", True, "read_item", "upload_blob", "put_item"),
    "create_by_reference": kind(
        "CreateItem", True, "read_item", "prepare_blob", "upload_blob", "put_item"
    ),
    "create_stream": kind(
        "CreateItem", True, "read_item", "stage_blob", "promote_blob", "put_item"
    ),
    "create_overwrite": kind(
        "CreateItem", True, "read_item", "upload_blob", "put_item", "delete_objects"
    ),
    "update_replace_and_set": kind(
        "UpdateItem", True, "read_item", "upload_blob", "update_item", "delete_objects"
    ),
    "update_remove_blob": kind("UpdateItem", True, "read_item", "update_item", "delete_objects"),
    "delete": kind("DeleteItem", True, "read_item", "delete_item", "delete_objects"),
    "create_refused_exists": kind("CreateItem", False, "read_item"),
    "update_refused_conflict": kind("UpdateItem", False, "read_item"),
    "create_compensated": kind(
        "CreateItem", False, "read_item", "upload_blob", "put_item", "compensate"
    ),
    "reconcile": kind("Reconcile", True, "find_orphans"),
    "clean_item": kind("CleanItem", True, "delete_unreferenced"),
    # The fast path: short steps as local activities; moving a large blob stays regular.
    "fast_create_inline": fast("CreateItem", True, local=("upload_blob", "put_item")),
    "fast_create_by_reference": fast(
        "CreateItem", True, "prepare_blob", "upload_blob", local=("put_item",)
    ),
    "fast_create_stream": fast(
        "CreateItem", True, "stage_blob", "promote_blob", local=("put_item",)
    ),
    "fast_create_overwrite": fast(
        "CreateItem", True, local=("upload_blob", "put_item", "delete_objects")
    ),
    "fast_update_replace_and_set": fast(
        "UpdateItem", True, local=("upload_blob", "update_item", "delete_objects")
    ),
    "fast_update_remove_blob": fast("UpdateItem", True, local=("update_item", "delete_objects")),
    "fast_delete": fast("DeleteItem", True, local=("delete_item", "delete_objects")),
    # No read: the upload runs, the pivot's condition refuses, the upload is compensated.
    "fast_create_refused_exists": fast(
        "CreateItem", False, local=("upload_blob", "put_item", "compensate")
    ),
    # Refused on the version the client read, before any step.
    "fast_update_refused_conflict": fast("UpdateItem", False, local=()),
    "fast_create_compensated": fast(
        "CreateItem", False, local=("upload_blob", "put_item", "compensate")
    ),
    # Born after the fast path (no old twin); small objects: every step a local activity.
    "adopt_item": fast("AdoptItem", True, local=()),
    "reconcile_batched": kind("Reconcile", True, "reconcile_chunk"),
}
#: Kept as recorded by an earlier version of this script: today's code no longer makes such
#: a history (the per-page reconcile, before the ``batched-reconcile`` patch), yet runs of
#: it may still be open, so it must go on replaying.
FROZEN = frozenset({"reconcile"})

#: The kinds this script records today: the fast path's. The others are kept as recorded.
RECORDED = tuple(
    name
    for name in KINDS
    if name.startswith("fast_") or name in ("adopt_item", "reconcile_batched", "clean_item")
)


def workflow_type(history: WorkflowHistory) -> str:
    first = history.events[0]
    return str(first.workflow_execution_started_event_attributes.workflow_type.name)


def scheduled_activities(history: WorkflowHistory) -> set[str]:
    return {
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


def markers(history: WorkflowHistory, name: str) -> list[Any]:
    return [
        event.marker_recorded_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and event.marker_recorded_event_attributes.marker_name == name
    ]


def local_activities(history: WorkflowHistory) -> set[str]:
    """The local activities the history records (each marker's ``data`` names its type)."""
    return {
        json.loads(marker.details["data"].payloads[0].data)["activity_type"]
        for marker in markers(history, LOCAL_ACTIVITY_MARKER)
    }


def took_fast_path(history: WorkflowHistory) -> bool:
    """True if the run called ``workflow.patched(FAST_PATH)`` (not replaying): its marker."""
    return any(FAST_PATH.encode() in m.SerializeToString() for m in markers(history, PATCH_MARKER))


def completed(history: WorkflowHistory) -> bool:
    return history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


def mismatch(name: str, history: WorkflowHistory) -> str | None:
    """Why ``history`` is not a history of kind ``name``, or None if it is."""
    expected = KINDS[name]
    if workflow_type(history) != expected.workflow_type:
        return f"{name}: workflow {workflow_type(history)}, expected {expected.workflow_type}"
    if completed(history) != expected.completed:
        return f"{name}: completed={completed(history)}, expected {expected.completed}"
    if took_fast_path(history) != expected.fast:
        return f"{name}: {PATCH_MARKER} marker for {FAST_PATH!r}: {not expected.fast}"
    scheduled, local = scheduled_activities(history), local_activities(history)
    if missing := expected.activities - scheduled:
        return f"{name}: never scheduled {sorted(missing)}"
    if missing := expected.local - local:
        return f"{name}: never ran as a local activity {sorted(missing)}"
    if ran := expected.never & (scheduled | local):
        return f"{name}: ran {sorted(ran)}, which this path skips"
    return None


# ---------------------------------------------------------------- recording


async def record(temporal: Client, aws: Any) -> dict[str, WorkflowHistory]:
    """Run every kind in ``RECORDED`` once on a fresh table; the histories by kind."""
    from largeattr import (
        ItemAlreadyExists,
        LargeAttrClient,
        LargeAttrTable,
        Storage,
        VersionConflict,
    )
    from largeattr.activities import SagaActivities
    from largeattr.messages import CleanItemInput
    from largeattr.provision import ensure_bucket, ensure_table
    from largeattr.stepbystep import StepByStep
    from largeattr.transfer import TransferConfig
    from largeattr.worker import build_worker
    from largeattr.workflows import CleanItemWorkflow
    from tests.faults import Faults

    s3, dynamodb = aws.clients()
    table = LargeAttrTable(
        table_name="replay-docs",
        partition_key="pk",
        large_attributes=("html", "image"),
        bucket="largeattr-replay",
        prefix="docs",
    )
    ensure_bucket(s3, table.bucket)
    ensure_table(dynamodb, table)

    queue = f"record-{uuid.uuid4().hex[:8]}"
    worker_s3, worker_dynamodb = aws.clients()
    faults = Faults().attach(worker_s3, worker_dynamodb)
    activities = SagaActivities(worker_s3, worker_dynamodb, TransferConfig())
    worker, executor = build_worker(
        temporal, task_queue=queue, activities=activities, shutdown_grace=2.0
    )
    # A low inline threshold keeps the by-reference blob (and so the recorded file) small.
    transfer = TransferConfig(inline_threshold=1024)
    histories: dict[str, WorkflowHistory] = {}

    async def saga(name: str, start: Awaitable[Any], error: type[Exception] | None = None) -> None:
        """Run one saga to its end (``error``: the error it must end with); keep its history."""
        handle = await start
        try:
            await la.result(handle)
        except Exception as err:
            if error is None or not isinstance(err, error):
                raise
        else:
            if error is not None:
                raise AssertionError(f"{name}: expected {error.__name__}, it succeeded")
        histories[name] = await handle.fetch_history()

    def chunks() -> Iterator[bytes]:
        yield from (b"<p>streamed ", b"in three ", b"chunks</p>")

    def racing_writer(_: dict[str, Any]) -> None:
        dynamodb.put_item(TableName=table.table_name, Item={"pk": {"S": "raced"}})

    async with worker:
        la = LargeAttrClient(temporal, task_queue=queue, aws=aws, transfer=transfer)
        try:
            inline = {"html": b"<p>inline</p>", "image": b"\x89PNG tiny"}
            await saga("fast_create_inline", la.start_create(table, "doc", inline, {"title": "v1"}))
            await saga(
                "fast_create_by_reference", la.start_create(table, "ref", {"html": b"r" * 2048})
            )
            await saga("fast_create_stream", la.start_create(table, "stream", {"html": chunks()}))
            await saga(
                "fast_create_overwrite",
                la.start_create(table, "ref", {"html": b"<p>overwritten</p>"}, overwrite=True),
            )
            await saga(
                "fast_update_replace_and_set",
                la.start_update(table, "doc", {"html": b"<p>v2</p>"}, set={"title": "v2"}),
            )
            await saga("fast_update_remove_blob", la.start_update(table, "doc", {"image": None}))
            await saga("fast_delete", la.start_delete(table, "doc"))
            await saga(
                "fast_create_refused_exists",
                la.start_create(table, "ref", {"html": b"<p>again</p>"}),
                ItemAlreadyExists,
            )
            await saga(
                "fast_update_refused_conflict",
                la.start_update(table, "ref", set={"title": "late"}, expected_version=1),
                VersionConflict,
            )
            # Another writer creates the item just before the saga's pivot writes it.
            faults.before("PutItem", racing_writer)
            await saga(
                "fast_create_compensated",
                la.start_create(table, "raced", {"html": b"<p>compensated</p>"}),
                ItemAlreadyExists,
            )
            faults.clear()

            # An item as pynamodb_mate writes it: an s3:// URI ending in md5=<md5 of the bytes>.
            mate = b"<p>written by pynamodb_mate</p>"
            mate_key = f"mate/pk=mate/attr=html/md5={hashlib.md5(mate).hexdigest()}"
            s3.put_object(Bucket=table.bucket, Key=mate_key, Body=mate)
            dynamodb.put_item(
                TableName=table.table_name,
                Item={"pk": {"S": "mate"}, "html": {"S": f"s3://{table.bucket}/{mate_key}"}},
            )
            await saga("adopt_item", la.start_adopt(table, "mate"))

            StepByStep(Storage(s3, dynamodb), table).put_blobs("ref", {"image": b"orphan"})
            result = await la.reconcile(table, grace_seconds=0)
            if result.objects_deleted != 1:
                raise AssertionError(f"reconcile deleted {result.objects_deleted}, expected 1")
            reconcile = temporal.get_workflow_handle(f"largeattr-reconcile/{table.table_name}")
            histories["reconcile_batched"] = await reconcile.fetch_history()
            # A CleanItem runs when a reconcile's lock outlives its lease: run one as such.
            written = StepByStep(Storage(s3, dynamodb), table).put_blobs(
                "ref", {"image": b"another orphan"}
            )
            orphan = written.attributes()["image"].removeprefix(f"s3://{table.bucket}/")
            clean = await temporal.start_workflow(
                CleanItemWorkflow.run,
                CleanItemInput(table.spec, table.key("ref"), (orphan,)),
                id=table.workflow_id("ref"),
                task_queue=queue,
            )
            await clean.result()
            histories["clean_item"] = await clean.fetch_history()
        finally:
            await la.close()
    executor.shutdown(wait=False)
    return histories


async def main(replace: bool) -> None:
    from largeattr import AwsConfig
    from largeattr.devstack import (
        EMULATOR_AWS,
        EMULATOR_REGION,
        connect_when_serving,
        start_moto,
        start_temporal,
        stop_process,
    )

    kept = [n for n in RECORDED if (HISTORIES / f"{n}.json").exists()] if not replace else []
    if len(kept) == len(RECORDED):
        print(f"every kind is recorded ({len(kept)}); --replace records them again")
        return
    with tempfile.TemporaryDirectory(prefix="largeattr-record-") as scratch:
        temporal_process, port, _ = start_temporal(Path(scratch) / "temporal", port=None, ui=False)
        moto_process, moto_port = start_moto(port=None, log=Path(scratch) / "moto.log")
        try:
            aws = AwsConfig(
                endpoint_url=f"http://127.0.0.1:{moto_port}",
                region_name=EMULATOR_REGION,
                aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
                aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
            )
            temporal = await connect_when_serving(f"127.0.0.1:{port}")
            histories = await record(temporal, aws)
        finally:
            stop_process(moto_process)
            stop_process(temporal_process)

    problems = [p for name, h in histories.items() if (p := mismatch(name, h))]
    if set(histories) != set(RECORDED):
        problems.append(f"recorded {sorted(histories)}, expected {sorted(RECORDED)}")
    if problems:
        raise SystemExit("not written:\n" + "\n".join(problems))
    HISTORIES.mkdir(exist_ok=True)
    ids = json.loads(WORKFLOW_IDS.read_text()) if WORKFLOW_IDS.exists() else {}
    for name, history in sorted(histories.items()):
        path = HISTORIES / f"{name}.json"
        if name in kept:
            print(f"{path.relative_to(ROOT)}: kept (--replace records it again)")
            continue
        path.write_text(history.to_json() + "\n")
        ids[name] = history.workflow_id
        print(f"{path.relative_to(ROOT)}: {len(history.events)} events")
    WORKFLOW_IDS.write_text(json.dumps(dict(sorted(ids.items())), indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--replace",
        action="store_true",
        help="rewrite fast_ histories already recorded (only once no saga of theirs can run)",
    )
    sys.path.insert(0, str(ROOT))  # run as a script: `tests.faults` sits beside this file
    asyncio.run(main(parser.parse_args().replace))
