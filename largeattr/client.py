"""The async client: create, update, delete and read items whose large attributes live in S3.

    async with await LargeAttrClient.connect("127.0.0.1:7233") as la:
        result = await la.create(docs, "id-1", blobs={"html": b"<b>hi</b>"})
        item = await la.get(docs, "id-1")
        html = await la.read_blob(item.blob("html"))

Each write starts one saga workflow whose id names the table and the item, so two
operations on one item never overlap: the second waits for the first (``on_busy="wait"``,
the default) or fails at once with ``ItemBusy`` (``on_busy="fail"``).

Small blobs travel inline in the workflow input. Larger ones stay in this process: the
client serves their upload activities on a task queue of its own, so the bytes go from
here straight to S3 and only a handle passes through Temporal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, Literal, ParamSpec, cast

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import PayloadCodec
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)

from largeattr import adopt, dynamo, keys, search_attributes
from largeattr.adopt import AdoptReport
from largeattr.blobinputs import Blob, Holder, blob_inputs
from largeattr.config import DEFAULT_TASK_QUEUE, AwsConfig, connect_temporal
from largeattr.errors import (
    InvalidInput,
    ItemBusy,
    LargeAttrError,
    SagaFailed,
)
from largeattr.failures import with_our_failures
from largeattr.items import size_after
from largeattr.messages import (
    AdoptItemInput,
    AdoptResult,
    BlobInput,
    CreateItemInput,
    DeleteItemInput,
    ItemChanges,
    ItemKey,
    ItemResult,
    ReconcileInput,
    ReconcileResult,
    SagaOptions,
    UpdateItemInput,
)
from largeattr.read import BlobRef, Item, Progress, Reader
from largeattr.sources import SourceRegistry
from largeattr.storage import Storage
from largeattr.table import KeyInput, LargeAttrTable
from largeattr.telemetry import BusinessErrorsAreBenign
from largeattr.transfer.config import TransferConfig, human_size

OnBusy = Literal["wait", "fail"]


def user_error(err: BaseException) -> BaseException:
    """The error a caller can catch for a failed workflow: the class the saga raised (the
    client's failure converter, ``largeattr.failures``, has already rebuilt it)."""
    cause: BaseException | None = err
    while isinstance(cause, WorkflowFailureError | ActivityError):
        cause = cause.cause
    if isinstance(cause, LargeAttrError):
        return type(cause)(cause.message, **cause.details)
    if isinstance(cause, ApplicationError):
        return SagaFailed(f"{cause.type}: {cause.message}")
    if isinstance(cause, CancelledError | TerminatedError | TimeoutError):
        return SagaFailed(f"the saga did not finish: {cause}")
    return err


P = ParamSpec("P")


def _waiting(
    start: Callable[Concatenate[LargeAttrClient, P], Awaitable[WorkflowHandle[Any, ItemResult]]],
) -> Callable[Concatenate[LargeAttrClient, P], Coroutine[Any, Any, ItemResult]]:
    """``start_create`` -> ``create``: the same arguments; starts the saga, waits for it and
    returns its result (or raises the error class it failed with)."""

    async def run(self: LargeAttrClient, /, *args: P.args, **kwargs: P.kwargs) -> ItemResult:
        return await self.result(await start(self, *args, **kwargs))

    run.__name__ = run.__qualname__ = start.__name__.removeprefix("start_")
    run.__doc__ = f"{start.__doc__}\n\nWaits for the saga; ``{start.__name__}`` returns its handle."
    return run


class LargeAttrClient:
    """Starts the sagas and waits for them; reads items and blobs directly."""

    def __init__(
        self,
        temporal: Client,
        *,
        task_queue: str = DEFAULT_TASK_QUEUE,
        aws: AwsConfig | None = None,
        transfer: TransferConfig | None = None,
        s3: Any = None,
        dynamodb: Any = None,
        run_worker: bool = False,
        worker_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``run_worker=True`` runs a saga worker in this process, on ``task_queue``, and
        starts sagas eagerly: the server hands the new workflow's first task back in the
        start call's response (``request_eager_start``), and this worker runs the saga's
        short steps in it, without waiting for a poll. Other workers on the queue still take
        over anything this process does not finish (its retries, a restart). Use it where
        the caller is long-lived (a service), not in a short script; ``worker_options`` are
        ``largeattr.worker.build_worker`` keywords (``max_concurrent_activities``...)."""
        if s3 is None or dynamodb is None:
            s3, dynamodb = (aws or AwsConfig.from_env()).clients()
        self.temporal = with_our_failures(temporal)
        self.task_queue = task_queue
        self.transfer = transfer or TransferConfig()
        self.storage = Storage(s3, dynamodb, self.transfer)
        self.reader = Reader(self.storage)
        self.sources = SourceRegistry()
        host = keys.escape(socket.gethostname())
        self.blob_queue = f"{task_queue}/blobs/{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._blob_worker: Any = None
        self._blob_worker_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self._run_worker = run_worker
        self._worker_options = dict(worker_options or {})
        self._worker: Any = None
        self._worker_task: asyncio.Task[None] | None = None
        self._worker_executor: ThreadPoolExecutor | None = None

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        namespace: str | None = None,
        *,
        task_queue: str = DEFAULT_TASK_QUEUE,
        aws: AwsConfig | None = None,
        transfer: TransferConfig | None = None,
        run_worker: bool = False,
        worker_options: Mapping[str, Any] | None = None,
        codec: PayloadCodec | Literal["env"] | None = "env",
        tracing: str | None = None,
    ) -> LargeAttrClient:
        """``codec``: encrypt payloads (``largeattr.codec.EncryptionCodec``); by default the
        keyring ``LARGEATTR_CODEC_KEY_FILE`` or ``LARGEATTR_CODEC_KEYS`` names, if any.
        ``tracing``: OpenTelemetry (``largeattr.tracing``; default ``$LARGEATTR_TRACING``)."""
        temporal = await connect_temporal(address, namespace, codec=codec, tracing=tracing)
        return cls(
            temporal,
            task_queue=task_queue,
            aws=aws,
            transfer=transfer,
            run_worker=run_worker,
            worker_options=worker_options,
        )

    async def __aenter__(self) -> LargeAttrClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for sagas started here that still use this process's blobs, then stop."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._blob_worker is not None:
            await self._blob_worker.shutdown()
            self._blob_worker = None
        if self._blob_worker_task is not None:
            await asyncio.gather(self._blob_worker_task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._worker is not None:
            await self._worker.shutdown()
            self._worker = None
        if self._worker_task is not None:
            await asyncio.gather(self._worker_task, return_exceptions=True)
            self._worker_task = None
        if self._worker_executor is not None:
            self._worker_executor.shutdown(wait=False)

    # ------------------------------------------------------------------ writes

    async def start_create(
        self,
        table: LargeAttrTable,
        key: KeyInput,
        blobs: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = False,
        options: SagaOptions | None = None,
        on_busy: OnBusy = "wait",
        on_progress: Progress | None = None,
    ) -> WorkflowHandle[Any, ItemResult]:
        """Create an item; ``ItemAlreadyExists`` if it exists (unless ``overwrite``).

        ``on_progress(done_bytes, total_bytes or None)`` follows the blobs this process
        uploads (those too big to travel inline), from the thread that uploads."""
        from largeattr.workflows import CreateItemWorkflow

        item_key = table.key(key)
        plain = table.attributes(attributes, "create")
        with self._holding() as held:
            blob_inputs, removed = await self._blob_inputs(table, blobs or {}, held, on_progress)
            if removed:
                raise InvalidInput(f"create: {removed} are None; leave them out instead")
            dynamo.check_item_size(
                size_after(
                    table.spec,
                    item_key,
                    None,
                    ItemChanges(plain, (), tuple(b.attribute for b in blob_inputs), True),
                ),
                f"item {keys.item_path(table.spec, item_key)}",
            )
            request = CreateItemInput(
                table=table.spec,
                key=item_key,
                blobs=blob_inputs,
                attributes=plain,
                overwrite=overwrite,
                options=options or table.options,
            )
            summary = _summary("create", table, item_key, blob_inputs, plain)
            # A plain create reads nothing: its pivot's condition (absent) is the check.
            reads = (
                ItemChanges(plain, (), tuple(b.attribute for b in blob_inputs), True)
                if overwrite
                else None
            )
            return await self._start(
                CreateItemWorkflow.run, request, table, item_key, summary, on_busy, held, reads
            )

    async def start_update(
        self,
        table: LargeAttrTable,
        key: KeyInput,
        blobs: Mapping[str, Any] | None = None,
        *,
        set: Mapping[str, Any] | None = None,
        remove: Sequence[str] = (),
        add: Mapping[str, Any] | None = None,
        delete: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        options: SagaOptions | None = None,
        on_busy: OnBusy = "wait",
        on_progress: Progress | None = None,
    ) -> WorkflowHandle[Any, ItemResult]:
        """Update an item: replace blobs (None removes one), SET / REMOVE / ADD / DELETE
        plain attributes. ``ItemNotFound`` if it is missing; ``VersionConflict`` if
        ``expected_version`` is given and stale. ``on_progress`` as in ``start_create``."""
        from largeattr.workflows import UpdateItemWorkflow

        item_key = table.key(key)
        if isinstance(remove, str):
            raise InvalidInput("remove= takes a list of attribute names, not one string")
        for name in remove:
            table.check_plain_name(name, "update remove")
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInput("expected_version must be an int (the item's version)")
        with self._holding() as held:
            blob_inputs, removed = await self._blob_inputs(table, blobs or {}, held, on_progress)
            request = UpdateItemInput(
                table=table.spec,
                key=item_key,
                blobs=blob_inputs,
                remove_blobs=tuple(removed),
                set_attributes=table.attributes(set, "update set"),
                remove_attributes=tuple(remove),
                add_attributes=table.attributes(add, "update add"),
                delete_from_sets=table.attributes(delete, "update delete"),
                expected_version=expected_version,
                options=options or table.options,
            )
            touched = [
                *request.set_attributes,
                *request.remove_attributes,
                *request.add_attributes,
                *request.delete_from_sets,
            ]
            if len(touched) != len({*touched}):
                raise InvalidInput(
                    "update: an attribute appears in more than one of set/remove/add/delete"
                )
            if not (blob_inputs or removed or touched):
                raise InvalidInput("update: nothing to change; pass blobs or attributes")
            dynamo.check_item_size(
                size_after(
                    table.spec,
                    item_key,
                    None,
                    ItemChanges(
                        {**request.set_attributes, **request.add_attributes},
                        (),
                        tuple(b.attribute for b in blob_inputs),
                        True,
                    ),
                ),
                f"item {keys.item_path(table.spec, item_key)}",
            )
            summary = _summary(
                "update", table, item_key, blob_inputs, request.set_attributes, removed
            )
            reads = ItemChanges(
                {**request.set_attributes, **request.add_attributes},
                request.remove_attributes + request.remove_blobs,
                tuple(b.attribute for b in blob_inputs),
            )
            return await self._start(
                UpdateItemWorkflow.run, request, table, item_key, summary, on_busy, held, reads
            )

    async def start_delete(
        self,
        table: LargeAttrTable,
        key: KeyInput,
        *,
        expected_version: int | None = None,
        options: SagaOptions | None = None,
        on_busy: OnBusy = "wait",
    ) -> WorkflowHandle[Any, ItemResult]:
        """Delete an item, then its objects. ``ItemNotFound`` if it is missing."""
        from largeattr.workflows import DeleteItemWorkflow

        item_key = table.key(key)
        request = DeleteItemInput(
            table=table.spec,
            key=item_key,
            expected_version=expected_version,
            options=options or table.options,
        )
        summary = _summary("delete", table, item_key, (), {})
        return await self._start(
            DeleteItemWorkflow.run, request, table, item_key, summary, on_busy, [], ItemChanges()
        )

    # The same calls, waiting for the saga's result (one parameter list for both forms).
    create = _waiting(start_create)
    update = _waiting(start_update)
    delete = _waiting(start_delete)

    async def result(self, handle: WorkflowHandle[Any, ItemResult]) -> ItemResult:
        """Wait for a saga started with ``start_*``; raises the error class it failed with."""
        try:
            return await handle.result()
        except WorkflowFailureError as err:
            raise user_error(err) from err

    async def reconcile(
        self,
        table: LargeAttrTable,
        *,
        grace_seconds: int = 900,
        upload_grace_seconds: int = 86_400,
        keep_old_versions: bool | None = None,
        dry_run: bool = False,
    ) -> ReconcileResult:
        """Delete objects under the table's prefix that no item references (older than
        ``grace_seconds``), one item at a time under that item's workflow id."""
        from largeattr.workflows import ReconcileWorkflow

        keep = (
            (not table.options.delete_old_objects)
            if keep_old_versions is None
            else (keep_old_versions)
        )
        return await self.temporal.execute_workflow(
            ReconcileWorkflow.run,
            ReconcileInput(
                table=table.spec,
                grace_seconds=grace_seconds,
                upload_grace_seconds=upload_grace_seconds,
                keep_old_versions=keep,
                dry_run=dry_run,
            ),
            id=f"largeattr-reconcile/{keys.escape(table.table_name)}",
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"reconcile {table.table_name} (s3://{table.bucket}/{table.prefix}/)",
        )

    # ------------------------------------------------------------------ adopt

    async def start_adopt(
        self,
        table: LargeAttrTable,
        key: KeyInput,
        *,
        options: SagaOptions | None = None,
        on_busy: OnBusy = "wait",
    ) -> WorkflowHandle[Any, AdoptResult]:
        """Start adopting one item pynamodb_mate wrote (``largeattr.adopt``): its objects
        are copied to their content-addressed keys, the item gets la_meta and a version,
        the old objects are deleted (``options.delete_old_objects=False`` keeps them)."""
        return await self._start_adopt(table, table.key(key), options, on_busy)

    async def adopt(
        self,
        table: LargeAttrTable,
        key: KeyInput,
        *,
        options: SagaOptions | None = None,
        on_busy: OnBusy = "wait",
    ) -> AdoptResult:
        """Adopt one item and wait. An item with nothing of pynamodb_mate's left (adopted
        already) or that adopt cannot read (skipped, with the reason) starts no saga."""
        item_key = table.key(key)
        state = await asyncio.to_thread(self.storage.items.read_item, table.spec, item_key)
        plan = adopt.plan(table.spec, item_key, state)
        if plan.outcome != adopt.ADOPT:
            return AdoptResult(
                plan.outcome, table.table_name, item_key, state.version, reason=plan.reason
            )
        handle = await self._start_adopt(table, item_key, options, on_busy)
        try:
            return await handle.result()
        except WorkflowFailureError as err:
            raise user_error(err) from err

    async def adopt_table(
        self,
        table: LargeAttrTable,
        *,
        rate: float | None = None,
        concurrency: int = 8,
        dry_run: bool = False,
        options: SagaOptions | None = None,
    ) -> AdoptReport:
        """Adopt every item of the table that pynamodb_mate wrote: the scan runs here, page
        by page; each item needing it gets its own saga, at most ``rate`` started per
        second and ``concurrency`` at once. Items adopted already, or that adopt cannot
        read, start nothing. ``dry_run`` writes nothing: it reports what would be adopted,
        and refuses what a HEAD already shows to be missing or corrupt. Run it again after
        an interruption: adopted items report as ``already``."""
        if rate is not None and not rate > 0:
            raise InvalidInput("rate must be a positive number of items per second")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput("concurrency must be a positive int")
        spec = table.spec
        report = AdoptReport(dry_run=dry_run)
        started = time.monotonic()
        next_start = started
        gate = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()
        items = adopt.scan_items(self.storage.dynamodb, spec)
        while (raw := await asyncio.to_thread(next, items, None)) is not None:
            item_key, _, plan = adopt.planned(spec, raw)
            name = keys.item_path(spec, item_key)
            if plan.outcome == adopt.ALREADY:
                report.already.append(name)
            elif plan.outcome == adopt.SKIPPED:
                report.skipped.append((name, plan.reason))
            elif dry_run:
                problems = [
                    problem
                    for blob in plan.foreign
                    if (problem := await asyncio.to_thread(adopt.dry_check, self.storage.s3, blob))
                ]
                if problems:
                    report.failed.append((name, "; ".join(problems)))
                else:
                    report.adopted.append(name)
            else:
                if rate is not None:
                    await asyncio.sleep(max(0.0, next_start - time.monotonic()))
                    next_start = max(next_start, time.monotonic()) + 1 / rate
                await gate.acquire()
                task = asyncio.create_task(
                    self._adopt_into(report, table, item_key, name, options, gate)
                )
                running.add(task)
                task.add_done_callback(running.discard)
        await asyncio.gather(*running)
        report.seconds = time.monotonic() - started
        return report

    async def _adopt_into(
        self,
        report: AdoptReport,
        table: LargeAttrTable,
        item_key: ItemKey,
        name: str,
        options: SagaOptions | None,
        gate: asyncio.Semaphore,
    ) -> None:
        try:
            handle = await self._start_adopt(table, item_key, options, "wait")
            result = await handle.result()
        except Exception as err:
            cause = user_error(err) if isinstance(err, WorkflowFailureError) else err
            report.failed.append((name, f"{type(cause).__name__}: {cause}"))
        else:
            if result.outcome == adopt.ADOPTED:
                report.adopted.append(name)
            elif result.outcome == adopt.ALREADY:
                report.already.append(name)
            else:
                report.skipped.append((name, result.reason))
        finally:
            gate.release()

    async def _start_adopt(
        self,
        table: LargeAttrTable,
        item_key: ItemKey,
        options: SagaOptions | None,
        on_busy: OnBusy,
    ) -> WorkflowHandle[Any, AdoptResult]:
        from largeattr.workflows import AdoptItemWorkflow

        request = AdoptItemInput(table.spec, item_key, options or table.options)
        summary = _summary("adopt", table, item_key, (), {})
        # The item is read just before the start (and again after waiting for a busy item).
        handle = await self._start(
            AdoptItemWorkflow.run, request, table, item_key, summary, on_busy, [], ItemChanges()
        )
        return cast(WorkflowHandle[Any, AdoptResult], handle)

    # ------------------------------------------------------------------ reads

    async def get(self, table: LargeAttrTable, key: KeyInput) -> Item | None:
        """The item (consistent read), with references to its large attributes."""
        return await asyncio.to_thread(self.reader.get, table.spec, table.key(key))

    async def read_blob(self, ref: BlobRef, *, on_progress: Progress | None = None) -> bytes:
        """A large attribute's bytes, verified against the recorded SHA-256.

        ``on_progress(done_bytes, total_bytes or None)`` is called after each chunk, from
        the thread that reads."""
        return await asyncio.to_thread(self.reader.read_bytes, ref, on_progress)

    async def download(
        self,
        ref: BlobRef,
        path: str | os.PathLike[str],
        *,
        on_progress: Progress | None = None,
    ) -> int:
        """Stream a large attribute into a file (atomic; verified); ``on_progress`` as in
        ``read_blob``."""
        return await asyncio.to_thread(self.reader.download, ref, path, on_progress)

    async def iter_blob(
        self,
        ref: BlobRef,
        chunk_size: int = 1024 * 1024,
        byte_range: tuple[int, int] | None = None,
        *,
        on_progress: Progress | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream a large attribute chunk by chunk; a whole read is verified at the end."""
        chunks = self.reader.iter_chunks(ref, chunk_size, byte_range, on_progress)
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, chunks, done)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]

    def presigned_url(self, ref: BlobRef, expires_in: int = 3600) -> str:
        return self.reader.presigned_url(ref, expires_in)

    # ------------------------------------------------------------------ internals

    async def _start(
        self,
        run: Any,
        request: Any,
        table: LargeAttrTable,
        item_key: dict[str, Any],
        summary: tuple[str, str],
        on_busy: OnBusy,
        held: list[str],
        reads: ItemChanges | None = None,
    ) -> WorkflowHandle[Any, ItemResult]:
        """Start the saga under the item's workflow id. With ``reads``, read the item first
        (consistent read; also checks that it fits once changed) and hand it to the saga,
        which then names its version in the pivot's condition without reading it again;
        re-read when the saga has to wait for another one on the item."""
        if on_busy not in ("wait", "fail"):
            raise InvalidInput("on_busy must be 'wait' or 'fail'")
        workflow_id = keys.workflow_id(table.spec, item_key)
        if any(blob.task_queue == self.blob_queue for blob in getattr(request, "blobs", ())):
            await self._ensure_blob_worker()
        eager = self._run_worker and await self._ensure_saga_worker()
        while True:
            if reads is not None:
                state = await asyncio.to_thread(
                    self.storage.items.read_item, table.spec, item_key, reads
                )
                request = dataclasses.replace(request, read=state)
            try:
                handle: WorkflowHandle[Any, ItemResult] = await self.temporal.start_workflow(
                    run,
                    request,
                    id=workflow_id,
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    request_eager_start=eager,
                    static_summary=summary[0],
                    static_details=summary[1],
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(search_attributes.TABLE, table.table_name),
                            SearchAttributePair(
                                search_attributes.ITEM, keys.item_path(table.spec, item_key)
                            ),
                            # The summary starts with the operation (see _summary).
                            SearchAttributePair(
                                search_attributes.OPERATION, summary[0].partition(" ")[0]
                            ),
                            SearchAttributePair(search_attributes.OUTCOME, "running"),
                        ]
                    ),
                )
                break
            except WorkflowAlreadyStartedError as err:
                if on_busy == "fail":
                    raise ItemBusy(
                        f"another operation on {workflow_id} is running (run {err.run_id}); "
                        "retry later or pass on_busy='wait'",
                        workflow_id=workflow_id,
                    ) from None
                await self._wait_closed(workflow_id, err.run_id)
        if held:
            # Keep this process's blobs until the saga no longer needs them.
            task = asyncio.create_task(self._release_after(handle, list(held)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            held.clear()
        return handle

    async def _wait_closed(self, workflow_id: str, run_id: str | None) -> None:
        handle = self.temporal.get_workflow_handle(workflow_id, run_id=run_id)
        with contextlib.suppress(Exception):
            await handle.result(follow_runs=False)

    async def _release_after(self, handle: WorkflowHandle[Any, Any], handles: list[str]) -> None:
        try:
            with contextlib.suppress(Exception):
                await handle.result()
        finally:
            for source in handles:
                self.sources.release(source)

    @contextlib.contextmanager
    def _holding(self) -> Any:
        """Sources registered while building a request; released unless a saga took them."""
        held: list[str] = []
        try:
            yield held
        finally:
            for source in held:
                self.sources.release(source)

    async def _ensure_saga_worker(self) -> bool:
        """Start the in-process saga worker (``run_worker=True``) on first use."""
        if self._worker is None:
            from largeattr.activities.saga import SagaActivities
            from largeattr.worker import build_worker

            activities = SagaActivities(
                self.storage.s3, self.storage.dynamodb, self.transfer, self.sources
            )
            self._worker, self._worker_executor = build_worker(
                self.temporal,
                task_queue=self.task_queue,
                activities=activities,
                **self._worker_options,
            )
            self._worker_task = asyncio.create_task(self._worker.run())
        return True

    async def _ensure_blob_worker(self) -> None:
        if self._blob_worker is not None:
            return
        # Lazy: only a client that holds big blobs serves their upload activities.
        from temporalio.worker import Worker

        from largeattr.activities.saga import SagaActivities

        activities = SagaActivities(
            self.storage.s3, self.storage.dynamodb, self.transfer, self.sources
        )
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="largeattr-blob")
        self._blob_worker = Worker(
            self.temporal,
            task_queue=self.blob_queue,
            activities=activities.blob_activities(),
            activity_executor=self._executor,
            max_concurrent_activities=8,
            interceptors=[BusinessErrorsAreBenign()],  # as build_worker: no traceback logged
        )
        self._blob_worker_task = asyncio.create_task(self._blob_worker.run())

    async def _blob_inputs(
        self,
        table: LargeAttrTable,
        blobs: Mapping[str, Any],
        held: list[str],
        on_progress: Progress | None = None,
    ) -> tuple[tuple[BlobInput, ...], list[str]]:
        """Validate blobs and decide how each travels: inline, or from this process."""
        return await blob_inputs(
            table, blobs, self.transfer, Holder(self.sources, self.blob_queue, held, on_progress)
        )


# ---------------------------------------------------------------- helpers


def _summary(
    operation: str,
    table: LargeAttrTable,
    item_key: dict[str, Any],
    blobs: Sequence[BlobInput],
    attributes: Mapping[str, Any],
    removed: Sequence[str] = (),
) -> tuple[str, str]:
    """The one-line summary and the details the Web UI shows for a saga."""
    item = keys.item_path(table.spec, item_key)
    parts = [f"{b.attribute} ({human_size(b.size)})" for b in blobs]
    parts += [f"remove {name}" for name in removed]
    if attributes:
        parts.append(f"set {', '.join(sorted(attributes))}")
    summary = f"{operation} {table.table_name} {item}"
    if parts:
        summary += ": " + ", ".join(parts)
    details = "\n".join(
        [
            f"**{operation}** item `{item}` of table `{table.table_name}`",
            f"objects under `s3://{table.bucket}/{table.prefix}/`",
            *[
                f"- `{b.attribute}`: {human_size(b.size)}, {b.content_type}, "
                f"{'inline' if b.inline_b64 is not None else 'uploaded from ' + str(b.task_queue)}"
                for b in blobs
            ],
        ]
    )
    return summary, details


__all__ = ["Blob", "LargeAttrClient", "LargeAttrError", "OnBusy", "user_error"]
