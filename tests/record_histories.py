"""Record one workflow history of each saga kind, for tests/test_replay.py.

    .venv/bin/python tests/record_histories.py

Starts its own Temporal dev server and moto server on free 127.0.0.1 ports, runs a worker in
this process, runs every kind in ``KINDS`` once and writes ``tests/histories/<kind>.json``
(only the kinds named on the command line, if any; never those in ``FROZEN``). Each
recorded history is checked against its kind (workflow type, outcome, the activities that
must have run) before it is written, so a recording that missed its path fails here.
"""

from __future__ import annotations

import asyncio
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

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = Path(__file__).resolve().parent / "histories"
#: A history does not hold its workflow id, and the sagas check theirs: kept beside them.
WORKFLOW_IDS = HISTORIES / "workflow_ids.json"


@dataclass(frozen=True)
class Kind:
    """What a recorded history must show: the workflow, how it ended, what it scheduled."""

    workflow_type: str
    completed: bool
    activities: frozenset[str]


def kind(workflow_type: str, completed: bool, *activities: str) -> Kind:
    return Kind(
        f"largeattr.{workflow_type}", completed, frozenset(f"largeattr.{a}" for a in activities)
    )


KINDS: dict[str, Kind] = {
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
    "reconcile_batched": kind("Reconcile", True, "reconcile_chunk"),
}
#: Kept as recorded by an earlier version of this script: today's code no longer makes such
#: a history (the per-page reconcile, before the ``batched-reconcile`` patch), yet runs of
#: it may still be open, so it must go on replaying.
FROZEN = frozenset({"reconcile"})


def workflow_type(history: WorkflowHistory) -> str:
    first = history.events[0]
    return str(first.workflow_execution_started_event_attributes.workflow_type.name)


def scheduled_activities(history: WorkflowHistory) -> set[str]:
    return {
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


def completed(history: WorkflowHistory) -> bool:
    return history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


def mismatch(name: str, history: WorkflowHistory) -> str | None:
    """Why ``history`` is not a history of kind ``name``, or None if it is."""
    expected = KINDS[name]
    if workflow_type(history) != expected.workflow_type:
        return f"{name}: workflow {workflow_type(history)}, expected {expected.workflow_type}"
    if completed(history) != expected.completed:
        return f"{name}: completed={completed(history)}, expected {expected.completed}"
    missing = expected.activities - scheduled_activities(history)
    if missing:
        return f"{name}: never scheduled {sorted(missing)}"
    return None


# ---------------------------------------------------------------- recording


async def record(temporal: Client, aws: Any) -> dict[str, WorkflowHistory]:
    """Run every kind once on a fresh table; the histories by kind."""
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
            await saga("create_inline", la.start_create(table, "doc", inline, {"title": "v1"}))
            await saga("create_by_reference", la.start_create(table, "ref", {"html": b"r" * 2048}))
            await saga("create_stream", la.start_create(table, "stream", {"html": chunks()}))
            await saga(
                "create_overwrite",
                la.start_create(table, "ref", {"html": b"<p>overwritten</p>"}, overwrite=True),
            )
            await saga(
                "update_replace_and_set",
                la.start_update(table, "doc", {"html": b"<p>v2</p>"}, set={"title": "v2"}),
            )
            await saga("update_remove_blob", la.start_update(table, "doc", {"image": None}))
            await saga("delete", la.start_delete(table, "doc"))
            await saga(
                "create_refused_exists",
                la.start_create(table, "ref", {"html": b"<p>again</p>"}),
                ItemAlreadyExists,
            )
            await saga(
                "update_refused_conflict",
                la.start_update(table, "ref", set={"title": "late"}, expected_version=1),
                VersionConflict,
            )
            # Another writer creates the item between the saga's read and its pivot.
            faults.before("PutItem", racing_writer)
            await saga(
                "create_compensated",
                la.start_create(table, "raced", {"html": b"<p>compensated</p>"}),
                ItemAlreadyExists,
            )
            faults.clear()

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


async def main() -> None:
    from largeattr import AwsConfig
    from largeattr.devstack import (
        EMULATOR_AWS,
        EMULATOR_REGION,
        connect_when_serving,
        start_moto,
        start_temporal,
        stop_process,
    )

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
    if set(histories) != set(KINDS) - FROZEN:
        problems.append(f"recorded {sorted(histories)}, expected {sorted(set(KINDS) - FROZEN)}")
    if problems:
        raise SystemExit("not written:\n" + "\n".join(problems))
    only = set(sys.argv[1:]) or set(histories)  # e.g. `record_histories.py reconcile_batched`
    HISTORIES.mkdir(exist_ok=True)
    ids = json.loads(WORKFLOW_IDS.read_text()) if WORKFLOW_IDS.exists() else {}
    for name, history in sorted(histories.items()):
        if name not in only:
            continue
        path = HISTORIES / f"{name}.json"
        path.write_text(history.to_json() + "\n")
        ids[name] = history.workflow_id
        print(f"{path.relative_to(ROOT)}: {len(history.events)} events")
    WORKFLOW_IDS.write_text(json.dumps(dict(sorted(ids.items())), indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script: `tests.faults` sits beside this file
    asyncio.run(main())
