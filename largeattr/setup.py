"""Create what a table needs: the DynamoDB table, the bucket, and a lifecycle rule.

The lifecycle rule removes what no saga will ever finish: multipart uploads left behind
by a crashed uploader (``AbortIncompleteMultipartUpload``) and staged streams under
``{prefix}/_staging/`` (``Expiration``). Existing rules of the bucket are kept.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from largeattr import keys
from largeattr.aws_errors import error_code, reraise
from largeattr.errors import InvalidInput
from largeattr.table import LargeAttrTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

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
