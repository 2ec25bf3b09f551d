"""The ``largeattr`` command: demo, dev stack, worker, setup, get."""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from largeattr import dynamo, keys
from largeattr.aws_errors import reraise
from largeattr.config import AwsConfig, exit_now
from largeattr.errors import (
    InvalidInput,
    InvalidKey,
    ItemNotFound,
    LargeAttrError,
    UnknownAttribute,
)
from largeattr.messages import TableSpec
from largeattr.read import Reader, item_from_low_level
from largeattr.storage import Storage


def _aws_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aws-endpoint-url", help="S3/DynamoDB endpoint; unset = AWS")
    parser.add_argument("--region", help="AWS region")


def _aws(args: argparse.Namespace) -> AwsConfig:
    return AwsConfig.from_env(endpoint_url=args.aws_endpoint_url, region_name=args.region)


def _table(args: argparse.Namespace, **extra: Any) -> Any:
    from largeattr.table import LargeAttrTable

    return LargeAttrTable(
        table_name=args.table,
        partition_key=args.partition_key,
        sort_key=args.sort_key,
        bucket=args.bucket,
        prefix=args.prefix,
        large_attributes=tuple(a for a in args.large.split(",") if a),
        **extra,
    )


def _table_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--table", required=required, help="DynamoDB table name")
    parser.add_argument("--partition-key", default="pk")
    parser.add_argument("--sort-key")
    parser.add_argument("--bucket", required=required)
    parser.add_argument("--prefix", required=required)
    parser.add_argument("--large", required=required, help="large attributes, comma-separated")


def cmd_demo(args: argparse.Namespace) -> int:
    from largeattr.demo import main

    return main(keep=args.keep, data_dir=args.data_dir)


def cmd_dev(args: argparse.Namespace) -> int:
    from largeattr.devstack import embedded_stack

    with embedded_stack(args.data_dir) as stack:
        print(f"Temporal    : {stack.temporal_address}  (Web UI {stack.ui_url})")
        print(f"S3+DynamoDB : {stack.aws_endpoint}")
        print("Ctrl-C to stop.")
        try:
            while all(p.poll() is None for p in stack.processes):
                import time

                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from largeattr import worker

    asyncio.run(worker.run_worker(args))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from largeattr.provision import setup

    table_flags = {flag: getattr(args, flag) for flag in ("table", "bucket", "prefix", "large")}
    if not any(table_flags.values()) and not args.search_attributes:
        raise InvalidInput(
            "give --table, --bucket, --prefix and --large to set up a table, and/or "
            "--search-attributes to register the search attributes on Temporal"
        )
    if any(table_flags.values()):
        missing = [f"--{flag}" for flag, value in table_flags.items() if not value]
        if missing:
            raise InvalidInput(f"setting up a table needs {', '.join(missing)} too")
        table = _table(args)
        s3, dynamodb = _aws(args).clients()
        # The client's region includes the profile's: the bucket must be created where it signs.
        region = s3.meta.region_name
        done = setup(s3, dynamodb, table, region, args.partition_key_type, args.sort_key_type)
        for name, value in done.items():
            print(f"{name}: {value}")
    if args.search_attributes:
        from largeattr.config import connect_temporal
        from largeattr.provision import ensure_search_attributes
        from largeattr.search_attributes import SEARCH_ATTRIBUTES

        async def register() -> tuple[str, dict[str, str]]:
            temporal = await connect_temporal(args.address, args.namespace)
            return temporal.namespace, await ensure_search_attributes(temporal)

        namespace, registered = asyncio.run(register())
        for name, state in registered.items():
            print(f"search attribute {name} ({SEARCH_ATTRIBUTES[name]}) on {namespace}: {state}")
    return 0


def _byte_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]+)-([0-9]+)", text.strip())
    if not match or int(match[1]) > int(match[2]):
        raise InvalidInput(
            f"--range {text!r}: give FIRST-LAST, two byte offsets with FIRST <= LAST "
            "(both inclusive), e.g. --range 0-99"
        )
    return int(match[1]), int(match[2])


def _key_parts(parts: Sequence[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for part in parts:
        name, equals, text = part.partition("=")
        if not equals or not name:
            raise InvalidInput(f"--key {part!r}: give NAME=VALUE, e.g. --key pk=id-1")
        if name in given:
            raise InvalidInput(f"--key {name} is given twice")
        given[name] = text
    return given


def _key_value(name: str, text: str, kind: str) -> dict[str, Any]:
    try:
        if kind == "N":
            value = {"N": keys.canonical_number(text)}
        elif kind == "B":
            value = {"B": base64.b64encode(bytes.fromhex(text)).decode()}
        else:
            value = {"S": text}
        keys.key_value_text(value)  # refuses what DynamoDB would (an empty value...)
    except ValueError as err:  # InvalidKey is a ValueError too
        hint = " (the table stores it as bytes: give them in hex)" if kind == "B" else ""
        raise InvalidKey(f"--key {name}={text}: {err}{hint}") from None
    return value


def cmd_get(args: argparse.Namespace) -> int:
    byte_range = _byte_range(args.range) if args.range else None
    given = _key_parts(args.key)
    s3, dynamodb = _aws(args).clients()
    try:
        described = dynamodb.describe_table(TableName=args.table)["Table"]
    except (ClientError, BotoCoreError) as err:
        reraise(err, table=args.table)
    types = {d["AttributeName"]: d["AttributeType"] for d in described["AttributeDefinitions"]}
    schema = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
    names = list(schema.values())
    usage = " ".join(f"--key {name}=VALUE" for name in names)
    for name in given:
        if name not in names:
            raise InvalidInput(f"--key {name}: {args.table} has no key {name!r}; give {usage}")
    for name in names:
        if name not in given:
            raise InvalidInput(f"--key {name}=VALUE is missing; {args.table} needs {usage}")
    key = {name: _key_value(name, given[name], types[name]) for name in names}
    spec = TableSpec(
        table_name=args.table,
        partition_key=schema["HASH"],
        sort_key=schema.get("RANGE"),
        bucket="-",
        prefix="-",
        large_attributes=(args.attr,),
    )
    reader = Reader(Storage(s3, dynamodb))
    raw = reader.storage.items.get_item(spec, key)
    if raw is None:
        raise ItemNotFound(f"no item {keys.item_path(spec, key)} in table {args.table}")
    _check_large_attribute(raw, args.attr, keys.item_path(spec, key))
    ref = item_from_low_level(spec, raw).blob(args.attr)
    if args.presign is not None:
        print(reader.presigned_url(ref, args.presign))
        return 0
    if args.output and byte_range is None:
        size = reader.download(ref, args.output)
        print(f"{ref.uri}: {size:,} bytes -> {args.output} (sha256 verified)", file=sys.stderr)
        return 0
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    try:
        for chunk in reader.iter_chunks(ref, byte_range=byte_range):
            out.write(chunk)
    finally:
        out.flush()
        if args.output:
            out.close()
    return 0


def _check_large_attribute(raw: dict[str, Any], name: str, item: str) -> None:
    """``get`` knows no declaration: what the item holds says which attributes are large
    (an s3:// URI, or an entry in la_meta)."""
    recorded = set(raw.get(dynamo.META_ATTRIBUTE, {}).get("M", {}))
    large = sorted(
        attribute
        for attribute, value in raw.items()
        if str(value.get("S", "")).startswith("s3://") or attribute in recorded
    )
    has = f"its large attributes are {', '.join(large)}" if large else "it has no large attribute"
    value = raw.get(name)
    if value is None:
        raise UnknownAttribute(f"item {item} has no attribute {name!r}; {has}")
    if name in large:
        return
    if value.get("S") == "":
        raise UnknownAttribute(f"item {item} has an empty {name!r}: no bytes to read; {has}")
    raise InvalidInput(
        f"{name!r} is a plain attribute of item {item}, not a large attribute: its value is "
        f"in the item itself, not in S3 (read it with `aws dynamodb get-item`); {has}"
    )


def cmd_check(args: argparse.Namespace) -> int:
    from largeattr.check import check_drift, check_storage, known_keys

    table = _table(args)
    s3, dynamodb = _aws(args).clients()
    storage = Storage(s3, dynamodb)
    report = check_storage(storage, table.spec, verify_bytes=not args.no_bytes)
    if args.address:
        from largeattr.config import connect_temporal

        async def drift() -> None:
            temporal = await connect_temporal(args.address, args.namespace)
            keys = known_keys(storage, table.spec)
            report.drift.extend(await check_drift(storage, table.spec, temporal, keys))

        asyncio.run(drift())
    young = [o for o in report.orphans if o.age_seconds < args.orphan_grace]
    report.orphans = [o for o in report.orphans if o.age_seconds >= args.orphan_grace]
    for line in report.lines():
        print(line)
    if young:
        print(f"({len(young)} unreferenced objects younger than {args.orphan_grace:.0f}s ignored)")
    return 0 if report.ok() else 1


def cmd_reconcile(args: argparse.Namespace) -> int:
    from largeattr.client import LargeAttrClient
    from largeattr.messages import SagaOptions

    table = _table(args, options=SagaOptions(delete_old_objects=not args.keep_old_versions))

    async def run() -> None:
        la = await LargeAttrClient.connect(
            args.address, args.namespace, task_queue=args.task_queue, aws=_aws(args)
        )
        async with la:
            result = await la.reconcile(table, grace_seconds=args.grace, dry_run=args.dry_run)
        for name, value in vars(result).items():
            print(f"{name}: {value}")

    asyncio.run(run())
    return 0


def cmd_schedule_reconcile(args: argparse.Namespace) -> int:
    from largeattr.config import connect_temporal
    from largeattr.messages import SagaOptions
    from largeattr.schedule import (
        parse_every,
        remove_reconcile_schedule,
        schedule_id,
        schedule_reconcile,
    )

    if args.remove:

        async def remove() -> bool:
            temporal = await connect_temporal(args.address, args.namespace)
            return await remove_reconcile_schedule(temporal, args.table)

        removed = asyncio.run(remove())
        print(f"{'removed' if removed else 'no schedule'} {schedule_id(args.table)}")
        return 0
    missing = [f"--{n}" for n in ("every", "bucket", "prefix", "large") if not getattr(args, n)]
    if missing:
        raise InvalidInput(f"give {', '.join(missing)} (or --remove to delete the schedule)")
    every = parse_every(args.every)
    table = _table(args, options=SagaOptions(delete_old_objects=not args.keep_old_versions))

    async def apply() -> bool:
        temporal = await connect_temporal(args.address, args.namespace)
        _, created = await schedule_reconcile(
            temporal, table, every, task_queue=args.task_queue, grace_seconds=args.grace
        )
        return created

    created = asyncio.run(apply())
    print(f"{'created' if created else 'updated'} {schedule_id(args.table)}: every {every}")
    return 0


def _schedule_commands(commands: Any) -> None:
    """``largeattr schedule reconcile TABLE --every 6h [--grace S] [--remove]``."""
    schedule = commands.add_parser("schedule", help="Temporal Schedules of largeattr workflows")
    kinds = schedule.add_subparsers(dest="schedule_kind", required=True)
    reconcile = kinds.add_parser(
        "reconcile", help="create, update or remove a table's reconcile schedule"
    )
    reconcile.add_argument("table", help="DynamoDB table name")
    reconcile.add_argument("--every", help="interval, e.g. 6h, 30m, 1h30m")
    reconcile.add_argument("--grace", type=int, default=900, metavar="SECONDS")
    reconcile.add_argument("--remove", action="store_true", help="delete the schedule")
    reconcile.add_argument("--partition-key", default="pk")
    reconcile.add_argument("--sort-key")
    reconcile.add_argument("--bucket")
    reconcile.add_argument("--prefix")
    reconcile.add_argument("--large", help="large attributes, comma-separated")
    reconcile.add_argument("--keep-old-versions", action="store_true")
    reconcile.add_argument("--address")
    reconcile.add_argument("--namespace")
    reconcile.add_argument("--task-queue", default="largeattr")
    reconcile.set_defaults(run=cmd_schedule_reconcile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="largeattr",
        description="Durable sagas on Temporal for DynamoDB items with large attributes in S3",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded stack")
    demo.add_argument("--keep", action="store_true", help="keep the stack running (Ctrl-C)")
    demo.add_argument("--data-dir", default=".largeattr")
    demo.set_defaults(run=cmd_demo)

    dev = commands.add_parser("dev", help="start the embedded Temporal + S3/DynamoDB stack")
    dev.add_argument("--data-dir", default=".largeattr")
    dev.set_defaults(run=cmd_dev)

    from largeattr import worker

    work = commands.add_parser("worker", help="run a worker (same as python worker.py)")
    worker.add_arguments(work)
    work.set_defaults(run=cmd_worker)

    setup = commands.add_parser(
        "setup",
        help="create the table, bucket and lifecycle rules; with --search-attributes, "
        "register the search attributes the Web UI filters sagas by",
    )
    _table_arguments(setup, required=False)
    setup.add_argument("--partition-key-type", default="S", choices=["S", "N", "B"])
    setup.add_argument("--sort-key-type", default="S", choices=["S", "N", "B"])
    setup.add_argument(
        "--search-attributes",
        action="store_true",
        help="register LaTable, LaItem, LaOperation, LaOutcome, LaBytesWritten on the "
        "Temporal namespace (operator API; idempotent)",
    )
    setup.add_argument("--address", help="Temporal address (default: env config, then local)")
    setup.add_argument("--namespace", help="Temporal namespace (default: env config, default)")
    _aws_arguments(setup)
    setup.set_defaults(run=cmd_setup)

    get = commands.add_parser("get", help="stream a large attribute to stdout or a file")
    get.add_argument("--table", required=True)
    get.add_argument("--key", action="append", required=True, metavar="NAME=VALUE")
    get.add_argument("--attr", required=True, help="the large attribute to read")
    get.add_argument("-o", "--output", help="file to write (default: stdout)")
    get.add_argument("--range", help="bytes FIRST-LAST (inclusive), not verified")
    get.add_argument("--presign", type=int, metavar="SECONDS", help="print a presigned URL")
    _aws_arguments(get)
    get.set_defaults(run=cmd_get)

    check = commands.add_parser(
        "check", help="report dangling references, orphans and drift (exit 1 if any)"
    )
    _table_arguments(check)
    check.add_argument("--address", help="Temporal address: also check drift against sagas")
    check.add_argument("--namespace")
    check.add_argument("--no-bytes", action="store_true", help="HEAD only; do not hash bytes")
    check.add_argument(
        "--orphan-grace",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="ignore unreferenced objects younger than this (a saga may be running)",
    )
    _aws_arguments(check)
    check.set_defaults(run=cmd_check)

    reconcile = commands.add_parser(
        "reconcile", help="delete unreferenced objects (runs the Reconcile workflow)"
    )
    _table_arguments(reconcile)
    reconcile.add_argument("--address")
    reconcile.add_argument("--namespace")
    reconcile.add_argument("--task-queue", default="largeattr")
    reconcile.add_argument("--grace", type=int, default=900, metavar="SECONDS")
    reconcile.add_argument("--dry-run", action="store_true")
    reconcile.add_argument("--keep-old-versions", action="store_true")
    _aws_arguments(reconcile)
    reconcile.set_defaults(run=cmd_reconcile)
    _schedule_commands(commands)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (2: a LargeAttrError, printed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        return int(args.run(args))
    except LargeAttrError as err:
        print(f"largeattr: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    """The ``largeattr`` console script."""
    exit_now(run(argv))
