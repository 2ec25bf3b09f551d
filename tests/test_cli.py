"""The largeattr command against the test stack: setup, get, put, rm, ls, history, check,
reconcile, config files, exit codes, progress, dev and demo."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from largeattr import AwsConfig, InvalidInput, LargeAttrClient, LargeAttrTable, VersionConflict
from largeattr.cli import run as cli_run
from largeattr.cliout import ProgressLine
from largeattr.devstack import Stack
from tests.conftest import largeattr_toml, no_change


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
        "setup",
        f"--table=region-{bucket}",
        f"--bucket={bucket}",
        "--prefix=docs",
        "--large=body",
        f"--aws-endpoint-url={aws.endpoint_url}",
    ]
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
        "setup",
        "--table=setup-test",
        "--partition-key=id",
        "--sort-key=rev",
        "--sort-key-type=N",
        f"--bucket={bucket}",
        "--prefix=docs",
        "--large=body",
        *aws_env,
    ]
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
    assert run(["get", f"--table={table.table_name}", "--key=pk=99", "--attr=image", *aws_env]) == 3


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

    def fails(argv: list[str], error: str, text: str, code: int = 2) -> None:
        capsys.readouterr()
        assert run(argv) == code
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
    fails([*base, "--key=pk=99"], "ItemNotFound", "pk=99", code=3)
    missing = ["get", "--table=no-such-table", "--key=pk=1", "--attr=image", endpoint]
    fails(missing, "TableNotFound", "no-such-table", code=3)

    # Written by another tool: no recorded size, so S3 itself refuses the range.
    ref = (await la.get(table, 12)).blob("image")  # type: ignore[union-attr]
    dynamodb.put_item(TableName=table.table_name, Item={"pk": {"N": "13"}, "image": {"S": ref.uri}})
    fails([*base, "--key=pk=13", "--range=10-19"], "InvalidInput", "past the end")
    assert run([*base, "--key=pk=13", "--range=2-4"]) == 0
    assert capsys.readouterr().out == "234"


def one_error_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], error: str, code: int = 2
) -> str:
    """Run a command that must fail with ``error``: exit ``code``, one line on stderr, no
    traceback."""
    capsys.readouterr()
    assert run(argv) == code
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
    line = one_error_line(capsys, argv, "DanglingReference", code=1)  # a finding
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


# ---------------------------------------------------------------- put, rm, ls, history, config
# The commands that start sagas run in a thread (each its own event loop, as from a shell),
# so this test's loop keeps serving the session's worker; a few run as real processes
# (stdin from a pipe, exit codes and stderr of a whole run).


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def shell(
    aws: AwsConfig,
    temporal_address: str,
    temporal_ports: tuple[int, int],
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """A clean environment in an empty directory; ``shell.config(table)`` writes a
    largeattr.toml there that declares ``table`` as ``docs`` and points at the test stack."""
    for name in (
        "LARGEATTR_CONFIG",
        "LARGEATTR_UI_URL",
        "LARGEATTR_TASK_QUEUE",
        "AWS_PROFILE",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.chdir(tmp_path)

    class Shell:
        ui_url = f"http://127.0.0.1:{temporal_ports[1]}"

        def config(
            self, table: LargeAttrTable, path: Path | None = None, endpoint: str | None = None
        ) -> Path:
            path = path or tmp_path / "largeattr.toml"
            path.write_text(
                largeattr_toml(
                    table,
                    temporal_address,
                    task_queue,
                    endpoint or str(aws.endpoint_url),
                    self.ui_url,
                )
            )
            return path

        async def run(self, *argv: str) -> Ran:
            capsys.readouterr()
            code = await asyncio.to_thread(cli_run, list(argv))
            captured = capsys.readouterr()
            return Ran(code, captured.out, captured.err)

        async def process(
            self, *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None
        ) -> Ran:
            # In a thread: the session's worker runs on this test's event loop.
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", "from largeattr.cli import main; main()", *argv],
                input=stdin,
                capture_output=True,
                timeout=120,
                cwd=tmp_path,
                env=env,
            )
            return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())

    return Shell()


def one_line(ran: Ran, code: int, error: str) -> str:
    """A failure as a user sees it: its exit code and one line naming the error class."""
    lines = ran.err.splitlines()
    assert ran.code == code, ran
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"largeattr: {error}: "), lines
    return lines[0]


async def test_put_from_file_and_stdin_update_conflict_and_rm(
    shell: Any, la: LargeAttrClient, table: LargeAttrTable, s3: Any, dynamodb: Any, tmp_path: Path
) -> None:
    shell.config(table)
    page = tmp_path / "page.html"
    page.write_bytes(b"<b>Hello</b>")
    image = tmp_path / "cat.bin"
    image.write_bytes(hashlib.sha256(b"cat").digest() * 12_000)  # 384 KB: uploaded from here
    ran = await shell.run(
        "put",
        "docs",
        "id-1",
        "--blob",
        f"html=@{page}",
        "--blob",
        f"image=@{image}",
        "--set",
        "title=Hello",
        "--set",
        "views=3",
        "--set",
        "draft=false",
        "--json",
    )
    assert ran.code == 0, ran
    result = ran.json()
    assert result["operation"] == "create"
    assert result["version"] == 1
    assert result["workflow_id"] == table.workflow_id("id-1")
    assert result["web_ui"].startswith(f"{shell.ui_url}/namespaces/default/workflows/")
    assert {o["attribute"]: o["size"] for o in result["objects"]} == {
        "html": 12,
        "image": 384_000,
    }
    item = await la.get(table, "id-1")
    assert item is not None
    assert item.attributes == {"pk": "id-1", "title": "Hello", "views": 3, "draft": False}
    assert item.blob("html").content_type == "text/html"
    assert await la.read_blob(item.blob("image")) == image.read_bytes()

    # stdin from a pipe, bigger than the inline threshold: streamed from the CLI process.
    piped = hashlib.sha256(b"pipe").digest() * 20_000  # 640 KB
    ran = await shell.process("put", "docs", "id-2", "--blob", "html=-", stdin=piped)
    assert ran.code == 0, ran
    assert "created pk=id-2" in ran.out
    assert "Traceback" not in ran.err
    item = await la.get(table, "id-2")
    assert item is not None
    assert await la.read_blob(item.blob("html")) == piped

    # The item is at version 1: expecting 5 is a conflict (exit 1) and changes nothing.
    with no_change(s3, dynamodb, table, table.key("id-1")):
        ran = await shell.run(
            "put", "docs", "id-1", "--update", "--expected-version=5", "--set", "title=Nope"
        )
        line = one_line(ran, 1, "VersionConflict")
        ran = await shell.run("put", "docs", "pk=id-1", "--blob", "html=again")
        one_line(ran, 1, "ItemAlreadyExists")
    ran = await shell.run(
        "put",
        "docs",
        "id-1",
        "--update",
        "--expected-version=1",
        "--blob",
        "html=<i>hi</i>",
        "--content-type",
        "html=text/html",
        "--remove",
        "image",
        "--remove",
        "draft",
    )
    assert ran.code == 0, ran
    assert "updated pk=id-1 in" in ran.out
    assert "  version     : 2" in ran.out
    item = await la.get(table, "id-1")
    assert item is not None
    assert set(item.blobs) == {"html"}
    assert item.attributes == {"pk": "id-1", "title": "Hello", "views": 3}
    assert await la.read_blob(item.blob("html")) == b"<i>hi</i>"

    ran = await shell.run("rm", "docs", "id-1", "--json")
    assert ran.code == 0, ran
    assert ran.json()["operation"] == "delete"
    assert await la.get(table, "id-1") is None
    line = one_line(await shell.run("rm", "docs", "id-1"), 3, "ItemNotFound")
    assert "pk=id-1" in line


async def test_ls_pages_through_items_with_versions_and_sizes(
    shell: Any, la: LargeAttrClient, table: LargeAttrTable, dynamodb: Any
) -> None:
    shell.config(table)
    for n in range(5):
        await la.create(table, f"item-{n}", blobs={"html": b"x" * (n + 1)})
    await la.update(table, "item-3", blobs={"image": b"12345678"})
    dynamodb.put_item(TableName=table.table_name, Item={"pk": {"S": "foreign"}})
    seen: dict[str, Any] = {}
    pages = 0
    token: str | None = None
    while True:
        ran = await shell.run(
            "ls", "docs", "--limit=2", "--json", *([f"--page-token={token}"] if token else [])
        )
        assert ran.code == 0, ran
        page = ran.json()
        assert len(page["items"]) <= 2
        pages += 1
        seen.update({item["item"]: item for item in page["items"]})
        token = page["next_page_token"]
        if token is None:
            break
    assert pages >= 3
    assert set(seen) == {f"pk=item-{n}" for n in range(5)} | {"pk=foreign"}
    assert seen["pk=item-3"]["version"] == 2
    assert seen["pk=item-3"]["blobs"] == {
        "html": {"size": 4, "content_type": "application/octet-stream"},
        "image": {"size": 8, "content_type": "application/octet-stream"},
    }
    assert seen["pk=item-0"]["key"] == {"pk": "item-0"}
    assert seen["pk=foreign"]["version"] is None
    assert seen["pk=foreign"]["blobs"] == {}

    ran = await shell.run("ls", "docs", "--limit=3")
    assert ran.code == 0
    assert ran.out.splitlines()[0].split() == ["ITEM", "VERSION", "BLOBS", "UPDATED"]
    assert "next page: largeattr ls docs --page-token " in ran.out
    one_line(await shell.run("ls", "docs", "--page-token=nonsense"), 2, "InvalidInput")
    # A table only DynamoDB knows (no declaration): its key schema is read from DynamoDB.
    ran = await shell.run("ls", table.table_name, "--json", "--limit=100")
    assert len(ran.json()["items"]) == 6


async def visible_runs(shell: Any, argv: list[str], count: int) -> Any:
    """history's JSON once visibility lists ``count`` runs (it indexes closed runs a moment
    after they close)."""
    for _ in range(100):
        ran = await shell.run(*argv)
        assert ran.code == 0, ran
        listed = ran.json()
        done = [r for r in listed["operations"] if r["status"] != "running"]
        if len(done) >= count:
            return listed
        await asyncio.sleep(0.2)
    raise AssertionError(f"visibility never listed {count} runs: {listed}")


async def test_history_lists_the_operations_with_their_outcome(
    shell: Any, la: LargeAttrClient, table: LargeAttrTable
) -> None:
    shell.config(table)
    await la.create(table, "id-1", blobs={"html": b"<b>1</b>"})
    await la.update(table, "id-1", blobs={"html": b"<b>2</b>"})
    with pytest.raises(VersionConflict):
        await la.update(table, "id-1", set={"title": "late"}, expected_version=1)
    await la.delete(table, "id-1")
    await la.create(table, "id-other", blobs={"html": b"other"})
    listed = await visible_runs(shell, ["history", "docs", "id-1", "--json"], 4)
    runs = listed["operations"]
    assert listed["workflow_id"] == table.workflow_id("id-1")
    assert [r["operation"] for r in runs] == ["create", "update", "update", "delete"]
    assert [r["outcome"] for r in runs][:2] == ["committed", "committed"]
    assert runs[2]["outcome"] in ("failed: VersionConflict", "refused")
    assert runs[2]["error"]["type"] == "VersionConflict"
    assert runs[3]["outcome"] == "committed"
    assert [r["start_time"] for r in runs] == sorted(r["start_time"] for r in runs)
    for r in runs:
        assert r["web_ui"] == (
            f"{shell.ui_url}/namespaces/default/workflows/"
            f"{quote(table.workflow_id('id-1'), safe='')}/{r['run_id']}/history"
        )
    ran = await shell.run("history", "docs", "id-1", "--limit=2")
    assert ran.code == 0
    assert "2 operations" in ran.out.splitlines()[0]
    assert "VersionConflict" in ran.out  # the latest two: the refused update and the delete
    assert " delete " in ran.out


async def test_config_is_found_and_flags_and_environment_override_it(
    shell: Any,
    la: LargeAttrClient,
    table: LargeAttrTable,
    aws: AwsConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await la.create(table, "id-1", blobs={"html": b"<b>1</b>"})
    dead = "http://127.0.0.1:9"  # nothing listens there
    # Not declared anywhere: ls finds no such DynamoDB table; put says how to declare it.
    one_line(
        await shell.run("ls", "docs", f"--aws-endpoint-url={aws.endpoint_url}"), 3, "TableNotFound"
    )
    line = one_line(await shell.run("put", "docs", "x", "--blob", "html=a"), 2, "InvalidInput")
    assert "largeattr.toml" in line

    # ./largeattr.toml is found in the working directory.
    shell.config(table)
    assert (await shell.run("ls", "docs", "--json")).json()["table"] == table.table_name
    # LARGEATTR_CONFIG wins over ./largeattr.toml; --config over both.
    elsewhere = shell.config(table, tmp_path / "elsewhere.toml", endpoint=dead)
    monkeypatch.setenv("LARGEATTR_CONFIG", str(elsewhere))
    one_line(await shell.run("ls", "docs"), 4, "Unavailable")
    assert (await shell.run("ls", "docs", f"--config={tmp_path / 'largeattr.toml'}")).code == 0
    # The environment overrides the file; a flag overrides the environment.
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(aws.endpoint_url))
    assert (await shell.run("ls", "docs")).code == 0
    one_line(await shell.run("ls", "docs", f"--aws-endpoint-url={dead}"), 4, "Unavailable")
    monkeypatch.delenv("LARGEATTR_CONFIG")

    # The first commands take the declared name instead of --table/--bucket/--prefix/--large.
    ran = await shell.run("get", "--table=docs", "--key=pk=id-1", "--attr=html")
    assert (ran.code, ran.out) == (0, "<b>1</b>")
    ran = await shell.run("check", "--table=docs", "--json", "--orphan-grace=0")
    assert ran.code == 0, ran
    assert ran.json()["ok"] is True
    assert ran.json()["items"] == 1
    ran = await shell.run("reconcile", "--table=docs", "--dry-run", "--json")
    assert ran.code == 0, ran
    assert ran.json()["orphans_found"] == 0
    # ... and the old flags still work without a file.
    (tmp_path / "largeattr.toml").unlink()
    old_flags = [
        f"--table={table.table_name}",
        f"--bucket={table.bucket}",
        f"--prefix={table.prefix}",
        "--large=html,image",
        f"--aws-endpoint-url={aws.endpoint_url}",
    ]
    assert (await shell.run("check", *old_flags)).code == 0

    # A bad file: one line, exit 2, what is wrong and where.
    bad = tmp_path / "bad.toml"
    bad.write_text("[tables.docs]\nbuckett = 'x'\n")
    line = one_line(await shell.run("ls", "docs", f"--config={bad}"), 2, "InvalidInput")
    assert "buckett" in line
    bad.write_text("[tables.docs\n")
    one_line(await shell.run("ls", "docs", f"--config={bad}"), 2, "InvalidInput")
    line = one_line(await shell.run("ls", "docs", "--config=missing.toml"), 2, "InvalidInput")
    assert "missing.toml" in line


async def test_exit_codes_not_found_usage_and_unavailable(
    shell: Any, la: LargeAttrClient, table: LargeAttrTable, aws: AwsConfig
) -> None:
    shell.config(table)
    # Not found (3): the item, the table.
    line = one_line(
        await shell.run("put", "docs", "nope", "--update", "--set", "a=1"), 3, "ItemNotFound"
    )
    assert "pk=nope" in line
    one_line(await shell.run("ls", "no-such-table"), 3, "TableNotFound")
    # Usage (2): argparse's own errors, and bad values.
    ran = await shell.run("put", "docs")
    assert ran.code == 2
    assert "the following arguments are required: KEY" in ran.err
    one_line(await shell.run("put", "docs", "x", "--blob", "html"), 2, "InvalidInput")
    one_line(await shell.run("put", "docs", "x", "--blob", "body=a"), 2, "UnknownAttribute")
    one_line(await shell.run("put", "docs", "x", "y", "--blob", "html=a"), 2, "InvalidInput")
    one_line(await shell.run("put", "docs", "x", "--blob", "html=@missing.bin"), 2, "InvalidInput")
    one_line(
        await shell.run("put", "docs", "x", "--expected-version=1", "--blob", "html=a"),
        2,
        "InvalidInput",
    )
    one_line(await shell.run("ls", "docs", "--limit=0"), 2, "InvalidInput")
    ran = await shell.run(
        "put", "docs", "x", "--blob", "html=a", "--json", "--update", "--overwrite"
    )
    assert (ran.code, json.loads(ran.err)["error"]) == (2, "InvalidInput")
    assert ran.out == ""

    # Temporal unreachable (4): one line, no traceback; --debug shows it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        ran = await shell.process("put", "docs", "x", "--blob", "html=a", f"--address={closed}")
        line = one_line(ran, 4, "Unavailable")
        assert "cannot reach Temporal" in line
        assert "Traceback" not in ran.err
        ran = await shell.process("history", "docs", "x", f"--address={closed}", "--debug")
        assert ran.code == 4
        assert "Traceback" in ran.err
    assert await la.get(table, "x") is None


# ---------------------------------------------------------------- progress, dev, demo


async def test_on_progress_follows_reads_and_client_side_uploads(
    la: LargeAttrClient, table: LargeAttrTable, tmp_path: Path
) -> None:
    data = hashlib.sha256(b"p").digest() * 250_000  # 8 MB: multipart in the test transfer
    uploaded: list[tuple[int, int | None]] = []
    await la.create(
        table,
        "p",
        blobs={"image": data, "html": b"inline"},
        on_progress=lambda done, total: uploaded.append((done, total)),
    )
    assert uploaded[-1] == (len(data), len(data))  # the inline blob is not counted
    assert all(total == len(data) for _, total in uploaded)
    assert [done for done, _ in uploaded] == sorted(done for done, _ in uploaded)
    item = await la.get(table, "p")
    assert item is not None
    read: list[tuple[int, int | None]] = []
    assert await la.read_blob(item.blob("image"), on_progress=lambda *p: read.append(p)) == data
    assert read[0] == (0, len(data))
    assert read[-1] == (len(data), len(data))
    assert len(read) > 2
    downloaded: list[tuple[int, int | None]] = []
    await la.download(
        item.blob("image"), tmp_path / "out", on_progress=lambda *p: downloaded.append(p)
    )
    assert downloaded[-1] == (len(data), len(data))


def test_progress_line_draws_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert ProgressLine.for_terminal("x", io.StringIO()) is None
    screen = Terminal()
    line = ProgressLine.for_terminal("uploading", screen)
    assert line is not None
    line(0, 2_000_000)
    line(2_000_000, 2_000_000)
    line.close()
    assert screen.getvalue().endswith("\ruploading: 2.0 MB / 2.0 MB (100%)\x1b[K\n")


async def test_dev_export_lines_point_another_shell_at_the_stack(
    web_ui: Stack, shell: Any, table: LargeAttrTable, la: LargeAttrClient
) -> None:
    await la.create(table, "id-1", blobs={"html": b"x"})
    lines = web_ui.export_lines()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TEMPORAL_"))}
    for line in lines:
        assert line.startswith("export ")
        for pair in shlex.split(line)[1:]:
            name, _, value = pair.partition("=")
            env[name] = value
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    ran = await shell.process("ls", table.table_name, "--json", env=env)
    assert ran.code == 0, ran
    assert [i["item"] for i in ran.json()["items"]] == ["pk=id-1"]


async def test_demo_runs_on_an_existing_stack(
    shell: Any, aws: AwsConfig, temporal_address: str
) -> None:
    ran = await shell.run(
        "demo",
        f"--address={temporal_address}",
        f"--aws-endpoint-url={aws.endpoint_url}",
        f"--ui-url={shell.ui_url}",
    )
    assert ran.code == 0, ran
    assert "demo OK" in ran.out
    links = re.findall(
        rf"Web UI +: {re.escape(shell.ui_url)}/namespaces/default/workflows/", ran.out
    )
    assert len(links) == 3
    assert f"S3+DynamoDB : {aws.endpoint_url}" in ran.out
