"""The invariant checker: is what the table references exactly what S3 holds?

Reports, for one table and prefix:

* dangling references: an item points at an object that is missing, or whose bytes do
  not match the SHA-256 in its key / in ``la_meta``;
* orphans: this table's objects that no item references (with their age), staged
  streams and unfinished multipart uploads included: what ``largeattr reconcile`` deletes;
* apart, and not failing the check (reconcile never deletes them): unattributed objects
  under the prefix (not of this table's key shape, outside every table's folder) and legacy ones
  (written by this table under the previous key scheme, ``{prefix}/pk=...``, which two
  tables on one prefix could share). Other tables' folders under the prefix are skipped;
* drift: items whose state is not what the last committed saga left (needs Temporal):
  the item's ``la_saga`` must be the run id of the last completed workflow of its id,
  and an item whose last completed saga was a delete must be absent.

Memory grows with the number of references (strings), never with blob sizes; hashes are
checked by streaming.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from largeattr import dynamo, keys
from largeattr.aws_errors import is_not_found
from largeattr.errors import InvalidInput
from largeattr.messages import ItemKey, TableSpec
from largeattr.search_attributes import OUTCOME
from largeattr.storage import Storage
from largeattr.transfer.uploads import list_uploads

SAGA_TYPES = frozenset(
    {"largeattr.CreateItem", "largeattr.UpdateItem", "largeattr.DeleteItem", "largeattr.AdoptItem"}
)
#: Outcomes of a completed saga that wrote nothing (an adopt that found nothing to do).
NOTHING_COMMITTED = frozenset({"already", "skipped"})
_SHA_IN_KEY = re.compile(r"sha256=([0-9a-f]{64})")


@dataclass(frozen=True)
class Dangling:
    item: str
    attribute: str
    uri: str
    reason: str


@dataclass(frozen=True)
class Orphan:
    key: str
    size: int
    age_seconds: float
    kind: str = "object"  # "object", "staged", "upload"


@dataclass(frozen=True)
class Drift:
    item: str
    reason: str


@dataclass
class CheckReport:
    table: str
    items: int = 0
    references: int = 0
    objects: int = 0
    dangling: list[Dangling] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    #: Not ours to delete, listed so a person can decide; they never fail the check.
    unattributed: list[Orphan] = field(default_factory=list)
    legacy: list[Orphan] = field(default_factory=list)
    #: Objects in other tables' folders under the prefix (not looked at).
    other_tables: int = 0

    def ok(self, allow_orphans: bool = False) -> bool:
        return not self.dangling and not self.drift and (allow_orphans or not self.orphans)

    def summary(self) -> str:
        return (
            f"{self.table}: {self.items} items, {self.references} references, "
            f"{self.objects} objects; dangling={len(self.dangling)} "
            f"orphans={len(self.orphans)} drift={len(self.drift)}; not ours: "
            f"unattributed={len(self.unattributed)} legacy={len(self.legacy)} "
            f"other tables={self.other_tables}"
        )

    def lines(self) -> Iterator[str]:
        yield self.summary()
        for d in self.dangling:
            yield f"DANGLING {d.item} {d.attribute} -> {d.uri}: {d.reason}"
        for o in self.orphans:
            yield f"ORPHAN   {o.kind} {o.key} ({o.size} bytes, {o.age_seconds:.0f}s old)"
        for r in self.drift:
            yield f"DRIFT    {r.item}: {r.reason}"
        for o in self.unattributed:
            yield (
                f"UNATTRIBUTED {o.kind} {o.key} ({o.size} bytes, {o.age_seconds:.0f}s old): "
                "not a key of this table; never deleted by reconcile"
            )
        for o in self.legacy:
            yield (
                f"LEGACY   {o.key} ({o.size} bytes, {o.age_seconds:.0f}s old): written by this "
                "table under the previous key scheme and not referenced by it; another table "
                "on this prefix may reference it, so it is never deleted for you"
            )


def _scan(storage: Storage, spec: TableSpec) -> Iterator[dict[str, Any]]:
    """Items, a page at a time, with only the attributes the checker reads."""
    names = [spec.partition_key, *([spec.sort_key] if spec.sort_key else [])]
    names += [*spec.large_attributes, *dynamo.bookkeeping_attributes(spec)]
    placeholders = {f"#a{i}": name for i, name in enumerate(dict.fromkeys(names))}
    pages = storage.dynamodb.get_paginator("scan").paginate(
        TableName=spec.table_name,
        ProjectionExpression=", ".join(placeholders),
        ExpressionAttributeNames=placeholders,
        ConsistentRead=True,
    )
    for page in pages:
        yield from page.get("Items", [])


def _object_problem(
    storage: Storage, bucket: str, key: str, expected: str | None, size: int | None, full: bool
) -> str | None:
    try:
        head = storage.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if is_not_found(err):
            return "object missing"
        raise
    if size is not None and head["ContentLength"] != size:
        return f"size {head['ContentLength']} != recorded {size}"
    if full and expected:
        digest = hashlib.sha256()
        body = storage.s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
        if digest.hexdigest() != expected:
            return f"bytes hash to {digest.hexdigest()}, not {expected}"
    return None


def _metadata(storage: Storage, bucket: str, key: str) -> dict[str, str] | None:
    """An object's user metadata; None if it is gone."""
    try:
        head = storage.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if is_not_found(err):
            return None
        raise
    return dict(head.get("Metadata", {}))


def check_storage(
    storage: Storage,
    spec: TableSpec,
    *,
    verify_bytes: bool = True,
    now: dt.datetime | None = None,
) -> CheckReport:
    """Dangling references and orphans of one table (no Temporal needed)."""
    report = CheckReport(spec.table_name)
    referenced: set[str] = set()
    for raw in _scan(storage, spec):
        report.items += 1
        state = dynamo.item_state(spec, raw)
        name = keys.item_path(spec, dynamo.key_of(spec, dynamo.item_from_low_level(raw)))
        for attribute, uri in state.refs.items():
            report.references += 1
            try:
                bucket, key = keys.parse_s3_uri(uri)
            except InvalidInput:
                report.dangling.append(Dangling(name, attribute, uri, "not an s3://bucket/key URI"))
                continue
            if bucket == spec.bucket:
                referenced.add(key)
            meta = state.meta.get(attribute)
            in_key = _SHA_IN_KEY.search(key)
            expected = meta.sha256 if meta else (in_key.group(1) if in_key else None)
            if meta and in_key and meta.sha256 != in_key.group(1):
                report.dangling.append(Dangling(name, attribute, uri, "la_meta sha256 != key"))
                continue
            problem = _object_problem(
                storage, bucket, key, expected, meta.size if meta else None, verify_bytes
            )
            if problem:
                report.dangling.append(Dangling(name, attribute, uri, problem))
    now = now or dt.datetime.now(dt.UTC)
    paginator = storage.s3.get_paginator("list_objects_v2")
    ours = keys.escape(spec.table_name)
    for page in paginator.paginate(Bucket=spec.bucket, Prefix=f"{spec.prefix}/"):
        for obj in page.get("Contents", []):
            report.objects += 1
            if obj["Key"] in referenced:
                continue
            owned = keys.owns_key(spec, obj["Key"])
            if not owned and keys.in_a_table_folder(spec, obj["Key"]):
                report.other_tables += 1
                continue
            age = (now - obj["LastModified"]).total_seconds()
            kind = "staged" if keys.is_staging_key(spec, obj["Key"]) else "object"
            orphan = Orphan(obj["Key"], int(obj["Size"]), age, kind)
            metadata = _metadata(storage, spec.bucket, obj["Key"])
            if metadata is None:
                continue  # deleted since the listing
            written_by = metadata.get("la-table")
            # A key of this table's shape is judged by its key, as reconcile judges it.
            if owned and written_by in (None, ours):
                report.orphans.append(orphan)
            elif not owned and written_by == ours:
                report.legacy.append(orphan)
            elif not owned and written_by is not None:
                report.other_tables += 1  # another table's, under the previous scheme
            else:
                report.unattributed.append(orphan)
    for upload in list_uploads(storage.s3, spec.bucket, f"{spec.prefix}/"):
        age = (now - upload["Initiated"]).total_seconds()
        orphan = Orphan(upload["Key"], 0, age, "upload")
        # Reconcile aborts stale uploads outside other tables' folders, as the lifecycle
        # rule of `largeattr setup` does: they are orphans.
        if not keys.owns_key(spec, upload["Key"]) and keys.in_a_table_folder(spec, upload["Key"]):
            report.other_tables += 1
        else:
            report.orphans.append(orphan)
    return report


async def check_drift(
    storage: Storage, spec: TableSpec, temporal: Any, item_keys: list[ItemKey]
) -> list[Drift]:
    """Items whose state is not what their last completed saga committed."""
    drift: list[Drift] = []
    for item_key in item_keys:
        name = keys.item_path(spec, item_key)
        workflow_id = keys.workflow_id(spec, item_key)
        last = None
        async for execution in temporal.list_workflows(f'WorkflowId = "{workflow_id}"'):
            if execution.workflow_type not in SAGA_TYPES:
                continue  # reconcile's CleanItem runs under the item's id too
            if execution.typed_search_attributes.get(OUTCOME) in NOTHING_COMMITTED:
                continue
            if execution.status is not None and execution.status.name == "RUNNING":
                drift.append(Drift(name, f"a saga is still running ({execution.run_id})"))
                last = None
                break
            if (
                execution.status is not None
                and execution.status.name == "COMPLETED"
                and (last is None or (execution.close_time or 0) > (last.close_time or 0))
            ):
                last = execution
        if last is None:
            continue
        raw = storage.items.get_item(spec, item_key)
        operation = last.workflow_type.rsplit(".", 1)[-1]
        if operation == "DeleteItem":
            if raw is not None:
                drift.append(Drift(name, f"deleted by run {last.run_id} but present"))
            continue
        state = dynamo.item_state(spec, raw)
        if not state.exists:
            drift.append(Drift(name, f"committed by {operation} run {last.run_id} but absent"))
        elif state.saga_id != last.run_id:
            drift.append(
                Drift(
                    name,
                    f"last committed by run {last.run_id} ({operation}) but the item says "
                    f"{state.saga_id or 'a writer outside largeattr'}",
                )
            )
    return drift


def known_keys(storage: Storage, spec: TableSpec) -> list[ItemKey]:
    return [dynamo.key_of(spec, dynamo.item_from_low_level(raw)) for raw in _scan(storage, spec)]
