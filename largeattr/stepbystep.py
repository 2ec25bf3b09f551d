"""pynamodb_mate's "step-by-step API", without Temporal: the same code the activities run.

    steps = StepByStep(Storage(s3, dynamodb), docs)
    written = steps.put_blobs("id-1", {"html": b"<b>hi</b>"})      # S3 first
    try:
        table.put_item(Item={"pk": "id-1", **written.attributes()})  # then DynamoDB, your way
    except Exception:
        written.clean_up_after_failure()                              # nothing left behind
        raise

For an update, write ``written.update_expression(old_item)`` and, once it committed,
``written.clean_up_old_objects(old_item)``. For a delete, delete the item your way, then
``steps.clean_up_after_delete(old_item)`` removes the objects it referenced. Without a
saga around them these steps are not durable: a crash between them leaves an orphan for
the reconcile pass.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import Binary

from largeattr import dynamo, keys
from largeattr.blobs import put_spec
from largeattr.errors import InvalidInput
from largeattr.messages import BlobInput, CleanupResult, CompensateArgs, StoredBlob
from largeattr.storage import Storage
from largeattr.table import KeyInput, LargeAttrTable
from largeattr.transfer.digests import digest_reader

#: Object keys this module deletes are always filtered by ``keys.owned_by``: only keys this
#: table's template produces, never another table's or the previous scheme's.


@dataclass(frozen=True)
class PutBlobs:
    """Blobs stored by ``StepByStep.put_blobs``: what to write, and how to undo it."""

    steps: StepByStep
    key: dict[str, Any]
    blobs: tuple[StoredBlob, ...]
    saga_id: str
    #: Large attributes the write removes (given as None to ``put_blobs``).
    removed: tuple[str, ...] = ()

    def attributes(self) -> dict[str, Any]:
        """Item attributes (plain Python values) for a put: each URI and ``la_meta``."""
        values: dict[str, Any] = {blob.attribute: blob.uri for blob in self.blobs}
        values[dynamo.META_ATTRIBUTE] = {
            blob.attribute: dynamo.from_wire(dynamo.meta_to_wire(blob.meta)) for blob in self.blobs
        }
        return values

    def update_expression(
        self, old_item: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(UpdateExpression, names, values) setting the new URIs and their ``la_meta``,
        and removing the large attributes given as None.

        Values are plain Python (boto3 resource style). Pass the item as read before the
        update so that ``la_meta`` entries of attributes left alone are kept. Add your own
        condition (e.g. on the version attribute) when you send it."""
        names: dict[str, str] = {"#meta": dynamo.META_ATTRIBUTE}
        values: dict[str, Any] = {}
        sets = []
        for index, blob in enumerate(self.blobs):
            names[f"#a{index}"] = blob.attribute
            values[f":a{index}"] = blob.uri
            sets.append(f"#a{index} = :a{index}")
        removes = []
        for index, name in enumerate(self.removed):
            names[f"#r{index}"] = name
            removes.append(f"#r{index}")
        meta = dict((old_item or {}).get(dynamo.META_ATTRIBUTE) or {})
        for name in self.removed:
            meta.pop(name, None)
        meta.update(self.attributes()[dynamo.META_ATTRIBUTE])
        values[":meta"] = meta
        sets.append("#meta = :meta")
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        return expression, names, values

    def clean_up_after_failure(self) -> CleanupResult:
        """The DynamoDB write failed: delete the objects this call wrote that the item, as
        it is now, does not reference. Objects that were already there are kept."""
        return self.steps.storage.cleanup.compensate(
            CompensateArgs(
                self.steps.table.spec,
                self.key,
                self.saga_id,
                tuple(blob.key for blob in self.blobs),
            )
        )

    def clean_up_old_objects(self, old_item: Mapping[str, Any]) -> tuple[str, ...]:
        """The update committed: delete what ``old_item`` referenced and the new one does
        not (only under the table's bucket and prefix)."""
        spec = self.steps.table.spec
        new = {blob.attribute: blob.uri for blob in self.blobs}
        old = {
            name: value
            for name, value in old_item.items()
            if name in spec.large_attributes and isinstance(value, str)
        }
        stale = [
            keys.parse_s3_uri(uri)[1]
            for name, uri in old.items()
            if (name in self.removed or (name in new and uri != new[name]))
            and uri
            and keys.owned_by(spec, uri)
        ]
        return self.steps.storage.cleanup.delete_objects(spec.bucket, stale)


@dataclass(frozen=True)
class StepByStep:
    storage: Storage
    table: LargeAttrTable

    def put_blobs(
        self,
        key: KeyInput,
        blobs: Mapping[str, bytes | Path | None],
        *,
        content_types: Mapping[str, str] | None = None,
        saga_id: str | None = None,
        updated_at: str | None = None,
    ) -> PutBlobs:
        """Upload blobs to their content-addressed keys (identical content is not sent
        again); None marks a large attribute to remove. ``saga_id`` marks the objects as
        this call's, for clean-up; ``updated_at`` (default: now, UTC) goes in their
        metadata."""
        item_key = self.table.key(key)
        self.table.check_blob_names(list(blobs))
        saga_id = saga_id or f"manual-{uuid.uuid4()}"
        updated_at = updated_at or dt.datetime.now(dt.UTC).isoformat()
        stored = []
        removed = []
        for name, data in blobs.items():
            if data is None:
                removed.append(name)
                continue
            if isinstance(data, bytes):
                opener: Any = lambda data=data: io.BytesIO(data)  # noqa: E731
            elif isinstance(data, Path):
                opener = lambda path=data: path.open("rb")  # noqa: E731
            else:
                raise InvalidInput(f"blob {name!r}: pass bytes or a pathlib.Path")
            with opener() as reader:
                prepared = digest_reader(reader)
            blob = BlobInput(
                attribute=name,
                content_type=(content_types or {}).get(name, "application/octet-stream"),
            )
            object_key = keys.object_key(self.table.spec, item_key, name, prepared.sha256)
            put = put_spec(
                self.table.spec, item_key, blob, object_key, prepared.sha256, saga_id, updated_at
            )
            stored.append(self.storage.blobs.store(put, blob, prepared, opener, saga_id))
        return PutBlobs(self, item_key, tuple(stored), saga_id, tuple(removed))

    def clean_up_after_delete(self, old_item: Mapping[str, Any]) -> CleanupResult:
        """The item was deleted (by your own DeleteItem): delete the objects ``old_item``
        (as read before the delete, plain Python values) referenced.

        Only this table's objects are deleted, and only those no item references now: if
        the item was written again meanwhile with the same content (the same key), the
        object stays."""
        spec = self.table.spec
        names = [spec.partition_key, *([spec.sort_key] if spec.sort_key else [])]
        missing = [name for name in names if name not in old_item]
        if missing:
            raise InvalidInput(f"old_item lacks the key attributes {missing}; pass the item read")
        item_key = self.table.key({name: _key_input(old_item[name]) for name in names})
        uris = [
            value
            for name, value in old_item.items()
            if name in spec.large_attributes and isinstance(value, str) and value
        ]
        candidates = [keys.parse_s3_uri(uri)[1] for uri in uris if keys.owned_by(spec, uri)]
        return self.storage.cleanup.delete_unreferenced(spec, item_key, candidates)


def _key_input(value: Any) -> Any:
    """A key value as boto3's resource API returns it (bytes come wrapped in Binary)."""
    if isinstance(value, Binary):
        raw: bytes = value.value  # type: ignore[attr-defined]  # untyped in boto3's stubs
        return raw
    return value
