"""The DynamoDB side of the sagas: reading an item, and the three conditional pivots.

Every pivot carries a condition, and on ``ConditionalCheckFailed`` it reads the item the
failure returns: ``la_saga`` equal to this saga's id means the write already committed
(its response was lost), so a retried pivot is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from largeattr import dynamo, keys
from largeattr.aws_errors import is_conditional_failure, reraise
from largeattr.errors import ItemAlreadyExists, ItemNotFound, VersionConflict
from largeattr.messages import (
    AdoptItemArgs,
    DeleteItemArgs,
    ItemChanges,
    ItemKey,
    ItemState,
    PivotResult,
    PutItemArgs,
    TableSpec,
    UpdateItemArgs,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Room the la_meta entry of one large attribute takes in the item, at most.
_META_ENTRY_BYTES = 256


@dataclass
class _Expression:
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, low_level: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = low_level
        return placeholder

    def assign(self, attribute: str, low_level: Any) -> str:
        return f"{self.name(attribute)} = {self.value(low_level)}"

    def version_is(self, spec: TableSpec, version: int) -> str:
        """Condition: the item exists at this version (0: it has no version yet)."""
        pk = self.name(spec.partition_key)
        v = self.name(spec.version_attribute)
        if version == 0:
            return f"attribute_exists({pk}) AND attribute_not_exists({v})"
        return f"attribute_exists({pk}) AND {v} = {self.value({'N': str(version)})}"

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _superseded(
    spec: TableSpec,
    old_refs: Mapping[str, str],
    changed: Iterable[str],
    new_refs: Mapping[str, str],
) -> tuple[str, ...]:
    """URIs of changed attributes that the new item no longer references and that we own."""
    still = set(new_refs.values())
    out = []
    for attribute in changed:
        uri = old_refs.get(attribute)
        if uri and uri not in still and keys.owned_by(spec, uri) and uri not in out:
            out.append(uri)
    return tuple(out)


def size_after(
    spec: TableSpec, key: ItemKey, item: Mapping[str, Any] | None, changes: ItemChanges
) -> int:
    """An upper estimate of an item's size once ``changes`` are applied to ``item``."""
    kept: dict[str, Any] = {}
    if item and not changes.replace:
        dropped = set(changes.set_attributes) | set(changes.remove_attributes)
        dropped |= set(changes.blob_attributes) | set(dynamo.bookkeeping_attributes(spec))
        kept = {name: value for name, value in item.items() if name not in dropped}
    size = dynamo.item_size(kept) + dynamo.item_size(
        {**dynamo.item_to_low_level(key), **dynamo.item_to_low_level(changes.set_attributes)}
    )
    blobs = set(changes.blob_attributes)
    if item and not changes.replace:
        blobs |= {a for a in spec.large_attributes if a in item} - set(changes.remove_attributes)
    for attribute in blobs:
        uri = keys.s3_uri(spec.bucket, keys.object_key(spec, key, attribute, "0" * 64))
        size += len(attribute) + len(uri) + _META_ENTRY_BYTES
    return size + 128  # version, saga id, update time


def _new_item(args: PutItemArgs) -> dict[str, Any]:
    """The whole item a create writes, in low-level form."""
    item: dict[str, Any] = {
        **dynamo.item_to_low_level(args.key),
        **dynamo.item_to_low_level(args.attributes),
        **{blob.attribute: {"S": blob.uri} for blob in args.blobs},
        args.table.version_attribute: {"N": str(args.expected.version + 1)},
        dynamo.SAGA_ATTRIBUTE: {"S": args.saga_id},
        dynamo.UPDATED_AT_ATTRIBUTE: {"S": args.updated_at},
    }
    if args.blobs:
        item[dynamo.META_ATTRIBUTE] = {
            "M": {
                blob.attribute: dynamo.to_low_level(dynamo.meta_to_wire(blob.meta))
                for blob in args.blobs
            }
        }
    return item


def _meta_after(args: UpdateItemArgs) -> dict[str, Any]:
    """The item's la_meta once the update's blobs replace or remove entries."""
    removed = args.request.remove_blobs
    meta = {name: value for name, value in args.expected.meta.items() if name not in removed}
    meta.update({blob.attribute: blob.meta for blob in args.blobs})
    return {
        "M": {
            name: dynamo.to_low_level(dynamo.meta_to_wire(value))
            for name, value in sorted(meta.items())
        }
    }


def _update_expression(args: UpdateItemArgs, expr: _Expression) -> str:
    """The UpdateExpression of an update: new URIs and la_meta, bookkeeping, the user's
    SET / REMOVE / ADD / DELETE."""
    spec, request = args.table, args.request
    sets = [expr.assign(blob.attribute, {"S": blob.uri}) for blob in args.blobs]
    removes = [expr.name(attribute) for attribute in request.remove_blobs]
    sets.append(expr.assign(dynamo.META_ATTRIBUTE, _meta_after(args)))
    sets.append(expr.assign(spec.version_attribute, {"N": str(args.expected.version + 1)}))
    sets.append(expr.assign(dynamo.SAGA_ATTRIBUTE, {"S": args.saga_id}))
    sets.append(expr.assign(dynamo.UPDATED_AT_ATTRIBUTE, {"S": args.updated_at}))
    for name, value in request.set_attributes.items():
        sets.append(expr.assign(name, dynamo.to_low_level(value)))
    removes += [expr.name(name) for name in request.remove_attributes]
    adds = [
        f"{expr.name(name)} {expr.value(dynamo.to_low_level(value))}"
        for name, value in request.add_attributes.items()
    ]
    deletes = [
        f"{expr.name(name)} {expr.value(dynamo.to_low_level(value))}"
        for name, value in request.delete_from_sets.items()
    ]
    clauses = {"SET": sets, "REMOVE": removes, "ADD": adds, "DELETE": deletes}
    return " ".join(f"{verb} {', '.join(parts)}" for verb, parts in clauses.items() if parts)


class Items:
    """DynamoDB reads and the pivots of the sagas, on an injected boto3 client."""

    def __init__(self, dynamodb: DynamoDBClient) -> None:
        self.dynamodb = dynamodb

    def get_item(self, spec: TableSpec, key: ItemKey) -> dict[str, Any] | None:
        """The item in low-level boto3 form (consistent read), or None."""
        try:
            response = self.dynamodb.get_item(
                TableName=spec.table_name,
                Key=dynamo.item_to_low_level(key),
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as err:
            reraise(err, table=spec.table_name, bucket=spec.bucket)
        item = response.get("Item")
        return dict(item) if item else None

    def read_item(
        self, spec: TableSpec, key: ItemKey, changes: ItemChanges | None = None
    ) -> ItemState:
        """The saga's first step: what is there now, and would the change still fit?"""
        item = self.get_item(spec, key)
        state = dynamo.item_state(spec, item)
        if changes is not None:
            dynamo.check_item_size(
                size_after(spec, key, item, changes), f"item {keys.item_path(spec, key)}"
            )
        return state

    def referenced_keys(self, spec: TableSpec, key: ItemKey) -> set[str]:
        """Object keys, in the table's bucket and prefix, that the item references now."""
        state = dynamo.item_state(spec, self.get_item(spec, key))
        return {
            keys.parse_s3_uri(uri)[1] for uri in state.refs.values() if keys.owned_by(spec, uri)
        }

    def _pivot(
        self, spec: TableSpec, write: Callable[..., Any], **request: Any
    ) -> tuple[ItemState, bool]:
        """Send a conditional write. Returns (the item before it, True) when it committed,
        or (the item as it is now, False) when its condition failed."""
        try:
            response = write(
                TableName=spec.table_name,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
        except ClientError as err:
            if not is_conditional_failure(err):
                reraise(err, table=spec.table_name, bucket=spec.bucket)
            return dynamo.item_state(spec, err.response.get("Item")), False  # type: ignore[arg-type]
        except BotoCoreError as err:
            reraise(err, table=spec.table_name)
        return dynamo.item_state(spec, response.get("Attributes")), True

    def put_item(self, args: PutItemArgs) -> PivotResult:
        """Pivot of create: put the item if it is still as the read step saw it."""
        spec, expected = args.table, args.expected
        new_refs = {blob.attribute: blob.uri for blob in args.blobs}
        item = _new_item(args)
        dynamo.check_item_size(dynamo.item_size(item), f"item {keys.item_path(spec, args.key)}")
        expr = _Expression()
        if expected.exists:
            condition = expr.version_is(spec, expected.version)
        else:
            condition = f"attribute_not_exists({expr.name(spec.partition_key)})"
        state, committed = self._pivot(
            spec, self.dynamodb.put_item, Item=item, ConditionExpression=condition, **expr.kwargs()
        )
        if committed:
            superseded = _superseded(spec, state.refs, state.refs, new_refs)
            return PivotResult(version=expected.version + 1, superseded=superseded)
        if state.exists and state.saga_id == args.saga_id:
            # Our own earlier attempt committed; its response was lost.
            superseded = _superseded(spec, expected.refs, expected.refs, new_refs)
            return PivotResult(version=state.version, superseded=superseded)
        if state.exists and not expected.exists:
            version = f" (version {state.version})" if state.version else ""
            raise ItemAlreadyExists(
                f"item {keys.item_path(spec, args.key)} already exists{version}; "
                "use update, or create with overwrite=True"
            )
        raise VersionConflict(
            f"item {keys.item_path(spec, args.key)} changed while the saga ran "
            f"(expected version {expected.version}, found "
            f"{state.version if state.exists else 'no item'}); re-read it and retry",
            expected=expected.version,
            found=state.version,
        )

    def update_item(self, args: UpdateItemArgs) -> PivotResult:
        """Pivot of update: one UpdateItem with the version condition."""
        spec, request, expected = args.table, args.request, args.expected
        expr = _Expression()
        update = _update_expression(args, expr)
        condition = expr.version_is(spec, expected.version)
        changed = [blob.attribute for blob in args.blobs] + list(request.remove_blobs)
        new_refs = {
            **{a: u for a, u in expected.refs.items() if a not in changed},
            **{blob.attribute: blob.uri for blob in args.blobs},
        }
        state, committed = self._pivot(
            spec,
            self.dynamodb.update_item,
            Key=dynamo.item_to_low_level(request.key),
            UpdateExpression=update,
            ConditionExpression=condition,
            **expr.kwargs(),
        )
        if committed:
            superseded = _superseded(spec, state.refs, changed, new_refs)
            return PivotResult(version=expected.version + 1, superseded=superseded)
        if state.exists and state.saga_id == args.saga_id:
            superseded = _superseded(spec, expected.refs, changed, new_refs)
            return PivotResult(version=state.version, superseded=superseded)
        if not state.exists:
            raise ItemNotFound(
                f"item {keys.item_path(spec, request.key)} was deleted while the update "
                "ran; create it instead"
            )
        raise VersionConflict(
            f"item {keys.item_path(spec, request.key)} changed while the update ran "
            f"(expected version {expected.version}, found {state.version}); "
            "re-read it and retry",
            expected=expected.version,
            found=state.version,
        )

    def adopt_item(self, args: AdoptItemArgs) -> PivotResult:
        """Pivot of adopt: the copies replace the pynamodb_mate URIs, with la_meta and a
        version, if the item is still as read: same version and the same old URIs (a
        pynamodb_mate writer changes the URIs, not the version)."""
        spec, expected = args.table, args.expected
        item = keys.item_path(spec, args.key)
        dynamo.check_item_size(
            expected.size_bytes
            + sum(len(b.uri) + _META_ENTRY_BYTES for b in args.blobs)
            + 128,  # version, saga id, update time
            f"item {item} once adopted",
        )
        meta = {**expected.meta, **{blob.attribute: blob.meta for blob in args.blobs}}
        expr = _Expression()
        sets = [expr.assign(blob.attribute, {"S": blob.uri}) for blob in args.blobs]
        sets.append(
            expr.assign(
                dynamo.META_ATTRIBUTE,
                {
                    "M": {
                        name: dynamo.to_low_level(dynamo.meta_to_wire(value))
                        for name, value in sorted(meta.items())
                    }
                },
            )
        )
        sets.append(expr.assign(spec.version_attribute, {"N": str(expected.version + 1)}))
        sets.append(expr.assign(dynamo.SAGA_ATTRIBUTE, {"S": args.saga_id}))
        sets.append(expr.assign(dynamo.UPDATED_AT_ATTRIBUTE, {"S": args.updated_at}))
        condition = " AND ".join(
            [expr.version_is(spec, expected.version)]
            + [f"{expr.name(o.attribute)} = {expr.value({'S': o.uri})}" for o in args.replaced]
        )
        superseded = tuple(old.uri for old in args.replaced)
        state, committed = self._pivot(
            spec,
            self.dynamodb.update_item,
            Key=dynamo.item_to_low_level(args.key),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=condition,
            **expr.kwargs(),
        )
        if committed:
            return PivotResult(version=expected.version + 1, superseded=superseded)
        if state.exists and state.saga_id == args.saga_id:
            return PivotResult(version=state.version, superseded=superseded)
        if not state.exists:
            raise ItemNotFound(f"item {item} was deleted while it was adopted; nothing to adopt")
        changed = sorted(
            old.attribute for old in args.replaced if state.refs.get(old.attribute) != old.uri
        )
        raise VersionConflict(
            f"item {item} changed while it was adopted ("
            + (f"{', '.join(changed)} now hold other URIs" if changed else "its version moved")
            + "); its new values were kept and the copies removed: run adopt again",
            expected=expected.version,
            found=state.version,
        )

    def delete_item(self, args: DeleteItemArgs) -> PivotResult:
        """Pivot of delete: remove the item if it is still at the version read."""
        spec, expected = args.table, args.expected
        expr = _Expression()
        condition = expr.version_is(spec, expected.version)
        state, committed = self._pivot(
            spec,
            self.dynamodb.delete_item,
            Key=dynamo.item_to_low_level(args.key),
            ConditionExpression=condition,
            **expr.kwargs(),
        )
        if committed:
            superseded = _superseded(spec, state.refs, state.refs, {})
            return PivotResult(version=state.version, superseded=superseded)
        if not state.exists:
            # Gone since the read step: our own earlier attempt (its response lost) or
            # another deleter. Either way the objects the read saw are unreferenced.
            superseded = _superseded(spec, expected.refs, expected.refs, {})
            return PivotResult(version=expected.version, superseded=superseded)
        raise VersionConflict(
            f"item {keys.item_path(spec, args.key)} changed since it was read "
            f"(expected version {expected.version}, found {state.version}); "
            "re-read it and retry",
            expected=expected.version,
            found=state.version,
        )
