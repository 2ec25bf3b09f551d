"""The largeattr command against the moto server: setup and get."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.cli import run as cli_run


@pytest.fixture
def aws_env(aws: AwsConfig, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return [f"--aws-endpoint-url={aws.endpoint_url}", "--region=us-east-1"]


def run(argv: list[str]) -> int:
    return cli_run(argv)


def test_setup_creates_table_bucket_and_keeps_other_lifecycle_rules(
    aws_env: list[str], s3: Any, dynamodb: Any
) -> None:
    bucket = "largeattr-setup-test"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "theirs",
                    "Filter": {"Prefix": "logs/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": 30},
                }
            ]
        },
    )
    argv = [
        "setup", "--table=setup-test", "--partition-key=id", "--sort-key=rev",
        "--sort-key-type=N", f"--bucket={bucket}", "--prefix=docs", "--large=body", *aws_env,
    ]  # fmt: skip
    assert run(argv) == 0
    assert run(argv) == 0  # idempotent
    described = dynamodb.describe_table(TableName="setup-test")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {
        "id": "HASH",
        "rev": "RANGE",
    }
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    by_id = {rule["ID"]: rule for rule in rules}
    assert set(by_id) == {
        "theirs",
        "largeattr-abort-uploads-setup-test",
        "largeattr-expire-staging-setup-test",
    }
    abort = by_id["largeattr-abort-uploads-setup-test"]
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert by_id["largeattr-expire-staging-setup-test"]["Filter"] == {"Prefix": "docs/_staging/"}


async def test_get_streams_an_attribute(
    la: LargeAttrClient,
    new_table: Any,
    aws_env: list[str],
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    table: LargeAttrTable = new_table(partition_key_type="N")
    data = hashlib.sha256(b"x").digest() * 40_000  # 1.28 MB: not inline
    await la.create(table, 12, blobs={"image": data})
    base = ["get", f"--table={table.table_name}", "--key=pk=12", "--attr=image", *aws_env]
    assert run([*base, f"--output={tmp_path / 'out.bin'}"]) == 0
    assert (tmp_path / "out.bin").read_bytes() == data
    capsysbinary.readouterr()
    assert run([*base, "--range=10-19"]) == 0
    assert capsysbinary.readouterr().out == data[10:20]
    assert run([*base, "--presign=60"]) == 0
    assert b"X-Amz-Signature" in capsysbinary.readouterr().out
    assert run(["get", f"--table={table.table_name}", "--key=pk=99", "--attr=image", *aws_env]) == 2
