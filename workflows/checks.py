"""A saga's own input checks: the client makes them too, but a saga can be started with a
plain Temporal client. Pure, so deterministic; a failure ends the saga before it reads or
writes anything."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from largeattr import keys, table
    from largeattr.errors import InvalidInput, ItemNotFound, VersionConflict
    from largeattr.messages import BlobInput, ItemKey, ItemState, TableSpec


def check_request(
    spec: TableSpec,
    key: ItemKey,
    blobs: Sequence[BlobInput] = (),
    plain: dict[str, Sequence[str]] | None = None,
    removed_blobs: Sequence[str] = (),
) -> None:
    """The key, the blobs and the plain attributes (by what they are for: "attributes",
    "update set"...) are the table's, and the saga runs under the item's workflow id."""
    check_workflow_id(spec, key)
    names = [b.attribute for b in blobs] + list(removed_blobs)
    table.check_request(spec, key, names, plain)


def check_workflow_id(spec: TableSpec, key: ItemKey) -> None:
    """The workflow id is the per-item lock: a saga under any other id could run beside
    another saga on the same item (and delete an object that one just referenced)."""
    expected = keys.workflow_id(spec, key)
    if workflow.info().workflow_id != expected:
        raise InvalidInput(
            f"this saga must run with workflow id {expected!r} (LargeAttrTable.workflow_id), "
            f"not {workflow.info().workflow_id!r}: the id keeps operations on one item apart"
        )


def require_version(state: ItemState, expected: int | None, item: str, if_missing: str) -> None:
    """The read step's verdict: the item exists, at the version the caller expects."""
    if not state.exists:
        raise ItemNotFound(f"item {item} does not exist; {if_missing}")
    if expected is not None and expected != state.version:
        raise VersionConflict(
            f"item {item} is at version {state.version}, not {expected}; re-read it and retry",
            expected=expected,
            found=state.version,
        )
