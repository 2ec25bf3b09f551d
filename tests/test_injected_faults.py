"""S3 and DynamoDB faults injected between the worker and the moto server (issue 3,
scenario 2): throttling, 500s and 503s, timeouts, connection resets, and the ambiguous
case where the call commits but the worker never hears of it (``phase="after"``).

Faults come from botocore event hooks on the in-process worker's clients (tests/faults.py).
An injected error bypasses botocore's own retries, so each one costs the saga one activity
attempt: that is what is tested here, the saga's retry policy and idempotence.
After every scenario: no dangling reference, no orphan, no drift.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from temporalio.client import Client

from largeattr import (
    AccessDenied,
    Blob,
    ItemAlreadyExists,
    ItemNotFound,
    ItemResult,
    LargeAttrClient,
    LargeAttrError,
    LargeAttrTable,
    SagaFailed,
    VersionConflict,
    keys,
)
from largeattr.transfer import MiB
from largeattr.workflows import CreateItemWorkflow
from tests.conftest import create_from_file, no_change, object_keys, open_uploads, raw_item
from tests.faults import Faults, Rule, client_error
from tests.invariants import (
    TALLY,
    assert_invariants,
    tally_faults,  # noqa: F401 - autouse fixture
    tally_module,  # noqa: F401 - autouse fixture
)

ENDPOINT = "http://127.0.0.1 (injected)"

#: Every transient fault, as the worker's boto3 call would raise it.
KINDS: dict[str, Callable[[], Exception]] = {
    "throttling": lambda: client_error("ThrottlingException", 400),
    "provisioned-throughput": lambda: client_error("ProvisionedThroughputExceededException", 400),
    "slow-down-503": lambda: client_error("SlowDown", 503),
    "service-unavailable-503": lambda: client_error("ServiceUnavailable", 503),
    "internal-error-500": lambda: client_error("InternalError", 500),
    "read-timeout": lambda: ReadTimeoutError(endpoint_url=ENDPOINT),
    "connect-timeout": lambda: ConnectTimeoutError(endpoint_url=ENDPOINT),
    "connection-reset": lambda: ConnectionClosedError(endpoint_url=ENDPOINT),
    "endpoint-unreachable": lambda: EndpointConnectionError(endpoint_url=ENDPOINT),
}
#: Faults that can also strike after the server committed (the response is lost); a
#: connection that never opened cannot commit anything.
AFTER_KINDS = ("internal-error-500", "service-unavailable-503", "read-timeout", "connection-reset")

#: The AWS calls each saga makes, in the worker. A small blob is one conditional PutObject;
#: a HeadObject follows only when the key already holds an object (a retry whose first PUT
#: committed and lost its response, which the "after" kinds make happen).
#: The client reads the item before an update or a delete (with its own clients, before the
#: saga starts: a failure there starts nothing), so the worker makes no GetItem unless a
#: pivot must be settled.
CREATE_CALLS = {"PutObject", "PutItem"}
UPDATE_CALLS = {"PutObject", "UpdateItem", "DeleteObjects"}
DELETE_CALLS = {"DeleteItem", "DeleteObjects"}
ALL_CALLS = CREATE_CALLS | UPDATE_CALLS | DELETE_CALLS

#: A fast subset runs by default; the whole matrix with -m faults.
DEFAULT_COMBOS = {("throttling", "before"), ("read-timeout", "after")}
MATRIX = [
    pytest.param(
        kind,
        phase,
        id=f"{kind}-{phase}",
        marks=() if (kind, phase) in DEFAULT_COMBOS else pytest.mark.faults,
    )
    for phase in ("before", "after")
    for kind in (KINDS if phase == "before" else AFTER_KINDS)
]


def arm(faults: Faults, kind: str, phase: str, calls: set[str] = ALL_CALLS) -> None:
    """Make the next call of each operation fail once."""
    TALLY.record_rules(faults)
    faults.clear()
    for operation in sorted(calls):
        faults.fail(operation, times=1, error=KINDS[kind], phase=phase)


def struck(faults: Faults) -> set[str]:
    return {name.split(".", 1)[1] for name, n in faults.injected.items() if n}


def key_of(result: ItemResult, attribute: str) -> str:
    return next(b.key for b in result.blobs if b.attribute == attribute)


@pytest.mark.parametrize(("kind", "phase"), MATRIX)
async def test_every_call_of_every_saga_fails_once(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    kind: str,
    phase: str,
) -> None:
    """Each AWS call a saga makes fails once (before it is sent, or after it committed):
    every saga still commits exactly once, counters are not applied twice, and nothing is
    left behind."""
    arm(faults, kind, phase)
    created = await la.create(
        table, "doc", {"html": b"<p>v1</p>", "image": b"img-1"}, {"views": 1, "tags": {"a"}}
    )
    assert struck(faults) == CREATE_CALLS
    assert created.version == 1
    assert all(b.created for b in created.blobs)  # a lost PutObject response is still ours

    arm(faults, kind, phase)
    updated = await la.update(table, "doc", {"html": b"<p>v2</p>"}, add={"views": 1, "tags": {"b"}})
    assert struck(faults) == UPDATE_CALLS
    assert updated.version == 2
    assert updated.deleted_objects == (created.blobs[0].uri,)

    arm(faults, kind, phase)
    attrs = await la.update(table, "doc", set={"title": "t"}, add={"views": 5})
    assert struck(faults) == {"UpdateItem"}
    assert attrs.version == 3

    item = await la.get(table, "doc")
    assert item is not None
    assert item.version == 3
    assert item.attributes["views"] == 7  # 1 + 1 + 5: no ADD applied twice
    assert item.attributes["tags"] == {"a", "b"}
    assert await la.read_blob(item.blob("html")) == b"<p>v2</p>"
    assert await la.read_blob(item.blob("image")) == b"img-1"
    assert object_keys(s3, table) == {key_of(updated, "html"), key_of(created, "image")}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])

    arm(faults, kind, phase)
    deleted = await la.delete(table, "doc")
    assert struck(faults) == DELETE_CALLS
    assert len(deleted.deleted_objects) == 2
    assert raw_item(dynamodb, table, table.key("doc")) is None
    assert object_keys(s3, table) == set()
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ lost responses


@pytest.mark.parametrize("kind", ["read-timeout", "connection-reset"])
async def test_pivot_response_lost_twice_commits_once(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    kind: str,
) -> None:
    """The pivot commits, its response is lost; the retry's answer (condition failed:
    already done) is lost too; the third attempt must still recognise its own write."""
    faults.fail("PutItem", times=2, error=KINDS[kind], phase="after")
    created = await la.create(table, "doc", {"html": b"v1"}, {"views": 1})
    assert created.version == 1
    faults.fail("UpdateItem", times=2, error=KINDS[kind], phase="after")
    updated = await la.update(table, "doc", {"html": b"v2"}, add={"views": 1, "tags": {"x"}})
    assert updated.version == 2
    assert updated.deleted_objects == (created.blobs[0].uri,)
    raw = raw_item(dynamodb, table, table.key("doc"))
    assert raw is not None
    assert raw["views"] == {"N": "2"}  # the ADD ran once, not three times
    assert raw["la_version"] == {"N": "2"}
    assert raw["la_saga"] == {"S": updated.saga_id}
    assert faults.calls["dynamodb.UpdateItem"] == 3
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])
    faults.fail("DeleteItem", times=2, error=KINDS[kind], phase="after")
    deleted = await la.delete(table, "doc")
    assert deleted.deleted_objects == (updated.blobs[0].uri,)
    assert object_keys(s3, table) == set()
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_upload_response_lost_then_pivot_refused_is_compensated(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """PutObject commits but the worker sees a reset; the retry finds the object and takes
    it as its own; then the pivot is refused: compensation must delete that object."""
    await la.create(table, "doc", {"html": b"v1"})
    faults.fail("PutObject", times=1, error=KINDS["connection-reset"], phase="after")
    faults.fail("UpdateItem", times=-1, error=lambda: client_error("AccessDenied", 403))
    with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(AccessDenied):
        await la.update(table, "doc", {"html": b"v2", "image": b"new image"})
    assert faults.injected["after:s3.PutObject"] == 1
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_lost_responses_during_compensation(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """Compensation's own calls fail (before and after committing); it is retried until
    done and leaves exactly the state before the saga."""
    await la.create(table, "doc", {"html": b"v1"})
    faults.fail("PutItem", times=-1, error=lambda: client_error("AccessDenied", 403))
    faults.fail("ListMultipartUploads", times=1, error=KINDS["throttling"])
    faults.fail("DeleteObject", times=1, error=KINDS["read-timeout"], phase="after")
    with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(AccessDenied):
        await la.create(table, "doc", {"html": b"replacement"}, overwrite=True)
    assert faults.injected["before:s3.ListMultipartUploads"] == 1
    assert faults.injected["after:s3.DeleteObject"] == 1
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ what a failure says


async def test_retried_failure_is_recorded_with_its_aws_cause(
    allowed_dir: Path,
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """While a step is being retried, Temporal shows why (the Web UI's pending activity).
    That must be the AWS error, not a failure to serialise it. (A regular activity: the
    upload of a file the worker reads; a local activity retries inside the workflow task.)"""
    await la.create(table, "doc", {"html": b"v1"})
    source = allowed_dir / f"{table.table_name}.html"
    source.write_bytes(b"v2")
    faults.fail("PutObject", times=2, error=lambda: client_error("SlowDown", 503))
    handle = await la.start_update(table, "doc", {"html": Blob.worker_file(source)})
    message = ""
    for _ in range(100):
        description = await handle.describe()
        pending = [
            p for p in description.raw_description.pending_activities if p.HasField("last_failure")
        ]
        if pending:
            message = pending[0].last_failure.message
            break
        await asyncio.sleep(0.05)
    assert "SlowDown" in message, message
    assert "recursion" not in message, message
    await la.result(handle)
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


async def test_transient_error_on_a_client_read_has_a_sane_cause(
    la: LargeAttrClient, table: LargeAttrTable
) -> None:
    """A read raises the AWS error; its ``__cause__`` chain must not loop on itself (a
    self-cause is what makes Temporal fail to serialise the error in a worker)."""
    await la.create(table, "doc", {"html": b"v1"})
    client_side = Faults().attach(la.storage.dynamodb)
    client_side.fail("GetItem", times=1, error=KINDS["throttling"])
    with pytest.raises(Exception, match="ThrottlingException") as raised:
        await la.get(table, "doc")
    assert raised.value.__cause__ is not raised.value


@pytest.mark.faults
async def test_fault_that_outlasts_the_retries_fails_the_saga_cleanly(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """S3 keeps saying SlowDown to the second upload: after the retry policy's 10 attempts
    the saga fails with SagaFailed naming the AWS error, and the first upload is
    compensated."""
    await la.create(table, "doc", {"html": b"v1"})
    faults.fail(
        "PutObject",
        times=-1,
        error=lambda: client_error("SlowDown", 503),
        match=lambda p: "attr=image/" in p.get("Key", ""),
    )
    started = time.monotonic()
    with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(SagaFailed) as raised:
        await la.update(table, "doc", {"html": b"v2", "image": b"never stored"})
    print(f"gave up after {time.monotonic() - started:.1f}s: {raised.value}")
    assert faults.injected["before:s3.PutObject"] == 10
    assert "SlowDown" in str(raised.value)
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ calls outliving their attempt


@pytest.mark.faults
async def test_pivot_that_outlives_its_attempt_commits_once(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """The pivot's UpdateItem stalls past the activity's 10 s start-to-close timeout; the
    retry commits; the stalled call then goes out as a zombie (the SDK does not always
    stop a timed-out thread). The version condition must refuse it: one commit, one ADD."""
    await la.create(table, "doc", {"html": b"v1"}, {"views": 0})
    faults.slow("UpdateItem", 11.0, times=1)
    answers = faults.add(Rule("UpdateItem", "after", -1))  # counts the answers, fails nothing
    started = time.monotonic()
    result = await la.update(table, "doc", {"html": b"v2"}, add={"views": 1})
    assert result.version == 2
    while answers.hits < 2 and time.monotonic() - started < 15:
        await asyncio.sleep(0.1)  # until the zombie's answer came back, if it goes out
    print(f"UpdateItem answers: {answers.hits} (2: the stalled call went out after all)")
    raw = raw_item(dynamodb, table, table.key("doc"))
    assert raw is not None
    assert raw["views"] == {"N": "1"}
    assert raw["la_version"] == {"N": "2"}
    assert raw["la_saga"] == {"S": result.saga_id}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


@pytest.mark.faults
async def test_upload_that_outlives_its_saga(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
) -> None:
    """An upload stalls past the activity's 30 s timeout; the retry uploads, the pivot is
    refused, compensation deletes the object. If the stalled PutObject still goes out
    afterwards, no saga is left to clean up what it writes: it can only be that object,
    the checker must report it and reconcile must remove it. (With the SDK used here the
    timed-out thread is interrupted before it sends; a request already on the wire that
    the server commits late cannot be simulated with client-side hooks.)"""
    await la.create(table, "doc", {"html": b"v1"})
    live = object_keys(s3, table)
    stalled = keys.object_key(
        table.spec, table.key("doc"), "html", hashlib.sha256(b"v2").hexdigest()
    )
    faults.slow("PutObject", 35.0, times=1)
    answers = faults.add(Rule("PutObject", "after", -1))  # counts the answers
    faults.fail("UpdateItem", times=-1, error=lambda: client_error("AccessDenied", 403))
    started = time.monotonic()
    with pytest.raises(AccessDenied):
        await la.update(table, "doc", {"html": b"v2"})
    await asyncio.sleep(max(0.0, 38.0 - (time.monotonic() - started)))
    zombie = object_keys(s3, table) - live
    print(f"PutObject answers: {answers.hits}; left after the saga: {sorted(zombie)}")
    assert zombie <= {stalled}
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"], expected_orphans=zombie)
    if zombie:
        reconciled = await la.reconcile(table, grace_seconds=0)
        assert reconciled.objects_deleted == 1
    assert object_keys(s3, table) == live
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ multipart transfers

#: With the tests' TransferConfig (multipart above 6 MiB, 5 MiB parts, server-side copy
#: part by part above 10 MiB): a file of three parts (5 + 5 + 1 MiB), a stream promoted by
#: one CopyObject, and a stream promoted by three UploadPartCopy calls.
FILE_SIZE = 11 * MiB
COPY_SIZE = 8 * MiB
PART_COPY_SIZE = 12 * MiB
#: One fault kind per phase: S3's throttle before the call is sent, a lost response after.
MULTIPART_KINDS = {"before": "slow-down-503", "after": "read-timeout"}


@dataclass(frozen=True)
class TransferFault:
    """One AWS call of a multipart transfer that fails once.

    ``source``: "file", a file under the worker's allowed directory (hashed, then uploaded
    by the worker in parts, resuming from ListParts on a retry); "copy" / "part-copy", a
    one-pass stream the client stages, promoted by the worker with CopyObject /
    UploadPartCopy; "stage", the client's own multipart upload of a one-pass stream (it
    cannot be read again: the saga fails with SagaFailed and is compensated).
    ``which``: "first", "second" (the call after the upload, verifying it) or "part-2".
    ``needs``: a call made to fail once before, so that ``operation`` is reached at all."""

    source: str
    operation: str
    which: str = "first"
    needs: str | None = None

    @property
    def size(self) -> int:
        return {"copy": COPY_SIZE, "part-copy": PART_COPY_SIZE}.get(self.source, FILE_SIZE)

    def matcher(self) -> Callable[[dict[str, Any]], bool]:
        if self.which == "part-2":
            return lambda params: int(params.get("PartNumber", 0)) == 2
        seen: Counter[str] = Counter()
        wanted = {"first": 1, "second": 2}[self.which]

        def nth(params: dict[str, Any]) -> bool:
            seen["calls"] += 1  # called under the Faults lock, only until the rule fired
            return seen["calls"] == wanted

        return nth


TRANSFER_FAULTS = [
    TransferFault("file", "HeadObject"),  # is the object already there?
    TransferFault("file", "CreateMultipartUpload"),
    TransferFault("file", "UploadPart", "part-2"),
    TransferFault("file", "ListParts", needs="UploadPart"),  # only a resumed upload lists
    TransferFault("file", "CompleteMultipartUpload"),
    TransferFault("file", "HeadObject", "second"),  # is the completed object intact?
    TransferFault("file", "ListMultipartUploads"),  # leftover uploads of the key
    TransferFault("copy", "CopyObject"),
    TransferFault("part-copy", "UploadPartCopy", "part-2"),
    TransferFault("part-copy", "CompleteMultipartUpload"),
    TransferFault("stage", "UploadPart", "part-2"),
]
DEFAULT_TRANSFER_FAULT = ("file", "CompleteMultipartUpload", "first", "after")
TRANSFER_MATRIX = [
    pytest.param(
        fault,
        phase,
        id=f"{fault.source}-{fault.operation}"
        + ("" if fault.which == "first" else f"-{fault.which}")
        + f"-{phase}",
        marks=()
        if (fault.source, fault.operation, fault.which, phase) == DEFAULT_TRANSFER_FAULT
        else pytest.mark.faults,
    )
    for fault in TRANSFER_FAULTS
    for phase in ("before", "after")
]


def pattern(size: int, seed: int) -> bytes:
    """Bytes that do not repeat within a part (a repeated block would hide a part-order bug)."""
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(2048))
    return b"".join(
        hashlib.sha256(f"{seed}/{n}".encode()).digest() + block
        for n in range(size // (len(block) + 32) + 1)
    )[:size]


@pytest.mark.parametrize(("fault", "phase"), TRANSFER_MATRIX)
async def test_every_call_of_a_multipart_transfer_fails_once(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    task_queue: str,
    allowed_dir: Path,
    fault: TransferFault,
    phase: str,
) -> None:
    """A blob too big for one PUT: each S3 call of its transfer fails once, before it is
    sent or after it committed. The saga still stores exactly the source's bytes once (or,
    for a stream that cannot be read again, fails with its typed error and leaves nothing),
    and no multipart upload stays open."""
    data = pattern(fault.size, TRANSFER_FAULTS.index(fault))
    error = KINDS[MULTIPART_KINDS[phase]]
    injected = faults
    if fault.source == "stage":
        injected = Faults().attach(la.storage.s3)  # the client stages its own stream
    if fault.needs:
        faults.fail(fault.needs, times=1, error=KINDS["throttling"], match=fault.matcher())
    injected.fail(fault.operation, times=1, error=error, phase=phase, match=fault.matcher())

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 1_000_000):
            yield data[start : start + 1_000_000]

    result: ItemResult | None = None
    started = time.monotonic()
    if fault.source == "stage":
        with no_change(s3, dynamodb, table, table.key("doc")), pytest.raises(SagaFailed):
            await la.create(table, "doc", {"html": chunks()})
    elif fault.source == "file":
        path = allowed_dir / f"{table.table_name}.bin"
        path.write_bytes(data)
        result = await temporal.execute_workflow(
            CreateItemWorkflow.run,
            create_from_file(table, "doc", path),
            id=table.workflow_id("doc"),
            task_queue=task_queue,
        )
        path.unlink()
    else:
        result = await la.create(table, "doc", {"html": chunks()})
    print(f"{fault} {phase}: {time.monotonic() - started:.1f}s, calls {dict(injected.calls)}")
    if injected is not faults:
        TALLY.record_rules(injected)  # the faults fixture's rules are tallied on teardown
    assert injected.injected[f"{phase}:s3.{fault.operation}"] >= 1, "the fault never fired"
    if fault.needs:
        assert faults.injected[f"before:s3.{fault.needs}"] >= 1
    assert open_uploads(s3, table) == []
    if result is None:
        assert object_keys(s3, table) == set()
    else:
        assert result.version == 1
        stored = result.blobs[0]
        assert stored.created  # a lost response is still this saga's write
        assert stored.meta.size == len(data)
        assert stored.meta.sha256 == hashlib.sha256(data).hexdigest()
        item = await la.get(table, "doc")
        assert item is not None
        assert await la.read_blob(item.blob("html")) == data
        assert object_keys(s3, table) == {stored.key}  # no staged copy, no second object
    await assert_invariants(s3, dynamodb, temporal, table, ["doc"])


# ------------------------------------------------------------------ random faults


@dataclass
class Chaos:
    """Fails AWS calls at random (seeded), at most ``cap`` times per distinct call, so every
    saga can still finish within its retry policy."""

    rng: random.Random
    rate: float
    cap: int = 2
    per_call: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    _chosen: threading.local = field(default_factory=threading.local)

    def rules(self) -> list[Rule]:
        return [
            Rule("*", phase, -1, error=self._error, match=self._decider(phase))
            for phase in ("before", "after")
        ]

    def _decider(self, phase: str) -> Callable[[dict[str, Any]], bool]:
        def decide(params: dict[str, Any]) -> bool:
            # Runs under the Faults lock: the RNG and the counters need no lock of their own.
            signature = (phase, repr(sorted((k, str(v)[:200]) for k, v in params.items())))
            if self.per_call[signature] >= self.cap or self.rng.random() >= self.rate:
                return False
            kinds = list(KINDS) if phase == "before" else list(AFTER_KINDS)
            kind = self.rng.choice(kinds)
            self.per_call[signature] += 1
            self.by_kind[f"{phase}:{kind}"] += 1
            self._chosen.kind = kind
            return True

        return decide

    def _error(self) -> Exception:
        return KINDS[self._chosen.kind]()


@dataclass
class Model:
    """What an item must look like, predicted from the operations that succeeded."""

    exists: bool = False
    version: int = 0
    html: bytes | None = None
    image: bytes | None = None
    views: int = 0


def contents(rng: random.Random) -> bytes:
    # A small pool, so identical content and reverts to earlier content happen often.
    return f"<html>page {rng.randrange(4)}</html>".encode()


async def run_chain(
    la: LargeAttrClient, table: LargeAttrTable, key: str, rng: random.Random, steps: int
) -> tuple[Model, list[str]]:
    model, log = Model(), []
    for _ in range(steps):
        if not model.exists:
            op = rng.choice(["create", "create", "create", "update-missing", "delete-missing"])
        else:
            op = rng.choice(
                [
                    "update-html",
                    "update-image",
                    "update-attributes",
                    "update-stale",
                    "create-existing",
                    "overwrite",
                    "delete",
                ]
            )
        expected: type[LargeAttrError] | None = None
        try:
            if op == "create":
                html = contents(rng)
                await la.create(table, key, {"html": html}, {"views": 1})
                model = Model(True, 1, html, None, 1)
            elif op == "update-missing":
                expected = ItemNotFound
                await la.update(table, key, set={"views": 1})
            elif op == "delete-missing":
                expected = ItemNotFound
                await la.delete(table, key)
            elif op == "update-html":
                html = contents(rng)
                result = await la.update(table, key, {"html": html}, add={"views": 1})
                model.html, model.views, model.version = html, model.views + 1, model.version + 1
                assert result.version == model.version
            elif op == "update-image":
                image = None if model.image and rng.random() < 0.5 else contents(rng)
                await la.update(table, key, {"image": image}, expected_version=model.version)
                model.image, model.version = image, model.version + 1
            elif op == "update-attributes":
                await la.update(table, key, add={"views": 2})
                model.views, model.version = model.views + 2, model.version + 1
            elif op == "update-stale":
                expected = VersionConflict
                await la.update(table, key, {"html": b"stale"}, expected_version=model.version - 1)
            elif op == "create-existing":
                expected = ItemAlreadyExists
                await la.create(table, key, {"html": b"dup"})
            elif op == "overwrite":
                html = contents(rng)
                await la.create(table, key, {"html": html}, {"views": 0}, overwrite=True)
                model = Model(True, model.version + 1, html, None, 0)
            else:
                await la.delete(table, key)
                model = Model()
            failure: LargeAttrError | None = None
        except LargeAttrError as err:
            failure = err
        outcome = type(failure).__name__ if failure else "ok"
        assert type(failure) is (expected or type(None)), f"{key} {op}: {outcome} {failure}"
        log.append(f"{op}: {outcome}")
    return model, log


@pytest.mark.parametrize(
    ("items", "steps", "rate"),
    [
        pytest.param(3, 4, 0.15, id="12-operations"),
        pytest.param(8, 5, 0.2, id="40-operations", marks=pytest.mark.faults),
    ],
)
async def test_random_faults_across_mixed_operations(
    la: LargeAttrClient,
    table: LargeAttrTable,
    faults: Faults,
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    items: int,
    steps: int,
    rate: float,
) -> None:
    seed = 20240611 + items
    chaos = Chaos(random.Random(seed), rate)
    for rule in chaos.rules():
        faults.add(rule)
    plans = random.Random(seed + 1)
    started = time.monotonic()
    item_keys = [f"item-{i}" for i in range(items)]
    chains = await asyncio.gather(
        *(run_chain(la, table, key, random.Random(plans.random()), steps) for key in item_keys)
    )
    TALLY.faults.update({f"{k} (random)": n for k, n in chaos.by_kind.items()})
    faults.clear()  # the checks below run on clean clients anyway
    elapsed = time.monotonic() - started
    injected = sum(chaos.by_kind.values())
    print(
        f"\nseed {seed}: {items * steps} operations in {elapsed:.1f}s, "
        f"{injected} faults injected: {dict(sorted(chaos.by_kind.items()))}"
    )
    for key, (_, log) in zip(item_keys, chains, strict=True):
        print(f"  {key}: {', '.join(log)}")
    assert injected >= items * steps // 4, "too few faults to mean anything"
    for key, (model, _) in zip(item_keys, chains, strict=True):
        item = await la.get(table, key)
        if not model.exists:
            assert item is None, key
            continue
        assert item is not None, key
        assert item.version == model.version, key
        assert item.attributes.get("views") == model.views, key
        assert await la.read_blob(item.blob("html")) == model.html, key
        if model.image is None:
            assert "image" not in item.blobs, key
        else:
            assert await la.read_blob(item.blob("image")) == model.image, key
    await assert_invariants(s3, dynamodb, temporal, table, item_keys)
