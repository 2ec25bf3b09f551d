"""Create what a table needs: the DynamoDB table, the bucket, and a lifecycle rule; and
register on a Temporal namespace the search attributes the Web UI filters sagas by.

The lifecycle rule removes what no saga will ever finish: multipart uploads left behind
by a crashed uploader (``AbortIncompleteMultipartUpload``) and staged streams under
``{prefix}/_staging/`` (``Expiration``). Existing rules of the bucket are kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.service import RPCError, RPCStatusCode

from largeattr import keys
from largeattr.aws_errors import error_code, reraise
from largeattr.errors import InvalidInput, LargeAttrError
from largeattr.search_attributes import SEARCH_ATTRIBUTES
from largeattr.table import LargeAttrTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from temporalio.client import Client

KEY_TYPES = {"S", "N", "B"}


def ensure_table(
    dynamodb: DynamoDBClient,
    table: LargeAttrTable,
    partition_key_type: str = "S",
    sort_key_type: str = "S",
    timeout: float = 120.0,
) -> bool:
    """Create the table (on-demand billing) unless it exists. True if created."""
    if {partition_key_type, sort_key_type} - KEY_TYPES:
        raise InvalidInput("key types are S (string), N (number) or B (binary)")
    try:
        dynamodb.describe_table(TableName=table.table_name)
        return False
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            reraise(err, table=table.table_name)
    schema: list[Any] = [{"AttributeName": table.partition_key, "KeyType": "HASH"}]
    definitions: list[Any] = [
        {"AttributeName": table.partition_key, "AttributeType": partition_key_type}
    ]
    if table.sort_key:
        schema.append({"AttributeName": table.sort_key, "KeyType": "RANGE"})
        definitions.append({"AttributeName": table.sort_key, "AttributeType": sort_key_type})
    dynamodb.create_table(
        TableName=table.table_name,
        KeySchema=schema,
        AttributeDefinitions=definitions,
        BillingMode="PAY_PER_REQUEST",
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dynamodb.describe_table(TableName=table.table_name)["Table"]["TableStatus"]
        if status == "ACTIVE":
            return True
        time.sleep(1)
    raise TimeoutError(f"table {table.table_name} did not become ACTIVE in {timeout:.0f}s")


def ensure_bucket(s3: S3Client, bucket: str, region: str | None = None) -> bool:
    """Create the bucket unless it exists, in ``region`` or else the client's. True if created."""
    region = region or s3.meta.region_name
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as err:
        if error_code(err) not in {"404", "NoSuchBucket", "NotFound"}:
            reraise(err, bucket=bucket)
    args: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**args)
    return True


def lifecycle_rules(
    table: LargeAttrTable, abort_after_days: int = 1, staging_days: int = 1
) -> list[dict[str, Any]]:
    return [
        {
            "ID": f"largeattr-abort-uploads-{table.table_name}",
            "Filter": {"Prefix": f"{table.prefix}/"},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_after_days},
        },
        {
            "ID": f"largeattr-expire-staging-{table.table_name}",
            "Filter": {"Prefix": f"{table.prefix}/{keys.STAGING_SEGMENT}/"},
            "Status": "Enabled",
            "Expiration": {"Days": staging_days},
        },
    ]


def install_lifecycle(
    s3: S3Client, table: LargeAttrTable, abort_after_days: int = 1, staging_days: int = 1
) -> list[dict[str, Any]]:
    """Add (or refresh) our two rules, keeping the bucket's other rules."""
    ours = lifecycle_rules(table, abort_after_days, staging_days)
    our_ids = {rule["ID"] for rule in ours}
    try:
        existing = s3.get_bucket_lifecycle_configuration(Bucket=table.bucket).get("Rules", [])
    except ClientError as err:
        if error_code(err) != "NoSuchLifecycleConfiguration":
            reraise(err, bucket=table.bucket)
        existing = []
    rules = [dict(rule) for rule in existing if rule.get("ID") not in our_ids] + ours
    s3.put_bucket_lifecycle_configuration(
        Bucket=table.bucket,
        LifecycleConfiguration={"Rules": rules},
    )
    return rules


def setup(
    s3: S3Client,
    dynamodb: DynamoDBClient,
    table: LargeAttrTable,
    region: str | None = None,
    partition_key_type: str = "S",
    sort_key_type: str = "S",
) -> dict[str, Any]:
    """Everything a table needs, idempotently. Returns what was done."""
    return {
        "table_created": ensure_table(dynamodb, table, partition_key_type, sort_key_type),
        "bucket_created": ensure_bucket(s3, table.bucket, region),
        "lifecycle_rules": [rule["ID"] for rule in install_lifecycle(s3, table)],
    }


class SearchAttributeConflict(LargeAttrError):
    """A search attribute of ours is registered with another type on the namespace."""


class SearchAttributesNotRegistered(LargeAttrError):
    """The Temporal operator API refused to register our search attributes."""


def _indexed_value_type(kind: str) -> IndexedValueType.ValueType:
    """Keyword, KeywordList... (as the CLI spells types) -> the IndexedValueType enum."""
    return IndexedValueType.Value(
        "INDEXED_VALUE_TYPE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).upper()
    )


async def _custom_search_attributes(
    temporal: Client, namespace: str
) -> dict[str, IndexedValueType.ValueType]:
    listed = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(listed.custom_attributes)


def _check_types(
    registered: Mapping[str, IndexedValueType.ValueType], wanted: Mapping[str, str], namespace: str
) -> None:
    for name, kind in wanted.items():
        if name in registered and registered[name] != _indexed_value_type(kind):
            have = IndexedValueType.Name(registered[name]).removeprefix("INDEXED_VALUE_TYPE_")
            raise SearchAttributeConflict(
                f"search attribute {name} is registered on namespace {namespace} as {have}, "
                f"largeattr needs {kind}; a registered type cannot change: remove it "
                f"(temporal operator search-attribute remove --name {name}) if nothing else "
                "uses it, or use another namespace"
            )


def _create_commands(wanted: Mapping[str, str]) -> str:
    """The ``temporal`` CLI commands that register ``wanted`` (one type per command)."""
    by_type: dict[str, list[str]] = {}
    for name, kind in wanted.items():
        by_type.setdefault(kind, []).append(name)
    return "; ".join(
        "temporal operator search-attribute create "
        + " ".join(f"--name {name}" for name in names)
        + f" --type {kind}"
        for kind, names in by_type.items()
    )


async def ensure_search_attributes(
    temporal: Client,
    namespace: str | None = None,
    wanted: Mapping[str, str] = SEARCH_ATTRIBUTES,
) -> dict[str, str]:
    """Register our custom search attributes on the namespace through the operator API,
    idempotently. Returns name -> "added" or "already registered"."""
    namespace = namespace or temporal.namespace
    try:
        registered = await _custom_search_attributes(temporal, namespace)
        _check_types(registered, wanted, namespace)
        missing = {n: _indexed_value_type(k) for n, k in wanted.items() if n not in registered}
        if missing:
            try:
                await temporal.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
                )
            except RPCError as err:
                # A concurrent setup won the race. Temporal's operator handler answers
                # AlreadyExist, or InvalidArgument "... already exists" on older servers.
                if not (
                    err.status == RPCStatusCode.ALREADY_EXISTS or "already exists" in err.message
                ):
                    raise
            # The SQL path skips a name that exists, whatever its type (operator_handler.go;
            # seen on the dev server): read back what the namespace holds now.
            registered = await _custom_search_attributes(temporal, namespace)
            _check_types(registered, wanted, namespace)
    except RPCError as err:
        raise SearchAttributesNotRegistered(
            f"could not register the search attributes on namespace {namespace}: "
            f"{err.status.name if err.status else 'error'}: {err.message}; someone with admin "
            f"rights on the cluster can add them: {_create_commands(wanted)}"
        ) from None
    absent = sorted(set(wanted) - set(registered))
    if absent:
        raise SearchAttributesNotRegistered(
            f"namespace {namespace} still lacks {', '.join(absent)} after registering them; "
            "check the server's search attribute limits (SQL visibility has a fixed number "
            "per type)"
        )
    return {name: "added" if name in missing else "already registered" for name in wanted}
