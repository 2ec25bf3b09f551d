"""``largeattr put / rm / ls / history``: items from the shell, through the same sagas as
the Python client (``LargeAttrClient``)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from largeattr import dynamo, keys, search_attributes
from largeattr.aws_errors import reraise
from largeattr.blobinputs import Blob
from largeattr.cliconfig import CliConfig, TableDecl, aws_config, table_decl, temporal_target
from largeattr.cliout import ProgressLine, emit, plain, result_lines
from largeattr.devstack import workflow_url
from largeattr.errors import InvalidInput, InvalidKey
from largeattr.messages import ItemResult, TableSpec
from largeattr.transfer.config import human_size

# ---------------------------------------------------------------- tables and keys


def key_schema(decl: TableDecl, dynamodb: Any) -> tuple[list[str], dict[str, str]]:
    """The table's key attribute names (partition first) and their types (S, N, B): as
    declared, else as DynamoDB describes the table."""
    declared = [name for name in (decl.partition_key, decl.sort_key) if name]
    if declared and all(name in decl.key_types for name in declared):
        return declared, decl.key_types
    try:
        described = dynamodb.describe_table(TableName=decl.table_name)["Table"]
    except (ClientError, BotoCoreError) as err:
        reraise(err, table=decl.table_name)
    types = {d["AttributeName"]: d["AttributeType"] for d in described["AttributeDefinitions"]}
    schema = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
    names = [schema["HASH"], *([schema["RANGE"]] if "RANGE" in schema else [])]
    if declared and declared != names:
        raise InvalidInput(
            f"table {decl.name!r} is declared with key {declared}, but DynamoDB table "
            f"{decl.table_name} has {names}; fix the declaration"
        )
    return names, types


def spec_for(decl: TableDecl, names: Sequence[str]) -> TableSpec:
    """Enough of a table to name its items and their workflow ids (reads need no bucket)."""
    return TableSpec(
        table_name=decl.table_name,
        partition_key=names[0],
        sort_key=names[1] if len(names) > 1 else None,
        bucket=decl.bucket or "-",
        prefix=decl.prefix or "-",
        large_attributes=decl.large,
        version_attribute=decl.version_attribute,
    )


def parse_key(
    texts: Sequence[str], names: Sequence[str], types: Mapping[str, str]
) -> dict[str, Any]:
    """``KEY...`` as given: values in key order (``id-1 rev-2``) or ``NAME=VALUE`` pairs.
    A value that starts with a key name and ``=`` is a pair (write ``pk=pk=x`` for the
    value ``pk=x``)."""
    usage = " ".join(f"{name.upper()}" for name in names)
    given: dict[str, str] = {}
    positional: list[str] = []
    for text in texts:
        name, equals, value = text.partition("=")
        if equals and name in names:
            if name in given:
                raise InvalidInput(f"key {name} is given twice")
            given[name] = value
        else:
            positional.append(text)
    for name in names:
        if name not in given and positional:
            given[name] = positional.pop(0)
    if positional:
        raise InvalidInput(f"too many key values {positional}; the key is {usage}")
    missing = [name for name in names if name not in given]
    if missing:
        raise InvalidInput(f"the key needs {', '.join(missing)}; give {usage} (or NAME=VALUE)")
    return {name: _key_value(name, given[name], types.get(name, "S")) for name in names}


def _key_value(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "N":
            return Decimal(keys.canonical_number(text))
        if kind == "B":
            return bytes.fromhex(text)
    except ValueError as err:  # InvalidKey is a ValueError too
        hint = " (the table stores it as bytes: give them in hex)" if kind == "B" else ""
        raise InvalidKey(f"key {name}={text}: {err}{hint}") from None
    return text


def _plain_value(text: str) -> Any:
    """``--set`` values: JSON numbers, true/false/null, quoted strings, lists and objects
    are parsed; anything else is the text itself."""

    def no_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_float=Decimal, parse_constant=no_constant)
    except ValueError:
        return text


def _pairs(values: Sequence[str], flag: str, example: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name:
            raise InvalidInput(f"{flag} {value!r}: give NAME=VALUE, e.g. {flag} {example}")
        if name in out:
            raise InvalidInput(f"{flag} {name} is given twice")
        out[name] = rest
    return out


# ---------------------------------------------------------------- blobs from the shell


def _stdin_blob(inline_threshold: int) -> Any:
    """stdin as a blob: a redirected file as itself (seekable: retried uploads, known size);
    a pipe read up to the inline threshold, and streamed if it goes on."""
    stdin = sys.stdin.buffer
    try:
        regular = stat.S_ISREG(os.fstat(stdin.fileno()).st_mode)
    except (OSError, ValueError):  # io.UnsupportedOperation: no file descriptor
        regular = False
    if regular:
        return stdin
    head = stdin.read(inline_threshold + 1)
    if len(head) <= inline_threshold:
        return head

    def rest() -> Iterator[bytes]:
        yield head
        while chunk := stdin.read(1024 * 1024):
            yield chunk

    return rest()


def parse_blobs(
    values: Sequence[str], content_types: Mapping[str, str], inline_threshold: int
) -> dict[str, Blob]:
    """``--blob attr=@file | attr=- | attr=text``."""
    blobs: dict[str, Blob] = {}
    from_stdin = False
    for name, value in _pairs(values, "--blob", "html=@page.html").items():
        content_type = content_types.get(name)
        if value == "-":
            if from_stdin:
                raise InvalidInput("only one --blob can read stdin (-)")
            from_stdin = True
            data: Any = _stdin_blob(inline_threshold)
        elif value.startswith("@"):
            if value == "@":
                raise InvalidInput(f"--blob {name}=@: give a file name after @")
            data = Path(value[1:])
            if not data.is_file():
                raise InvalidInput(f"--blob {name}={value}: {data} is not a readable file")
        else:
            data = value.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        blobs[name] = Blob(data, content_type=content_type)
    unknown = set(content_types) - set(blobs)
    if unknown:
        raise InvalidInput(f"--content-type for {sorted(unknown)}, which no --blob gives")
    return blobs


# ---------------------------------------------------------------- put / rm


def _result_data(result: ItemResult, workflow_id: str, run_id: str, url: str | None) -> Any:
    return {
        "operation": result.operation,
        "table": result.table_name,
        "key": {name: dynamo.from_wire(value) for name, value in result.key.items()},
        "version": result.version,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "web_ui": url,
        "objects": [
            {
                "attribute": blob.attribute,
                "uri": blob.uri,
                "size": blob.meta.size,
                "sha256": blob.meta.sha256,
                "content_type": blob.meta.content_type,
                "uploaded": blob.created,
            }
            for blob in result.blobs
        ],
        "deleted_objects": list(result.deleted_objects),
    }


async def _write(args: argparse.Namespace, config: CliConfig, operation: str) -> int:
    from largeattr.client import LargeAttrClient

    decl = table_decl(args.table, config, args)
    table = decl.table()
    target = temporal_target(args, config)
    aws = aws_config(args, config)
    la = await LargeAttrClient.connect(
        target.address,
        target.namespace,
        task_queue=target.task_queue,
        aws=aws,
    )
    progress: ProgressLine | None = None
    async with la:
        names, types = key_schema(decl, la.storage.dynamodb)
        key = parse_key(args.key, names, types)
        if operation == "delete":
            handle = await la.start_delete(table, key, expected_version=args.expected_version)
        else:
            blobs: dict[str, Any] = parse_blobs(
                args.blob,
                _pairs(args.content_type, "--content-type", "html=text/html"),
                la.transfer.inline_threshold,
            )
            attributes = {n: _plain_value(v) for n, v in _pairs(args.set, "--set", "n=1").items()}
            progress = ProgressLine.for_terminal(f"uploading to {table.table_name}")
            if args.update:
                remove = [name for name in args.remove if name not in table.large_attributes]
                blobs.update({name: None for name in args.remove if name not in remove})
                handle = await la.start_update(
                    table,
                    key,
                    blobs,
                    set=attributes,
                    remove=remove,
                    expected_version=args.expected_version,
                    on_progress=progress,
                )
            else:
                if args.remove:
                    raise InvalidInput("--remove changes an item: give --update too")
                if args.expected_version is not None:
                    raise InvalidInput(
                        "--expected-version applies to --update (and rm); a create expects "
                        "no item, and --overwrite replaces whatever version is there"
                    )
                handle = await la.start_create(
                    table, key, blobs, attributes, overwrite=args.overwrite, on_progress=progress
                )
        try:
            result = await la.result(handle)
        finally:
            if progress is not None:
                progress.close()
    run_id = handle.result_run_id or handle.run_id or ""
    url = (
        workflow_url(target.ui_url, target.namespace or "default", handle.id, run_id)
        if (target.ui_url)
        else None
    )
    item = keys.item_path(table.spec, result.key)
    done = {"create": "created", "update": "updated", "delete": "deleted"}[result.operation]
    emit(
        args.json,
        _result_data(result, handle.id, run_id, url),
        [f"{done} {item} in {table.table_name}", *result_lines(result, handle.id, url)],
    )
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    config: CliConfig = args.cli_config
    if args.update and args.overwrite:
        raise InvalidInput(
            "--update and --overwrite exclude each other: update changes an "
            "item in place; create --overwrite replaces it whole"
        )
    return asyncio.run(_write(args, config, "update" if args.update else "create"))


def cmd_rm(args: argparse.Namespace) -> int:
    config: CliConfig = args.cli_config
    return asyncio.run(_write(args, config, "delete"))


# ---------------------------------------------------------------- ls


def _encode_token(last_key: Mapping[str, Any]) -> str:
    wire = dynamo.item_from_low_level(last_key)
    return base64.urlsafe_b64encode(json.dumps(wire).encode()).decode().rstrip("=")


def _decode_token(token: str, names: Sequence[str]) -> dict[str, Any]:
    try:
        wire = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(wire, dict) or not set(names) <= set(wire):
            raise ValueError(token)
        return dynamo.item_to_low_level(wire)
    except (ValueError, binascii.Error, TypeError, AttributeError):
        raise InvalidInput(
            f"--page-token {token!r} is not a token `largeattr ls` printed for this table"
        ) from None


def cmd_ls(args: argparse.Namespace) -> int:
    config: CliConfig = args.cli_config
    if not 1 <= args.limit <= 1000:
        raise InvalidInput("--limit takes 1 to 1000 items per page")
    decl = table_decl(args.table, config, args)
    _, dynamodb = aws_config(args, config).clients()
    names, _ = key_schema(decl, dynamodb)
    spec = spec_for(decl, names)
    wanted = [*names, spec.version_attribute, dynamo.META_ATTRIBUTE, dynamo.UPDATED_AT_ATTRIBUTE]
    request: dict[str, Any] = {
        "TableName": decl.table_name,
        "Limit": args.limit,
        "ProjectionExpression": ", ".join(f"#a{i}" for i in range(len(wanted))),
        "ExpressionAttributeNames": {f"#a{i}": name for i, name in enumerate(wanted)},
    }
    if args.page_token:
        request["ExclusiveStartKey"] = _decode_token(args.page_token, names)
    try:
        page = dynamodb.scan(**request)
    except (ClientError, BotoCoreError) as err:
        reraise(err, table=decl.table_name)
    items = []
    for raw in page.get("Items", []):
        wire = dynamo.item_from_low_level(raw)
        meta = {
            name: dynamo.meta_from_wire(value)
            for name, value in raw.get(dynamo.META_ATTRIBUTE, {}).get("M", {}).items()
        }
        version = raw.get(spec.version_attribute, {}).get("N")
        items.append(
            {
                "item": keys.item_path(spec, dynamo.key_of(spec, wire)),
                "key": {name: dynamo.from_wire(wire[name]) for name in names},
                "version": int(Decimal(version)) if version is not None else None,
                "blobs": {
                    name: {"size": m.size, "content_type": m.content_type}
                    for name, m in sorted(meta.items())
                    if m is not None
                },
                "updated_at": raw.get(dynamo.UPDATED_AT_ATTRIBUTE, {}).get("S"),
            }
        )
    last = page.get("LastEvaluatedKey")
    token = _encode_token(last) if last else None
    emit(
        args.json,
        {"table": decl.table_name, "items": items, "next_page_token": token},
        _ls_lines(items, token, args),
    )
    return 0


def _ls_lines(
    items: list[dict[str, Any]], token: str | None, args: argparse.Namespace
) -> list[str]:
    rows = [
        (
            item["item"],
            "-" if item["version"] is None else str(item["version"]),
            ", ".join(f"{n} {human_size(b['size'])}" for n, b in item["blobs"].items()) or "-",
            item["updated_at"] or "-",
        )
        for item in items
    ]
    header = ("ITEM", "VERSION", "BLOBS", "UPDATED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])), row[3]])
        for row in [header, *rows]
    ]
    if not items:
        lines.append("(no items on this page)")
    if token:
        lines.append(f"next page: largeattr ls {args.table} --page-token {token}")
    return lines


# ---------------------------------------------------------------- history

_STATUS_OUTCOME = {
    "COMPLETED": "committed",
    "RUNNING": "running",
    "CANCELED": "canceled",
    "TERMINATED": "terminated",
    "TIMED_OUT": "timed out",
    "CONTINUED_AS_NEW": "continued",
}


async def _history(args: argparse.Namespace, config: CliConfig) -> int:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

    from largeattr.client import user_error

    decl = table_decl(args.table, config, args)
    if decl.partition_key and all(
        name in decl.key_types for name in (decl.partition_key, decl.sort_key) if name
    ):
        names, types = key_schema(decl, None)
    else:
        _, dynamodb = aws_config(args, config).clients()
        names, types = key_schema(decl, dynamodb)
    spec = spec_for(decl, names)
    wire_key = {
        name: dynamo.to_wire(value) for name, value in parse_key(args.key, names, types).items()
    }
    workflow_id = keys.workflow_id(spec, wire_key)
    target = temporal_target(args, config)
    temporal = await target.connect()
    namespace = temporal.namespace
    runs = []
    # Visibility lists the newest first; --limit keeps the latest operations.
    async for execution in temporal.list_workflows(
        f'WorkflowId = "{workflow_id}"', limit=args.limit
    ):
        status = execution.status.name if execution.status else "UNKNOWN"
        attrs = execution.typed_search_attributes
        outcome = attrs.get(search_attributes.OUTCOME)
        error: dict[str, str] | None = None
        if execution.status == WorkflowExecutionStatus.FAILED:
            handle = temporal.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                await handle.result(follow_runs=False)
            except WorkflowFailureError as err:
                cause = user_error(err)
                error = {"type": type(cause).__name__, "message": str(cause)}
        if not outcome or (outcome == "running" and status != "RUNNING"):
            # The sagas upsert LaOutcome when they end; older runs carry only "running".
            outcome = f"failed: {error['type']}" if error else _STATUS_OUTCOME.get(status, status)
        runs.append(
            {
                "operation": attrs.get(search_attributes.OPERATION)
                or execution.workflow_type.removeprefix("largeattr."),
                "workflow_type": execution.workflow_type,
                "status": status.lower(),
                "outcome": outcome,
                "error": error,
                "start_time": execution.start_time.isoformat(),
                "close_time": execution.close_time.isoformat() if execution.close_time else None,
                "run_id": execution.run_id,
                "web_ui": workflow_url(target.ui_url, namespace, execution.id, execution.run_id)
                if target.ui_url
                else None,
            }
        )
    runs.reverse()  # oldest first: the item's story in order
    item = keys.item_path(spec, wire_key)
    lines = [f"{item} in {decl.table_name} (workflow id {workflow_id}): {len(runs)} operations"]
    for run in runs:
        lines.append(
            f"  {run['start_time'][:23]}  {run['operation']:<9} {run['status']:<10} "
            f"{run['outcome']}"
        )
        if run["error"]:
            lines.append(f"      {run['error']['type']}: {run['error']['message']}")
        lines.append(f"      {run['web_ui'] or 'run ' + run['run_id']}")
    emit(
        args.json,
        {"item": item, "table": decl.table_name, "workflow_id": workflow_id, "operations": runs},
        lines,
    )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    config: CliConfig = args.cli_config
    if not 1 <= args.limit <= 1000:
        raise InvalidInput("--limit takes 1 to 1000 operations")
    return asyncio.run(_history(args, config))


__all__ = ["cmd_history", "cmd_ls", "cmd_put", "cmd_rm", "parse_key", "plain"]
