"""The ``largeattr`` command: demo, dev stack, worker, setup; items (put, rm, ls, history,
get); the checker (check, reconcile); adopt (pynamodb_mate's items).

Tables can be declared once in ``largeattr.toml`` (``largeattr.cliconfig``) and named
instead of repeating ``--table --bucket --prefix --large``. Exit codes: ``EXIT_CODES`` in
``largeattr.cliout`` (0 ok, 1 findings/conflict, 2 usage, 3 not found, 4 unavailable,
5 other failure). An expected failure prints one line, never a traceback (``--debug`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from largeattr import cliitems, codecserver, dynamo, keys
from largeattr.aws_errors import reraise
from largeattr.cliconfig import CliConfig, aws_config, load_config, table_decl, temporal_target
from largeattr.cliout import (
    FAILED,
    FINDINGS,
    USAGE,
    ProgressLine,
    emit,
    expected_error,
    report_error,
)
from largeattr.config import AwsConfig, exit_now
from largeattr.errors import (
    InvalidInput,
    InvalidKey,
    ItemNotFound,
    UnknownAttribute,
)
from largeattr.messages import TableSpec
from largeattr.read import Reader, item_from_low_level
from largeattr.storage import Storage


def _aws_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aws-endpoint-url", help="S3/DynamoDB endpoint; unset = AWS")
    parser.add_argument("--region", help="AWS region")


def _config(args: argparse.Namespace) -> CliConfig:
    config: CliConfig = args.cli_config
    return config


def _aws(args: argparse.Namespace) -> AwsConfig:
    return aws_config(args, _config(args))


def _table(args: argparse.Namespace, keep_old_versions: bool | None = None) -> Any:
    if not args.table:
        raise InvalidInput(
            "give --table NAME: a table declared in largeattr.toml, or a DynamoDB table "
            "with --bucket, --prefix and --large"
        )
    decl = table_decl(args.table, _config(args), args)
    return decl.table(keep_old_versions=keep_old_versions)


def _table_arguments(parser: argparse.ArgumentParser) -> None:
    """The table flags of the first commands; each may come from largeattr.toml instead."""
    parser.add_argument("--table", help="a table of largeattr.toml, or a DynamoDB table name")
    parser.add_argument("--partition-key", help="default: the declaration's, else pk")
    parser.add_argument("--sort-key")
    parser.add_argument("--bucket")
    parser.add_argument("--prefix")
    parser.add_argument("--large", help="large attributes, comma-separated")


def _temporal_arguments(parser: argparse.ArgumentParser, task_queue: bool = True) -> None:
    parser.add_argument("--address", help="Temporal address (default: env, config, local)")
    parser.add_argument("--namespace", help="Temporal namespace (default: env, config, default)")
    if task_queue:
        parser.add_argument("--task-queue", help="the workers' task queue (default: largeattr)")


def cmd_demo(args: argparse.Namespace) -> int:
    from largeattr.demo import Target, main

    existing = None
    if args.address or args.aws_endpoint_url:
        # An existing stack (largeattr dev in another shell, docker compose): nothing starts.
        target = temporal_target(args, _config(args))
        existing = Target(
            temporal_address=target.address or "127.0.0.1:7233",
            aws=_aws(args),
            ui_url=target.ui_url,
            namespace=target.namespace or "default",
            embedded=False,
        )
    return main(keep=args.keep, data_dir=args.data_dir, existing=existing)


def cmd_dev(args: argparse.Namespace) -> int:
    from largeattr.devstack import embedded_stack, free_port

    # With a codec keyring in the environment, the Web UI decodes through a codec server
    # this command runs (loopback, open to the UI's origin only).
    ui_port = free_port(8233)
    codec_url = codecserver.serve_for_ui(ui_port)
    with embedded_stack(args.data_dir, ui_port=ui_port, ui_codec_endpoint=codec_url) as stack:
        print(f"Temporal    : {stack.temporal_address}  (Web UI {stack.ui_url})")
        print(f"S3+DynamoDB : {stack.aws_endpoint}")
        if codec_url:
            print(f"Codec server: {codec_url}  (the Web UI decodes with the environment's keys)")
        print("From another shell, point largeattr (and boto3, the Temporal CLI) at it:")
        for line in stack.export_lines():
            print(f"  {line}")
        if codec_url:
            print(f"  export TEMPORAL_CODEC_ENDPOINT={codec_url}   # for `temporal workflow show`")
            print("  (and the same LARGEATTR_CODEC_KEY_FILE or LARGEATTR_CODEC_KEYS)")
        print("Ctrl-C to stop.", flush=True)
        try:
            while all(p.poll() is None for p in stack.processes):
                import time

                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from largeattr import telemetry, worker

    telemetry.configure_logging(args.log_format)
    asyncio.run(worker.run_worker(args))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from largeattr.provision import setup

    table_flags = [args.table, args.bucket, args.prefix, args.large]
    if not any(table_flags) and not args.search_attributes:
        raise InvalidInput(
            "give --table (declared in largeattr.toml, or with --bucket, --prefix and "
            "--large) to set up a table, and/or --search-attributes to register the search "
            "attributes on Temporal"
        )
    done: dict[str, Any] = {}
    if any(table_flags):
        table = _table(args)
        s3, dynamodb = _aws(args).clients()
        # The client's region includes the profile's: the bucket must be created where it signs.
        region = s3.meta.region_name
        done.update(setup(s3, dynamodb, table, region, args.partition_key_type, args.sort_key_type))
    lines = [f"{name}: {value}" for name, value in done.items()]
    if args.search_attributes:
        from largeattr.provision import ensure_search_attributes
        from largeattr.search_attributes import SEARCH_ATTRIBUTES

        target = temporal_target(args, _config(args))

        async def register() -> tuple[str, dict[str, str]]:
            temporal = await target.connect()
            return temporal.namespace, await ensure_search_attributes(temporal)

        namespace, registered = asyncio.run(register())
        done["search_attributes"] = {"namespace": namespace, **registered}
        lines += [
            f"search attribute {name} ({SEARCH_ATTRIBUTES[name]}) on {namespace}: {state}"
            for name, state in registered.items()
        ]
    emit(args.json, done, lines)
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
    # A name declared in largeattr.toml stands for its DynamoDB table.
    args.table = table_decl(args.table, _config(args), args).table_name
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
        url = reader.presigned_url(ref, args.presign)
        emit(args.json, {"uri": ref.uri, "url": url, "expires_in": args.presign}, [url])
        return 0
    progress = ProgressLine.for_terminal(f"reading {args.attr}")
    try:
        if args.output and byte_range is None:
            size = reader.download(ref, args.output, on_progress=progress)
            if progress is not None:
                progress.close()
            done = {"uri": ref.uri, "size": size, "output": args.output, "verified": True}
            if args.json:
                emit(True, done, [])
            else:
                print(
                    f"{ref.uri}: {size:,} bytes -> {args.output} (sha256 verified)", file=sys.stderr
                )
            return 0
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
        try:
            for chunk in reader.iter_chunks(ref, byte_range=byte_range, on_progress=progress):
                out.write(chunk)
        finally:
            out.flush()
            if args.output:
                out.close()
    finally:
        if progress is not None:
            progress.close()
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
        target = temporal_target(args, _config(args))

        async def drift() -> None:
            temporal = await target.connect()
            keys = known_keys(storage, table.spec)
            report.drift.extend(await check_drift(storage, table.spec, temporal, keys))

        asyncio.run(drift())
    young = [o for o in report.orphans if o.age_seconds < args.orphan_grace]
    report.orphans = [o for o in report.orphans if o.age_seconds >= args.orphan_grace]
    lines = list(report.lines())
    if young:
        lines.append(
            f"({len(young)} unreferenced objects younger than {args.orphan_grace:.0f}s ignored)"
        )
    data = {**dataclasses.asdict(report), "ok": report.ok(), "young_orphans_ignored": len(young)}
    emit(args.json, data, lines)
    return 0 if report.ok() else FINDINGS


def cmd_reconcile(args: argparse.Namespace) -> int:
    from largeattr.client import LargeAttrClient

    table = _table(args, keep_old_versions=args.keep_old_versions or None)
    target = temporal_target(args, _config(args))

    async def run() -> None:
        la = await LargeAttrClient.connect(
            target.address,
            target.namespace,
            task_queue=target.task_queue,
            aws=_aws(args),
        )
        async with la:
            result = await la.reconcile(table, grace_seconds=args.grace, dry_run=args.dry_run)
        done = vars(result)
        emit(args.json, done, [f"{name}: {value}" for name, value in done.items()])

    asyncio.run(run())
    return 0


def cmd_adopt(args: argparse.Namespace) -> int:
    """Adopt a pynamodb_mate table; exit 1 if an item failed (the report says why)."""
    from largeattr.client import LargeAttrClient
    from largeattr.messages import SagaOptions

    table = dataclasses.replace(
        _table(args), options=SagaOptions(delete_old_objects=not args.keep_old)
    )
    target = temporal_target(args, _config(args))

    async def run() -> bool:
        la = await LargeAttrClient.connect(
            target.address,
            target.namespace,
            task_queue=target.task_queue,
            aws=_aws(args),
        )
        async with la:
            report = await la.adopt_table(
                table, rate=args.rate, concurrency=args.concurrency, dry_run=args.dry_run
            )
        for line in report.lines():
            print(line)
        return report.ok()

    return 0 if asyncio.run(run()) else 1


def _item_command(
    commands: Any, name: str, help: str, common: list[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """put / rm / ls / history: a table by name (largeattr.toml), flags to override it."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, parents=common)
    parser.add_argument("table", metavar="TABLE", help="a table of largeattr.toml, or its name")
    parser.add_argument("--partition-key", help="override the declaration's")
    parser.add_argument("--sort-key")
    parser.add_argument("--bucket")
    parser.add_argument("--prefix")
    parser.add_argument("--large", help="large attributes, comma-separated")
    _aws_arguments(parser)
    return parser


def cmd_schedule_reconcile(args: argparse.Namespace) -> int:
    from largeattr.schedule import (
        parse_every,
        remove_reconcile_schedule,
        schedule_id,
        schedule_reconcile,
    )

    target = temporal_target(args, _config(args))
    if args.remove:

        async def remove() -> bool:
            temporal = await target.connect()
            return await remove_reconcile_schedule(temporal, args.table)

        removed = asyncio.run(remove())
        print(f"{'removed' if removed else 'no schedule'} {schedule_id(args.table)}")
        return 0
    if not args.every:
        raise InvalidInput("give --every (e.g. 6h), or --remove to delete the schedule")
    every = parse_every(args.every)
    table = _table(args, keep_old_versions=args.keep_old_versions or None)

    async def apply() -> bool:
        temporal = await target.connect()
        _, created = await schedule_reconcile(
            temporal, table, every, task_queue=target.task_queue, grace_seconds=args.grace
        )
        return created

    created = asyncio.run(apply())
    print(f"{'created' if created else 'updated'} {schedule_id(args.table)}: every {every}")
    return 0


def _schedule_commands(commands: Any, common: list[argparse.ArgumentParser]) -> None:
    """``largeattr schedule reconcile TABLE --every 6h [--grace S] [--remove]``."""
    schedule = commands.add_parser("schedule", help="Temporal Schedules of largeattr workflows")
    kinds = schedule.add_subparsers(dest="schedule_kind", required=True)
    reconcile = kinds.add_parser(
        "reconcile", help="create, update or remove a table's reconcile schedule", parents=common
    )
    reconcile.add_argument("table", help="a table of largeattr.toml, or a DynamoDB table name")
    reconcile.add_argument("--every", help="interval, e.g. 6h, 30m, 1h30m")
    reconcile.add_argument("--grace", type=int, default=900, metavar="SECONDS")
    reconcile.add_argument("--remove", action="store_true", help="delete the schedule")
    reconcile.add_argument("--partition-key")
    reconcile.add_argument("--sort-key")
    reconcile.add_argument("--bucket")
    reconcile.add_argument("--prefix")
    reconcile.add_argument("--large", help="large attributes, comma-separated")
    reconcile.add_argument("--keep-old-versions", action="store_true")
    _temporal_arguments(reconcile)
    _aws_arguments(reconcile)
    reconcile.set_defaults(run=cmd_schedule_reconcile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="largeattr",
        description="Durable sagas on Temporal for DynamoDB items with large attributes in S3",
        epilog="Exit codes: 0 ok, 1 findings or conflict, 2 usage, 3 not found, "
        "4 Temporal/AWS unavailable, 5 other failure.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command takes these after its name: largeattr put --debug ...
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument(
        "--config",
        metavar="PATH",
        help="largeattr.toml to read "
        "(default: $LARGEATTR_CONFIG, else ./largeattr.toml if present)",
    )
    base.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--json", action="store_true", help="print the result as JSON")
    common, printing = [base], [base, data]

    demo = commands.add_parser(
        "demo", help="run the end-to-end demo (on the embedded stack)", parents=common
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the stack and worker running (Ctrl-C), so the printed Web UI links stay alive",
    )
    demo.add_argument("--data-dir", default=".largeattr")
    demo.add_argument("--address", help="run on this Temporal instead of an embedded stack")
    demo.add_argument("--namespace")
    demo.add_argument("--ui-url", help="the Temporal Web UI, for links")
    _aws_arguments(demo)
    demo.set_defaults(run=cmd_demo)

    dev = commands.add_parser(
        "dev", help="start the embedded Temporal + S3/DynamoDB stack", parents=common
    )
    dev.add_argument("--data-dir", default=".largeattr")
    dev.set_defaults(run=cmd_dev)

    from largeattr import worker

    work = commands.add_parser("worker", help="run a worker (same as python worker.py)")
    worker.add_arguments(work)
    work.set_defaults(run=cmd_worker, debug=False, json=False, config=None)

    setup = commands.add_parser(
        "setup",
        help="create the table, bucket and lifecycle rules; with --search-attributes, "
        "register the search attributes the Web UI filters sagas by",
        parents=printing,
    )
    _table_arguments(setup)
    setup.add_argument("--partition-key-type", default="S", choices=["S", "N", "B"])
    setup.add_argument("--sort-key-type", default="S", choices=["S", "N", "B"])
    setup.add_argument(
        "--search-attributes",
        action="store_true",
        help="register LaTable, LaItem, LaOperation, LaOutcome, LaBytesWritten on the "
        "Temporal namespace (operator API; idempotent)",
    )
    _temporal_arguments(setup, task_queue=False)
    _aws_arguments(setup)
    setup.set_defaults(run=cmd_setup)

    put = _item_command(commands, "put", "create (or --update) an item through the saga", printing)
    put.add_argument("key", nargs="+", metavar="KEY", help="key values (pk [sk]) or NAME=VALUE")
    put.add_argument(
        "--blob",
        action="append",
        default=[],
        metavar="ATTR=@FILE|-|TEXT",
        help="a large attribute: @FILE uploads a file, - reads stdin, else the text itself",
    )
    put.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a plain attribute (JSON numbers, true/false/null, lists, objects; else text)",
    )
    put.add_argument(
        "--content-type",
        action="append",
        default=[],
        metavar="ATTR=TYPE",
        help="content type of a --blob (default: guessed from the file name)",
    )
    put.add_argument("--update", action="store_true", help="update the existing item")
    put.add_argument("--overwrite", action="store_true", help="create: replace an existing item")
    put.add_argument(
        "--remove",
        action="append",
        default=[],
        metavar="NAME",
        help="with --update: remove an attribute (a large one loses its object)",
    )
    put.add_argument(
        "--expected-version",
        type=int,
        metavar="N",
        help="with --update: commit only if the item is at version N (else exit 1)",
    )
    _temporal_arguments(put)
    put.add_argument("--ui-url", help="the Temporal Web UI, for links")
    put.set_defaults(run=cliitems.cmd_put)

    rm = _item_command(commands, "rm", "delete an item, then its objects (saga)", printing)
    rm.add_argument("key", nargs="+", metavar="KEY", help="key values (pk [sk]) or NAME=VALUE")
    rm.add_argument("--expected-version", type=int, metavar="N")
    _temporal_arguments(rm)
    rm.add_argument("--ui-url", help="the Temporal Web UI, for links")
    rm.set_defaults(run=cliitems.cmd_rm, update=False)

    ls = _item_command(
        commands, "ls", "list items with their versions and blob sizes (paged)", printing
    )
    ls.add_argument("--limit", type=int, default=50, help="items per page (default 50)")
    ls.add_argument("--page-token", metavar="T", help="the token the previous page printed")
    ls.set_defaults(run=cliitems.cmd_ls)

    history = _item_command(
        commands, "history", "the operations on one item (Temporal visibility)", printing
    )
    history.add_argument("key", nargs="+", metavar="KEY")
    history.add_argument("--limit", type=int, default=100, help="latest N (default 100)")
    _temporal_arguments(history, task_queue=False)
    history.add_argument("--ui-url", help="the Temporal Web UI, for links")
    history.set_defaults(run=cliitems.cmd_history)

    get = commands.add_parser(
        "get", help="stream a large attribute to stdout or a file", parents=printing
    )
    get.add_argument("--table", required=True, help="a table of largeattr.toml, or its name")
    get.add_argument("--key", action="append", required=True, metavar="NAME=VALUE")
    get.add_argument("--attr", required=True, help="the large attribute to read")
    get.add_argument("-o", "--output", help="file to write (default: stdout)")
    get.add_argument("--range", help="bytes FIRST-LAST (inclusive), not verified")
    get.add_argument("--presign", type=int, metavar="SECONDS", help="print a presigned URL")
    _aws_arguments(get)
    get.set_defaults(run=cmd_get)

    check = commands.add_parser(
        "check",
        help="report dangling references, orphans and drift (exit 1 if any)",
        parents=printing,
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
        "reconcile",
        help="delete unreferenced objects (runs the Reconcile workflow)",
        parents=printing,
    )
    _table_arguments(reconcile)
    _temporal_arguments(reconcile)
    reconcile.add_argument("--grace", type=int, default=900, metavar="SECONDS")
    reconcile.add_argument("--dry-run", action="store_true")
    reconcile.add_argument("--keep-old-versions", action="store_true")
    _aws_arguments(reconcile)
    reconcile.set_defaults(run=cmd_reconcile)

    adopt = commands.add_parser(
        "adopt",
        help="bring items pynamodb_mate wrote into largeattr's shape (one AdoptItem saga each)",
        parents=common,
    )
    _table_arguments(adopt)
    _temporal_arguments(adopt)
    adopt.add_argument("--rate", type=float, default=20.0, help="sagas started per second")
    adopt.add_argument("--concurrency", type=int, default=8, help="sagas running at once")
    adopt.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    adopt.add_argument(
        "--keep-old", action="store_true", help="keep pynamodb_mate's objects after adopting"
    )
    _aws_arguments(adopt)
    adopt.set_defaults(run=cmd_adopt)
    _schedule_commands(commands, common)
    codecserver.add_commands(commands, common)
    return parser


#: Commands that run servers or workers log what they do; the others print only results.
_LOGGING_COMMANDS = {"demo", "dev", "worker", "setup", "codec-server"}


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (see ``largeattr.cliout.EXIT_CODES``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as err:  # usage errors (2) and --help (0), printed by argparse
        return err.code if isinstance(err.code, int) else USAGE
    quiet = args.command not in _LOGGING_COMMANDS and not args.debug
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    if args.debug:
        logging.getLogger("largeattr").setLevel(logging.DEBUG)
    try:
        args.cli_config = load_config(args.config)
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        known = expected_error(err)
        if args.debug:
            traceback.print_exc()
        if known is None:
            print(
                f"largeattr: unexpected {type(err).__name__}: {err} "
                "(run again with --debug for the traceback)",
                file=sys.stderr,
            )
            return FAILED
        return report_error(known, getattr(args, "json", False))


def main(argv: Sequence[str] | None = None) -> None:
    """The ``largeattr`` console script."""
    exit_now(run(argv))
