"""The largeattr command against the moto server: setup and get."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from largeattr import AwsConfig, InvalidInput, LargeAttrClient, LargeAttrTable
from largeattr.cli import run as cli_run


@pytest.fixture
def aws_env(aws: AwsConfig, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return [f"--aws-endpoint-url={aws.endpoint_url}", "--region=us-east-1"]


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No region in the environment; an AWS config file of the test's own (empty)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return config


def run(argv: list[str]) -> int:
    return cli_run(argv)


def test_an_emulator_needs_no_region_but_aws_does(aws: AwsConfig, no_region: Path) -> None:
    s3, dynamodb = AwsConfig.from_env(endpoint_url=aws.endpoint_url).clients()
    assert s3.meta.region_name == "us-east-1"
    assert "TableNames" in dynamodb.list_tables()
    with pytest.raises(InvalidInput, match="pass --region or set AWS_REGION"):
        AwsConfig.from_env().clients()
    no_region.write_text("[default]\nregion = eu-central-1\n")
    s3, _ = AwsConfig.from_env().clients()
    assert s3.meta.region_name == "eu-central-1"


def test_setup_creates_the_bucket_in_the_profile_region(
    aws: AwsConfig, no_region: Path, s3: Any
) -> None:
    no_region.write_text("[default]\nregion = eu-west-1\n")
    bucket = f"largeattr-region-{uuid.uuid4().hex[:8]}"
    argv = [
        "setup", f"--table=region-{bucket}", f"--bucket={bucket}", "--prefix=docs",
        "--large=body", f"--aws-endpoint-url={aws.endpoint_url}",
    ]  # fmt: skip
    assert run(argv) == 0
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"


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


async def test_get_reports_bad_arguments_and_aws_errors_in_one_line(
    la: LargeAttrClient,
    new_table: Any,
    aws: AwsConfig,
    no_region: Path,
    s3: Any,
    dynamodb: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table: LargeAttrTable = new_table(partition_key_type="N")
    await la.create(table, 12, blobs={"image": b"0123456789"})
    endpoint = f"--aws-endpoint-url={aws.endpoint_url}"  # and no region: an emulator's default
    base = ["get", f"--table={table.table_name}", "--attr=image", endpoint]

    def fails(argv: list[str], error: str, text: str) -> None:
        capsys.readouterr()
        assert run(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"largeattr: {error}: "), lines
        assert text in lines[0]

    fails([*base, "--key=pk"], "InvalidInput", "give NAME=VALUE")
    fails([*base, "--key=pk=12", "--key=pk=13"], "InvalidInput", "given twice")
    fails([*base, "--key=id=12"], "InvalidInput", "has no key 'id'")
    fails([*base, "--key=pk=twelve"], "InvalidKey", "not a number")
    for bad in ("100-", "-500", "a-b", "9-1", "1-2-3"):
        fails([*base, "--key=pk=12", f"--range={bad}"], "InvalidInput", "give FIRST-LAST")
    fails([*base, "--key=pk=12", "--range=10-19"], "InvalidInput", "past the end")
    fails([*base, "--key=pk=99"], "ItemNotFound", "pk=99")
    missing = ["get", "--table=no-such-table", "--key=pk=1", "--attr=image", endpoint]
    fails(missing, "TableNotFound", "no-such-table")

    # Written by another tool: no recorded size, so S3 itself refuses the range.
    ref = (await la.get(table, 12)).blob("image")  # type: ignore[union-attr]
    dynamodb.put_item(TableName=table.table_name, Item={"pk": {"N": "13"}, "image": {"S": ref.uri}})
    fails([*base, "--key=pk=13", "--range=10-19"], "InvalidInput", "past the end")
    assert run([*base, "--key=pk=13", "--range=2-4"]) == 0
    assert capsys.readouterr().out == "234"


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str], error: str) -> str:
    """Run a command that must fail with ``error``: exit 2, one line on stderr, no traceback."""
    capsys.readouterr()
    assert run(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"largeattr: {error}: "), lines
    return lines[0]


async def test_get_of_a_missing_object_says_so_in_one_line(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws_env: list[str],
    s3: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await la.create(table, "id-1", blobs={"html": b"<b>gone</b>"})
    ref = (await la.get(table, "id-1")).blob("html")  # type: ignore[union-attr]
    s3.delete_object(Bucket=table.bucket, Key=ref.key)
    argv = ["get", f"--table={table.table_name}", "--key=pk=id-1", "--attr=html", *aws_env]
    line = one_error_line(capsys, argv, "DanglingReference")
    assert ref.uri in line
    assert "largeattr check" in line


async def test_get_says_what_the_item_has(
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws_env: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await la.create(table, "id-1", blobs={"html": b"<b>hi</b>"}, attributes={"title": "Hi"})
    base = ["get", f"--table={table.table_name}", "--key=pk=id-1", *aws_env]
    line = one_error_line(capsys, [*base, "--attr=image"], "UnknownAttribute")
    assert "no attribute 'image'" in line
    assert "its large attributes are html" in line
    line = one_error_line(capsys, [*base, "--attr=title"], "InvalidInput")
    assert "'title' is a plain attribute" in line
    assert "not a large attribute" in line
    assert "s3://bucket/key" not in line
    assert run([*base, "--attr=html"]) == 0
    assert capsys.readouterr().out == "<b>hi</b>"
