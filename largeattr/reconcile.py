"""Reconcile at scale: one pass over a table's prefix, judged from the listing and the keys.

For each few pages of ``ListObjectsV2`` (one activity, ``ReconcileChunkArgs``):

* the key says which item an object belongs to (``keys.parse_object_key``: content-addressed
  under the item's path), the listing says its size and age; only staged streams, whose key
  names the saga and not the item, are asked for their metadata (HeadObject);
* the items are read with ``BatchGetItem`` (100 keys a call, unprocessed keys retried with
  backoff) from a thread pool; an unreferenced object older than the grace period is an
  orphan, a reference of this table's key shape that the listing lacks is dangling
  (reported, never "fixed");
* orphans are deleted with ``DeleteObjects`` (1,000 keys a call) while their item is locked.

The lock is the item's workflow id, as for every saga. Why not a ``CleanItem`` child per
item: it costs a workflow task, an activity and four parent history events per item, and
10,000 items with orphans would take minutes of Temporal time. Here the lock is a
``largeattr.CleanItem`` execution started under the item's workflow id with a
``start_delay`` (the lease): the start alone takes the id, no workflow task runs, so a
lock costs two requests (start, then terminate to release). While it is held no saga can
start on the item, and a saga that was running made the start fail (the item is busy and
waits for the next pass). Under the lock the items are read again, and only what they do
not reference now is deleted: an orphan a saga re-used (same content, so ``If-None-Match``
found it) is referenced by then, and a saga that starts after the release finds the object
gone and uploads it again. No delete is sent unless it ends before the lease does (the S3
client's whole retry budget fits in what is left), so a lock never expires under a delete
in flight. If the reconcile dies holding locks, each lease ends by itself: the delayed
``CleanItem`` then runs under the item's id and deletes what the item still does not
reference, as it always did.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

from largeattr import dynamo, keys
from largeattr.aws_errors import reraise
from largeattr.blobs import head
from largeattr.cleanup import Cleanup
from largeattr.items import Items
from largeattr.messages import (
    ItemKey,
    ReconcileChunk,
    ReconcileChunkArgs,
    ReconcileResult,
    TableSpec,
)
from largeattr.transfer.uploads import abort_quietly, list_uploads

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

#: Keys kept per sample list in a result (the result is a workflow result: keep it small).
SAMPLES = 10
#: BatchGetItem takes at most 100 keys; DeleteObjects at most 1,000.
BATCH_GET = 100
DELETE_BATCH = 1000
#: How long a lock holds without its reconcile (then the delayed CleanItem runs).
LOCK_LEASE = dt.timedelta(minutes=15)
#: Locks taken at once by one worker (each a start request to Temporal).
PARALLEL_LOCKS = 64
#: Pages judged at once while the listing goes on.
PIPELINE = 2
#: Attempts of a BatchGetItem whose keys DynamoDB keeps returning unprocessed.
BATCH_GET_ATTEMPTS = 10

T = TypeVar("T")
log = logging.getLogger(__name__)


class Locks(Protocol):
    """Per-item locks: a handle while held, None when a saga holds the item."""

    async def acquire(self, spec: TableSpec, item_key: ItemKey, keys: Sequence[str]) -> Any: ...

    async def release(self, handle: Any) -> None: ...


@dataclass
class _Listed:
    key: str
    size: int
    age: float


@dataclass
class _Group:
    """One item's objects in this chunk."""

    item_key: ItemKey
    listed: list[_Listed] = field(default_factory=list)
    #: Staged streams of the item's sagas (old enough; never referenced by an item).
    staged: list[_Listed] = field(default_factory=list)


def merged(total: ReconcileResult, more: ReconcileResult) -> ReconcileResult:
    """Counts added, samples kept to ``SAMPLES`` each. Pure: the workflow calls it."""
    values: dict[str, Any] = {}
    for f in fields(ReconcileResult):
        a, b = getattr(total, f.name), getattr(more, f.name)
        values[f.name] = (a + b)[:SAMPLES] if isinstance(a, tuple) else a + b
    return ReconcileResult(**values)


def describe(result: ReconcileResult, where: str | None = None) -> str:
    """One line for the Web UI's current details (and the CLI)."""
    line = (
        f"{result.objects_scanned:,} objects ({_size(result.bytes_scanned)}) scanned, "
        f"{result.items_checked:,} items read; {result.orphans_found:,} orphans "
        f"({_size(result.orphan_bytes)}), {result.objects_deleted:,} deleted "
        f"({_size(result.bytes_deleted)}), {result.items_busy:,} items busy; "
        f"{result.dangling:,} dangling, {result.unattributed:,} unattributed, "
        f"{result.uploads_aborted:,} uploads aborted"
    )
    return f"{line}; listing after {where}" if where else line


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def s3_call_bound(s3: Any) -> float:
    """Seconds an S3 call may last with the client's timeouts and retries (botocore's
    standard mode backs off at most 20 s between attempts)."""
    config = s3.meta.config
    attempts = int((config.retries or {}).get("max_attempts", 4)) + 1
    per_try = float(config.connect_timeout or 60) + float(config.read_timeout or 60)
    return attempts * (per_try + 20.0)


class Reconciler:
    """The batched pass on injected boto3 clients; ``threads`` of them call AWS at once."""

    def __init__(self, s3: S3Client, dynamodb: DynamoDBClient, threads: int = 8) -> None:
        self.s3 = s3
        self.dynamodb = dynamodb
        self.cleanup = Cleanup(s3, Items(dynamodb))
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._key_types: dict[str, dict[str, str]] = {}
        self._lock_gate: asyncio.Semaphore | None = None

    @property
    def lock_gate(self) -> asyncio.Semaphore:
        """Lock starts in flight, over all pages and chunks of this worker."""
        if self._lock_gate is None:
            self._lock_gate = asyncio.Semaphore(PARALLEL_LOCKS)
        return self._lock_gate

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="largeattr-recon")
        return self._pool

    async def _in_threads(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call, *args)

    async def _each(self, call: Callable[[Any], T], items: Iterable[Any]) -> list[T]:
        return list(await asyncio.gather(*(self._in_threads(call, item) for item in items)))

    # ------------------------------------------------------------ the chunk

    async def chunk(self, args: ReconcileChunkArgs, locks: Locks | None) -> ReconcileChunk:
        """List ``args.pages`` pages; each page's objects are judged (and their orphans
        deleted) while the next page is listed: S3 listing and Temporal locks overlap."""
        spec = args.table
        now = dt.datetime.now(dt.UTC)
        request: dict[str, Any] = {
            "Bucket": spec.bucket,
            "Prefix": f"{spec.prefix}/",
            "MaxKeys": args.page_size,
        }
        if args.start_after:
            request["StartAfter"] = args.start_after
        total = ReconcileResult(chunks=1)
        if args.abort_uploads:
            aborted = await self._in_threads(self._abort_stale_uploads, args, now)
            total = replace(total, uploads_aborted=aborted)
        gate = asyncio.Semaphore(PIPELINE)
        judging: list[asyncio.Task[ReconcileResult]] = []
        held: list[_Listed] = []  # the last item's objects, judged with the next page
        after = args.start_after  # every key up to here is judged or being judged
        truncated = True
        try:
            for page_number in range(max(1, args.pages)):
                try:
                    page = await self._in_threads(lambda r: self.s3.list_objects_v2(**r), request)
                except ClientError as err:
                    reraise(err, table=spec.table_name, bucket=spec.bucket)
                listed = held + [
                    _Listed(
                        obj["Key"],
                        int(obj.get("Size", 0)),
                        (now - obj["LastModified"]).total_seconds(),
                    )
                    for obj in page.get("Contents", [])
                ]
                truncated = bool(page.get("IsTruncated"))
                keep, held = self._cut(spec, listed) if truncated else (listed, [])
                if not keep and page_number == args.pages - 1:
                    keep, held = held, []  # one item fills the chunk: judge it anyway
                if keep:
                    last_seen = keep[-1].key if truncated else None
                    await gate.acquire()
                    task = asyncio.create_task(
                        self._judge(args, keep, after, last_seen, locks, now)
                    )
                    task.add_done_callback(lambda _: gate.release())
                    judging.append(task)
                    after = keep[-1].key
                if not truncated:
                    break
                request.pop("StartAfter", None)
                request["ContinuationToken"] = page["NextContinuationToken"]
        finally:
            results = await asyncio.gather(*judging, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
            total = merged(total, result)
        return ReconcileChunk(total, after if truncated else None)

    async def _judge(
        self,
        args: ReconcileChunkArgs,
        keep: list[_Listed],
        after: str | None,
        last_seen: str | None,
        locks: Locks | None,
        now: dt.datetime,
    ) -> ReconcileResult:
        """Judge listed objects (every key in ``(after, last_seen]``) and delete orphans."""
        spec = args.table
        started = time.monotonic()
        result = ReconcileResult(
            objects_scanned=len(keep),
            bytes_scanned=sum(o.size for o in keep),
        )
        groups, unattributed = await self._groups(args, keep)
        result = replace(
            result,
            unattributed=len(unattributed),
            sample_unattributed=tuple(unattributed[:SAMPLES]),
        )
        items = await self._read(spec, [g.item_key for g in groups.values()])
        read = time.monotonic()
        # Every key in (after, last_seen] was listed: a reference in that range that is
        # not among them is missing, whatever the order of the key template.
        present = {o.key for o in keep}
        orphans: dict[str, list[_Listed]] = {}
        dangling: list[str] = []
        for marker, group in groups.items():
            refs = items.get(marker, {})
            referenced = {key for key in refs.values() if key is not None}
            for key in referenced - present:
                if (after is None or key > after) and (last_seen is None or key <= last_seen):
                    dangling.append(keys.s3_uri(spec.bucket, key))
            stale = [] if args.staged_only else group.listed
            found = [o for o in stale if o.age >= args.grace_seconds and o.key not in referenced]
            found += group.staged
            if found:
                orphans[marker] = found
        found_all = [o for found in orphans.values() for o in found]
        result = replace(
            result,
            items_checked=len(groups),
            orphans_found=len(found_all),
            orphan_bytes=sum(o.size for o in found_all),
            dangling=len(dangling),
            sample_dangling=tuple(sorted(dangling)[:SAMPLES]),
            sample_orphans=tuple(o.key for o in found_all[:SAMPLES]),
        )
        if orphans and not args.dry_run and locks is not None:
            result = merged(result, await self._delete(spec, groups, orphans, locks))
        log.info(
            "judged %d objects of %d items in %.2f s (read %.2f s), %d orphans of %d items",
            len(keep),
            len(groups),
            time.monotonic() - started,
            read - started,
            len(found_all),
            len(orphans),
        )
        return result

    def _cut(self, spec: TableSpec, listed: list[_Listed]) -> tuple[list[_Listed], list[_Listed]]:
        """(objects to judge now, objects to judge with the next page). An item's objects
        are adjacent in the listing (the key template puts the item before the content),
        so the last item's are held back until the next page shows whether it has more:
        each item is judged with all its objects in view."""
        if not listed:
            return [], []
        last = self._folder(spec, listed[-1].key)
        cut = len(listed)
        if last is not None:
            while cut > 0 and self._folder(spec, listed[cut - 1].key) == last:
                cut -= 1
        return listed[:cut], listed[cut:]

    @staticmethod
    def _folder(spec: TableSpec, key: str) -> str | None:
        parsed = keys.parse_object_key(spec, key)
        if parsed is None:
            return None
        return json.dumps(parsed.item_keys, sort_keys=True)

    # ------------------------------------------------------------ whose objects

    async def _groups(
        self, args: ReconcileChunkArgs, listed: list[_Listed]
    ) -> tuple[dict[str, _Group], list[str]]:
        spec = args.table
        groups: dict[str, _Group] = {}
        unattributed: list[str] = []
        staged: list[_Listed] = []
        types: dict[str, str] | None = None
        for obj in listed:
            parsed = keys.parse_object_key(spec, obj.key)
            if parsed is not None:
                candidates = list(parsed.item_keys)
                if len(candidates) > 1:
                    if types is None:
                        types = await self._in_threads(self._types, spec)
                    candidates = [c for c in candidates if _typed_as(c, types)]
                if len(candidates) == 1:
                    group = self._group(groups, candidates[0])
                    group.listed.append(obj)
                    continue
            if obj.age < args.grace_seconds:
                continue  # too young to judge, ours or not
            if keys.is_staging_key(spec, obj.key):
                staged.append(obj)  # its key names the saga, not the item: HEAD tells
            elif parsed is None and not keys.in_a_table_folder(spec, obj.key):
                unattributed.append(obj.key)
            # else: another table's folder under our prefix: never ours to judge.
        heads = await self._each(lambda o: head(self.s3, spec.bucket, o.key), staged)
        for obj, found in zip(staged, heads, strict=True):
            if found is None:
                continue  # deleted since the listing
            item_key = _item_of(spec, found.get("Metadata", {}))
            if item_key is None:
                unattributed.append(obj.key)
            else:
                self._group(groups, item_key).staged.append(obj)
        return groups, unattributed

    @staticmethod
    def _group(groups: dict[str, _Group], item_key: ItemKey) -> _Group:
        marker = json.dumps(item_key, sort_keys=True)
        if marker not in groups:
            groups[marker] = _Group(item_key)
        return groups[marker]

    def _types(self, spec: TableSpec) -> dict[str, str]:
        """The key attributes' types (S, N, B): a key value like ``7`` could be either."""
        if spec.table_name not in self._key_types:
            try:
                described = self.dynamodb.describe_table(TableName=spec.table_name)
            except (ClientError, BotoCoreError) as err:
                reraise(err, table=spec.table_name)
            definitions = described["Table"].get("AttributeDefinitions", [])
            self._key_types[spec.table_name] = {
                d["AttributeName"]: d["AttributeType"] for d in definitions
            }
        return self._key_types[spec.table_name]

    # ------------------------------------------------------------ the items

    async def _read(
        self, spec: TableSpec, item_keys: Sequence[ItemKey]
    ) -> dict[str, dict[str, str | None]]:
        """Per item (by marker): attribute -> object key of this table it references
        (None for a reference that is not one of this table's keys). Absent items map to
        no references."""
        batches = [item_keys[i : i + BATCH_GET] for i in range(0, len(item_keys), BATCH_GET)]
        found: dict[str, dict[str, str | None]] = {}
        for items in await self._each(lambda b: self._batch_get(spec, b), batches):
            for raw in items:
                state = dynamo.item_state(spec, raw)
                refs: dict[str, str | None] = {}
                for attribute, uri in state.refs.items():
                    refs[attribute] = (
                        keys.parse_s3_uri(uri)[1] if keys.owned_by(spec, uri) else None
                    )
                found[json.dumps(dynamo.key_of(spec, raw), sort_keys=True)] = refs
        return found

    def _batch_get(self, spec: TableSpec, item_keys: Sequence[ItemKey]) -> list[dict[str, Any]]:
        names = [spec.partition_key, *([spec.sort_key] if spec.sort_key else [])]
        names += list(spec.large_attributes)
        placeholders = {f"#a{i}": name for i, name in enumerate(dict.fromkeys(names))}
        request: dict[str, Any] = {
            spec.table_name: {
                "Keys": [dynamo.item_to_low_level(k) for k in item_keys],
                "ConsistentRead": True,
                "ProjectionExpression": ", ".join(placeholders),
                "ExpressionAttributeNames": placeholders,
            }
        }
        out: list[dict[str, Any]] = []
        for attempt in range(BATCH_GET_ATTEMPTS):
            try:
                response = self.dynamodb.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as err:
                reraise(err, table=spec.table_name)
            out.extend(response.get("Responses", {}).get(spec.table_name, []))
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                return out
            # DynamoDB's advice for unprocessed keys: back off exponentially, with jitter.
            time.sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
        raise RuntimeError(
            f"DynamoDB left keys of {spec.table_name} unprocessed {BATCH_GET_ATTEMPTS} times "
            "(throttled); the activity retries, or raise the table's read capacity"
        )

    # ------------------------------------------------------------ deleting

    async def _delete(
        self,
        spec: TableSpec,
        groups: dict[str, _Group],
        orphans: dict[str, list[_Listed]],
        locks: Locks,
    ) -> ReconcileResult:
        bound = s3_call_bound(self.s3)

        async def take(marker: str) -> tuple[str, Any, float]:
            async with self.lock_gate:
                taken_at = time.monotonic()
                keys_ = [o.key for o in orphans[marker]]
                return marker, await locks.acquire(spec, groups[marker].item_key, keys_), taken_at

        taken = await asyncio.gather(*(take(m) for m in orphans), return_exceptions=True)
        held = [t for t in taken if not isinstance(t, BaseException)]
        busy = [groups[m].item_key for m, handle, _ in held if handle is None]
        locked = [(m, handle, at) for m, handle, at in held if handle is not None]
        deleted: list[_Listed] = []
        deleting: asyncio.Future[list[tuple[str, ...]]] | None = None
        try:
            failed = [t for t in taken if isinstance(t, BaseException)]
            if failed:
                raise failed[0]  # after releasing the locks that were taken
            fresh = await self._read(spec, [groups[m].item_key for m, _, _ in locked])
            stale: list[_Listed] = []
            for marker, _, taken_at in locked:
                # A delete must end before the lease does, retries included.
                if time.monotonic() - taken_at + bound >= LOCK_LEASE.total_seconds():
                    busy.append(groups[marker].item_key)
                    continue
                referenced = set(fresh.get(marker, {}).values())
                stale += [
                    o
                    for o in orphans[marker]
                    if o.key not in referenced and keys.owns_key(spec, o.key)
                ]
            batches = [stale[i : i + DELETE_BATCH] for i in range(0, len(stale), DELETE_BATCH)]
            deleting = asyncio.ensure_future(
                self._each(
                    lambda b: self.cleanup.delete_objects(spec.bucket, [o.key for o in b]),
                    batches,
                )
            )
            await asyncio.shield(deleting)
            deleted = stale
        finally:
            if deleting is not None and not deleting.done():
                # Cancelled: the deletes run on in their threads; the items stay locked
                # until they have ended.
                await asyncio.wait({deleting})
            await asyncio.gather(*(self._release(locks, h, at) for _, h, at in locked))
        return ReconcileResult(
            objects_deleted=len(deleted),
            bytes_deleted=sum(o.size for o in deleted),
            items_busy=len(busy),
            sample_busy=tuple(keys.item_path(spec, k) for k in busy[:SAMPLES]),
        )

    @staticmethod
    async def _release(locks: Locks, handle: Any, taken_at: float) -> None:
        # Past its lease the CleanItem may be running: leave it to finish and unlock itself.
        if time.monotonic() - taken_at < LOCK_LEASE.total_seconds() - 30:
            await locks.release(handle)

    def _abort_stale_uploads(self, args: ReconcileChunkArgs, now: dt.datetime) -> int:
        spec = args.table
        aborted = 0
        try:
            for upload in list_uploads(self.s3, spec.bucket, f"{spec.prefix}/"):
                if not keys.owns_key(spec, upload["Key"]) and keys.in_a_table_folder(
                    spec, upload["Key"]
                ):
                    continue  # another table's upload may still be running
                if (now - upload["Initiated"]).total_seconds() >= args.upload_grace_seconds:
                    if not args.dry_run:
                        abort_quietly(self.s3, spec.bucket, upload["Key"], upload["UploadId"])
                    aborted += 1
        except ClientError as err:
            reraise(err, table=spec.table_name, bucket=spec.bucket)
        return aborted


def _typed_as(item_key: ItemKey, types: dict[str, str]) -> bool:
    return all(types.get(name) in value for name, value in item_key.items())


def _item_of(spec: TableSpec, metadata: dict[str, str]) -> ItemKey | None:
    """The item a staged stream was written for, from its metadata (``la-item``)."""
    if metadata.get("la-table", keys.escape(spec.table_name)) != keys.escape(spec.table_name):
        return None
    raw = metadata.get("la-item")
    if raw is None:
        return None
    item_key: ItemKey = json.loads(unquote(raw))
    return item_key


async def run_beating(work: Awaitable[T], beat: Callable[[], None], every: float = 10.0) -> T:
    """Await ``work`` while calling ``beat`` every ``every`` seconds."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            beat()
    except asyncio.CancelledError:
        # Pass the cancel on, and return only once the work has let go of its locks.
        task.cancel()
        await asyncio.wait({task})
        raise
