"""What an operator sees in the Temporal Web UI, in a real headless Chromium (tests/ui/): a
committed, a compensated and a running saga, step by step, and the workflow list filtered
by the search attributes the sagas carry; and those search attributes registered on the
server, by the embedded stack and by ``largeattr setup --search-attributes``.

Screenshots of every page are kept in test-artifacts/ui/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import IndexedValueType, PendingActivityState
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, WorkflowHandle

from largeattr import AwsConfig, Blob, ItemAlreadyExists, LargeAttrClient, LargeAttrTable
from largeattr.cli import run as cli_run
from largeattr.devstack import Stack, connect_when_serving, start_temporal, stop_process
from largeattr.provision import ensure_table
from largeattr.search_attributes import SEARCH_ATTRIBUTES
from largeattr.transfer import TransferConfig
from tests.conftest import BUCKET
from tests.faults import Faults, Rule
from tests.ui import browser as ui_browser
from tests.ui.browser import (
    Browser,
    EventRow,
    activity_summaries,
    event_rows,
    list_rows,
    list_steps,
    list_url,
    pending_rows,
    search_attributes,
    text,
    workflow_steps,
)

#: As ListSearchAttributes names the types of SEARCH_ATTRIBUTES.
REGISTERED = {
    "LaTable": "INDEXED_VALUE_TYPE_KEYWORD",
    "LaItem": "INDEXED_VALUE_TYPE_KEYWORD",
    "LaOperation": "INDEXED_VALUE_TYPE_KEYWORD",
    "LaOutcome": "INDEXED_VALUE_TYPE_KEYWORD",
    "LaBytesWritten": "INDEXED_VALUE_TYPE_INT",
}


async def registered(temporal: Client, namespace: str) -> dict[str, str]:
    """Our search attributes registered on ``namespace``, with their types."""
    listed = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return {
        name: IndexedValueType.Name(kind)
        for name, kind in listed.custom_attributes.items()
        if name in REGISTERED
    }


# ---------------------------------------------------------------- search attributes


async def test_the_embedded_stack_registers_the_search_attributes(temporal: Client) -> None:
    assert set(SEARCH_ATTRIBUTES) == set(REGISTERED)
    assert await registered(temporal, temporal.namespace) == REGISTERED


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dev server as a real cluster starts: none of our search attributes; a second
    namespace ``other``."""
    process, port, _ = start_temporal(
        tmp_path_factory.mktemp("bare"),
        port=None,
        ui=False,
        search_attributes={},
        extra_args=["--namespace", "other"],
    )
    yield f"127.0.0.1:{port}"
    stop_process(process)


def registered_on(address: str, namespace: str) -> dict[str, str]:
    async def look() -> dict[str, str]:
        return await registered(await connect_when_serving(address), namespace)

    return asyncio.run(look())


def test_setup_registers_the_search_attributes_once(
    bare_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["setup", "--search-attributes", "--address", bare_server]
    assert registered_on(bare_server, "default") == {}
    assert cli_run(argv) == 0
    assert registered_on(bare_server, "default") == REGISTERED
    first = capsys.readouterr().out.splitlines()
    assert first == [
        f"search attribute {name} ({kind}) on default: added"
        for name, kind in SEARCH_ATTRIBUTES.items()
    ]
    assert cli_run(argv) == 0  # idempotent
    second = capsys.readouterr().out.splitlines()
    assert second == [line.replace("added", "already registered") for line in first]
    assert registered_on(bare_server, "default") == REGISTERED
    assert registered_on(bare_server, "other") == {}  # only the namespace asked for


def test_setup_says_what_to_set_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_run(["setup"]) == 2
    assert "--search-attributes to register the search attributes" in capsys.readouterr().err
    assert cli_run(["setup", "--table", "t", "--search-attributes"]) == 2
    assert "table 't' needs --bucket, --prefix, --large" in capsys.readouterr().err


def test_setup_refuses_a_search_attribute_registered_with_another_type(
    bare_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def register_outcome_as_int() -> None:
        temporal = await connect_when_serving(bare_server)
        await temporal.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="other",
                search_attributes={"LaOutcome": IndexedValueType.INDEXED_VALUE_TYPE_INT},
            )
        )

    asyncio.run(register_outcome_as_int())
    argv = ["setup", "--search-attributes", "--address", bare_server, "--namespace", "other"]
    assert cli_run(argv) == 1  # a conflict (largeattr.cliout.EXIT_CODES)
    error = capsys.readouterr().err
    assert (
        "SearchAttributeConflict: search attribute LaOutcome is registered on namespace other "
        "as INT, largeattr needs Keyword" in error
    )
    # Nothing half-done: the others were not registered either.
    assert registered_on(bare_server, "other") == {"LaOutcome": "INDEXED_VALUE_TYPE_INT"}


# ---------------------------------------------------------------- the Web UI


def test_the_browser_tests_skip_only_where_chromium_cannot_be_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ui_browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # apt-get would need root
    assert ui_browser.unavailable() == (
        f"no Chromium at {tmp_path / 'no-chromium'} and no apt-get as root to install it: "
        "run .ci/install-browser as root (Debian's chromium package)"
    )
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert ui_browser.unavailable() == (
        "node is not installed: the Web UI tests drive Chromium through playwright-core"
    )


HTML = b"<p>hello</p>"
IMAGE = b"\x89PNG" + b"x" * 11_996  # 12.0 KB: still inline


@dataclass
class Saga:
    handle: WorkflowHandle[Any, Any]
    url: str


@dataclass
class Shown:
    """What the Web UI showed for this module's sagas, and the sagas themselves."""

    table: LargeAttrTable
    sagas: dict[str, Saga]
    read: dict[str, list[dict[str, Any]]]
    last_event: dict[str, int]


#: The list page, filtered by each query ({table}: the module's table), and the sagas it
#: must show. LaTable, LaItem and LaOperation are set when the client starts a saga (with
#: LaOutcome "running"); the saga upserts LaOutcome and LaBytesWritten when it ends.
LIST_QUERIES: dict[str, tuple[str, set[str]]] = {
    "by-workflow-id": (
        'WorkflowId STARTS_WITH "largeattr/{table}/"',
        {"committed", "compensated", "running"},
    ),
    "by-table": ('LaTable = "{table}"', {"committed", "compensated", "running"}),
    "by-item": ('LaTable = "{table}" AND LaItem = "pk=running"', {"running"}),
    "by-operation": (
        'LaTable = "{table}" AND LaOperation = "create"',
        {"committed", "compensated", "running"},
    ),
    "by-outcome-committed": ('LaTable = "{table}" AND LaOutcome = "committed"', {"committed"}),
    "by-outcome-compensated": (
        'LaTable = "{table}" AND LaOutcome = "compensated"',
        {"compensated"},
    ),
    "by-outcome-running": ('LaTable = "{table}" AND LaOutcome = "running"', {"running"}),
    "by-bytes-written": (
        'LaTable = "{table}" AND LaBytesWritten > 0',
        {"committed", "compensated"},
    ),
}


async def until_listed(temporal: Client, query: str, run_ids: set[str]) -> None:
    """Visibility is eventually consistent: wait until the server lists exactly these runs."""
    deadline = time.monotonic() + 20
    while True:
        listed = {w.run_id async for w in temporal.list_workflows(query)}
        if listed == run_ids:
            return
        assert time.monotonic() < deadline, f"{query}: listed {listed}, want {run_ids}"
        await asyncio.sleep(0.2)


async def last_event_id(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return history.events[-1].event_id


@pytest.fixture(scope="module")
async def shown(
    browser: Browser,
    web_ui: Stack,
    temporal: Client,
    task_queue: str,
    aws: AwsConfig,
    test_transfer: TransferConfig,
    dynamodb: Any,
    worker_faults: Faults,
    allowed_dir: Path,
) -> Shown:
    """Three sagas on a fresh table, then one browser run over their pages and the lists:
    committed (create, two blobs); compensated (another writer creates the item between the
    uploads and the pivot: the pivot is refused, the uploads are deleted); running (its
    html, a file the worker uploads in a regular activity, stalled while the browser looks;
    its image, inline, uploaded in a local activity)."""
    name = f"t-ui-{uuid.uuid4().hex[:8]}"
    table = LargeAttrTable(
        table_name=name,
        partition_key="pk",
        large_attributes=("html", "image"),
        bucket=BUCKET,
        prefix=f"p/{name}",
    )
    ensure_table(dynamodb, table)
    blobs = {"html": HTML, "image": IMAGE}
    gate, stalled = threading.Event(), threading.Event()

    def create_directly(_: dict[str, Any]) -> None:
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "compensated"}})

    def stall(_: dict[str, Any]) -> None:
        stalled.set()
        gate.wait(120)  # released once the browser is done

    worker_faults.clear()
    worker_faults.add(
        Rule(
            "PutItem",
            "before",
            1,
            action=create_directly,
            match=lambda p: p["Item"]["pk"] == {"S": "compensated"},
        )
    )
    # Every attempt stalls (an attempt times out after SMALL_UPLOAD, and is retried).
    worker_faults.add(
        Rule(
            "PutObject",
            "before",
            -1,
            action=stall,
            match=lambda p: "/pk=running/attr=html/" in p["Key"],
        )
    )
    sagas: dict[str, Saga] = {}
    async with LargeAttrClient(
        temporal, task_queue=task_queue, aws=aws, transfer=test_transfer
    ) as la:
        try:
            page = allowed_dir / f"{name}.html"
            page.write_bytes(HTML)
            for key in ("running", "committed", "compensated"):
                if key == "running":
                    sent = {"html": Blob.worker_file(page), "image": IMAGE}
                    handle = await la.start_create(table, key, blobs=sent)
                else:
                    handle = await la.start_create(table, key, blobs=blobs)
                sagas[key] = Saga(
                    handle, web_ui.workflow_url(handle.id, handle.result_run_id or "")
                )
                if key == "committed":
                    await la.result(handle)
                elif key == "compensated":
                    with pytest.raises(ItemAlreadyExists, match="already exists"):
                        await la.result(handle)
            assert await asyncio.to_thread(stalled.wait, 30), "the running saga never uploaded"
            await until_only_stalled(sagas["running"].handle)
            run_ids = {key: saga.handle.result_run_id or "" for key, saga in sagas.items()}
            steps = []
            last_event = {}
            for key, saga in sagas.items():
                last_event[key] = await last_event_id(saga.handle)
                steps += workflow_steps(saga.url, key, last_event[key])
            for query_name, (query, keys) in LIST_QUERIES.items():
                query = query.format(table=name)
                await until_listed(temporal, query, {run_ids[key] for key in keys})
                url = list_url(web_ui.ui_url, temporal.namespace, query)
                steps += list_steps(url, query_name, [run_ids[key] for key in sorted(keys)])
            started = time.monotonic()
            read = await asyncio.to_thread(browser.run, steps)
            print(f"browser: {len(steps)} steps in {time.monotonic() - started:.1f}s")
            for step, ms in browser.timings:
                print(f"{ms:>6} ms {step}")
        finally:
            gate.set()
            worker_faults.clear()
        if "running" in sagas:
            assert (await la.result(sagas["running"].handle)).version == 1
    return Shown(table, sagas, read, last_event)


async def until_only_stalled(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the running saga's history stops growing: the image upload's marker is
    recorded, the html upload (the last event) is pending and started."""
    deadline = time.monotonic() + 30
    while True:
        events = (await handle.fetch_history()).events
        marked = any(e.HasField("marker_recorded_event_attributes") for e in events)
        last = events[-1].activity_task_scheduled_event_attributes
        pending = (await handle.describe()).raw_description.pending_activities
        started = any(
            p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED for p in pending
        )
        if marked and last.activity_type.name == "largeattr.upload_blob" and started:
            return
        assert time.monotonic() < deadline, "the running saga did not reach its stalled upload"
        await asyncio.sleep(0.1)


def our_search_attributes(shown: Shown, name: str) -> dict[str, Any]:
    """The search attributes of ours the page shows (the server adds BuildIds)."""
    return {k: v for k, v in search_attributes(shown.read, name).items() if k.startswith("La")}


LOCAL = "Local Activity"


def uploads_then(rows: list[EventRow], *then: tuple[str, str]) -> None:
    """The steps of a create with both blobs inline: the two uploads, run side by side as
    local activities (in the order they finished), then ``then``, local activities too."""
    steps = activity_summaries(rows)
    assert sorted(steps[:2]) == [
        (LOCAL, "largeattr.upload_blob", f"upload html ({len(HTML)} B, inline)"),
        (LOCAL, "largeattr.upload_blob", "upload image (12.0 KB, inline)"),
    ]
    assert steps[2:] == [(LOCAL, kind, summary) for kind, summary in then]


def test_a_committed_create_reads_as_its_steps(shown: Shown) -> None:
    rows = event_rows(shown.read, "committed")
    assert [row.event_id for row in rows] == list(range(1, shown.last_event["committed"] + 1))
    assert text(shown.read, "committed-status") == "COMPLETED"
    uploads_then(rows, ("largeattr.put_item", "pivot: put item (if absent)"))
    # One workflow task ran the whole saga: no activity task went through the server.
    assert [row.event_type for row in rows].count("Workflow Task Completed") == 1
    assert rows[0].event_type == "Workflow Execution Started"
    assert rows[0].details["Summary"] == (
        f"create {shown.table.table_name} pk=committed: html (12 B), image (12.0 KB)"
    )
    assert rows[-1].event_type == "Workflow Execution Completed"
    assert text(shown.read, "committed-summary") == rows[0].details["Summary"]
    assert text(shown.read, "committed-details").splitlines()[0] == (
        f"create item pk=committed of table {shown.table.table_name}"
    )
    assert text(shown.read, "committed-current-details").splitlines() == [
        "create pk=committed: after pivot",
        "now: committed",
        "objects written so far: 2 (12.0 KB new)",
    ]
    assert our_search_attributes(shown, "committed") == {
        "LaTable": shown.table.table_name,
        "LaItem": "pk=committed",
        "LaOperation": "create",
        "LaOutcome": "committed",
        "LaBytesWritten": len(HTML) + len(IMAGE),
    }


def test_a_compensated_create_shows_its_compensation_and_the_reason(shown: Shown) -> None:
    rows = event_rows(shown.read, "compensated")
    assert [row.event_id for row in rows] == list(range(1, shown.last_event["compensated"] + 1))
    assert text(shown.read, "compensated-status") == "FAILED"
    uploads_then(
        rows,
        ("largeattr.put_item", "pivot: put item (if absent)"),
        ("largeattr.compensate", "compensate: remove up to 2 objects this saga wrote"),
    )
    failed = rows[-1]
    assert failed.event_type == "Workflow Execution Failed"
    assert "already exists" in failed.details["Failure Message"]
    assert failed.details["Failure Message"].endswith("Compensation deleted 2 of 2 objects.")
    assert text(shown.read, "compensated-current-details").splitlines() == [
        "create pk=compensated: before pivot",
        "now: compensated",
        "objects written so far: 2 (12.0 KB new)",
        "compensation: deleted 2 of 2 objects",
    ]
    assert our_search_attributes(shown, "compensated") == {
        "LaTable": shown.table.table_name,
        "LaItem": "pk=compensated",
        "LaOperation": "create",
        "LaOutcome": "compensated",
        "LaBytesWritten": len(HTML) + len(IMAGE),
    }


def test_a_running_saga_shows_the_step_it_waits_on(shown: Shown) -> None:
    rows = event_rows(shown.read, "running")
    assert [row.event_id for row in rows] == list(range(1, shown.last_event["running"] + 1))
    assert text(shown.read, "running-status") == "RUNNING"
    # The image (inline) went in a local activity; the html (a file the worker reads) in
    # regular ones, with heartbeats: hashed, then uploaded (stalled).
    assert sorted(activity_summaries(rows)) == [
        ("Activity Task Scheduled", "largeattr.prepare_blob", "hash html (12 B)"),
        ("Activity Task Scheduled", "largeattr.upload_blob", "upload html (12 B)"),
        (LOCAL, "largeattr.upload_blob", "upload image (12.0 KB, inline)"),
    ]
    assert text(shown.read, "running-pending").split() == ["Pending", "Activities", "1"]
    (pending,) = pending_rows(shown.read, "running")
    assert pending.attempt.startswith("ATTEMPT ")
    assert pending.details["Activity Type"] == "largeattr.upload_blob"
    scheduled = next(row for row in rows if row.event_id == pending.event_id)
    assert scheduled.details["Summary"] == "upload html (12 B)"
    assert text(shown.read, "running-summary") == (
        f"create {shown.table.table_name} pk=running: html (12 B), image (12.0 KB)"
    )
    # What the saga reports while it runs (workflow.set_current_details).
    assert text(shown.read, "running-current-details").splitlines() == [
        "create pk=running: before pivot",
        "now: upload html (12 B), progress in its heartbeats",
        "objects written so far: 2 (12.0 KB new)",
    ]
    assert our_search_attributes(shown, "running") == {
        "LaTable": shown.table.table_name,
        "LaItem": "pk=running",
        "LaOperation": "create",
        "LaOutcome": "running",
    }


@pytest.mark.parametrize("query_name", list(LIST_QUERIES))
def test_the_list_filtered_by_a_query_shows_these_sagas(shown: Shown, query_name: str) -> None:
    _, keys = LIST_QUERIES[query_name]
    status = {"committed": "COMPLETED", "compensated": "FAILED", "running": "RUNNING"}
    want = sorted(
        (status[key], shown.sagas[key].handle.id, shown.sagas[key].handle.result_run_id or "")
        for key in keys
    )
    rows = list_rows(shown.read, query_name)
    assert sorted((r["Status"], r["Workflow ID"], r["Run ID"]) for r in rows) == want
    assert {r["Type"] for r in rows} == {"largeattr.CreateItem"}


def test_screenshots_are_kept(shown: Shown, browser: Browser) -> None:
    kept = {path.name for path in Path(browser.screenshots).glob("*.png")}
    tabs = ("history", "user-metadata", "search-attributes")
    pages = [f"{key}-{tab}.png" for key in shown.sagas for tab in tabs]
    assert set(pages + [f"{name}-list.png" for name in LIST_QUERIES]) <= kept
