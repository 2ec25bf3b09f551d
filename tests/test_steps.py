"""The step-by-step API (no Temporal), against the moto server."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from largeattr import AwsConfig, InvalidInput, LargeAttrTable, Storage
from largeattr.stepbystep import StepByStep
from tests.conftest import object_keys

pytestmark = pytest.mark.unit


@pytest.fixture
def resource_table(aws: AwsConfig, table: LargeAttrTable) -> Any:
    session = aws.session()
    resource = session.resource("dynamodb", endpoint_url=aws.endpoint_url)
    return resource.Table(table.table_name)


def test_create_then_update_by_hand(
    s3: Any, dynamodb: Any, table: LargeAttrTable, resource_table: Any
) -> None:
    steps = StepByStep(Storage(s3, dynamodb), table)
    first = steps.put_blobs("doc", {"html": b"v1", "image": b"img"})
    resource_table.put_item(Item={"pk": "doc", "title": "t", **first.attributes()})
    old = resource_table.get_item(Key={"pk": "doc"})["Item"]
    assert old["html"] == first.blobs[0].uri
    assert old["la_meta"]["html"]["size"] == 2

    second = steps.put_blobs("doc", {"html": b"v2"})
    expression, names, values = second.update_expression(old)
    resource_table.update_item(
        Key={"pk": "doc"},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
    deleted = second.clean_up_old_objects(old)
    assert deleted == (first.blobs[0].key,)
    new = resource_table.get_item(Key={"pk": "doc"})["Item"]
    assert set(new["la_meta"]) == {"html", "image"}  # image's entry survived the update
    assert object_keys(s3, table) == {second.blobs[0].key, first.blobs[1].key}


def test_failed_write_is_cleaned_up_but_shared_content_is_kept(
    s3: Any, dynamodb: Any, table: LargeAttrTable, resource_table: Any
) -> None:
    steps = StepByStep(Storage(s3, dynamodb), table)
    live = steps.put_blobs("doc", {"html": b"live"})
    resource_table.put_item(Item={"pk": "doc", **live.attributes()})
    attempt = steps.put_blobs("doc", {"html": b"live", "image": b"new image"})
    assert [b.created for b in attempt.blobs] == [False, True]
    # Suppose the DynamoDB write of `attempt` failed:
    result = attempt.clean_up_after_failure()
    assert result.deleted == (attempt.blobs[1].key,)
    assert object_keys(s3, table) == {live.blobs[0].key}


def test_boto3_resource_reads_what_the_sagas_write(
    s3: Any, dynamodb: Any, table: LargeAttrTable, resource_table: Any
) -> None:
    steps = StepByStep(Storage(s3, dynamodb), table)
    written = steps.put_blobs("doc", {"html": b"<b>x</b>"}, content_types={"html": "text/html"})
    resource_table.put_item(Item={"pk": "doc", **written.attributes()})
    uri = resource_table.get_item(Key={"pk": "doc"})["Item"]["html"]
    bucket, _, key = uri[len("s3://") :].partition("/")
    body = boto3.client(
        "s3",
        endpoint_url=s3.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    ).get_object(Bucket=bucket, Key=key)
    assert body["Body"].read() == b"<b>x</b>"
    assert body["ContentType"] == "text/html"


def test_remove_a_large_attribute_by_hand(
    s3: Any, dynamodb: Any, table: LargeAttrTable, resource_table: Any
) -> None:
    steps = StepByStep(Storage(s3, dynamodb), table)
    first = steps.put_blobs("doc", {"html": b"v1", "image": b"img"})
    resource_table.put_item(Item={"pk": "doc", **first.attributes()})
    old = resource_table.get_item(Key={"pk": "doc"})["Item"]

    second = steps.put_blobs("doc", {"html": b"v2", "image": None})
    expression, names, values = second.update_expression(old)
    assert "REMOVE" in expression
    resource_table.update_item(
        Key={"pk": "doc"},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
    deleted = second.clean_up_old_objects(old)
    assert set(deleted) == {first.blobs[0].key, first.blobs[1].key}
    new = resource_table.get_item(Key={"pk": "doc"})["Item"]
    assert "image" not in new
    assert set(new["la_meta"]) == {"html"}
    assert object_keys(s3, table) == {second.blobs[0].key}
    head = s3.head_object(Bucket=table.bucket, Key=second.blobs[0].key)
    assert head["Metadata"]["la-updated-at"].startswith("20")  # the time of the call


def test_delete_by_hand_then_clean_up(
    s3: Any, dynamodb: Any, table: LargeAttrTable, resource_table: Any
) -> None:
    steps = StepByStep(Storage(s3, dynamodb), table)
    written = steps.put_blobs("doc", {"html": b"page", "image": b"img"})
    resource_table.put_item(Item={"pk": "doc", **written.attributes()})
    old = resource_table.get_item(Key={"pk": "doc"})["Item"]
    resource_table.delete_item(Key={"pk": "doc"})
    result = steps.clean_up_after_delete(old)
    assert sorted(result.deleted) == sorted(b.key for b in written.blobs)
    assert object_keys(s3, table) == set()

    # Written again with the same content meanwhile: the same key, live again, kept.
    again = steps.put_blobs("doc", {"html": b"page"})
    resource_table.put_item(Item={"pk": "doc", **again.attributes()})
    stale = {"pk": "doc", "html": again.blobs[0].uri}
    assert steps.clean_up_after_delete(stale).deleted == ()
    assert steps.clean_up_after_delete(stale).kept == (again.blobs[0].key,)
    assert object_keys(s3, table) == {again.blobs[0].key}


def test_delete_clean_up_reads_a_binary_key(
    s3: Any, dynamodb: Any, new_table: Any, aws: AwsConfig
) -> None:
    table = new_table(partition_key_type="B")
    steps = StepByStep(Storage(s3, dynamodb), table)
    written = steps.put_blobs(b"\x00\x01", {"html": b"page"})
    resource = aws.session().resource("dynamodb", endpoint_url=aws.endpoint_url)
    items = resource.Table(table.table_name)
    items.put_item(Item={"pk": b"\x00\x01", **written.attributes()})
    old = items.get_item(Key={"pk": b"\x00\x01"})["Item"]  # pk comes back as Binary
    items.delete_item(Key={"pk": b"\x00\x01"})
    assert steps.clean_up_after_delete(old).deleted == (written.blobs[0].key,)
    with pytest.raises(InvalidInput, match="key attributes"):
        steps.clean_up_after_delete({"html": written.blobs[0].uri})
