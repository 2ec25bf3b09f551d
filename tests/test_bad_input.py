"""Bad input: each case fails with a typed error whose message says what to do, and
nothing is written (no item, no object, no open multipart upload).

Issue 3, scenario 4. Cases covered elsewhere (a blob given as int / str / float / dict /
text file object / object(), a missing file) are in test_blobs.py and not repeated.

Wrong credentials are tested against a private moto server whose IAM authentication is
switched on (moto's ``/moto-api/reset-auth`` endpoint, the server-mode form of
``INITIAL_NO_AUTH_ACTION_COUNT``): a real IAM user and access key are created first, so a
client with that key works and a client with an unknown key or a wrong secret is refused
by the server itself, as AWS would refuse it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from largeattr import (
    AccessDenied,
    AwsConfig,
    Blob,
    BlobTooLarge,
    BucketNotFound,
    InvalidInput,
    InvalidKey,
    ItemTooLarge,
    LargeAttrClient,
    LargeAttrError,
    LargeAttrTable,
    TableNotFound,
    UnknownAttribute,
    keys,
)
from largeattr.activities import SagaActivities
from largeattr.devstack import EMULATOR_REGION, start_moto, stop_process
from largeattr.provision import ensure_bucket, ensure_table
from largeattr.transfer import MAX_OBJECT_SIZE, TransferConfig
from largeattr.worker import build_worker
from tests.conftest import BUCKET, no_change, object_keys, raw_item
from tests.faults import Faults, client_error
from tests.invariants import (
    assert_invariants,
    nothing_written,
    tally_faults,  # noqa: F401 - autouse fixture
    tally_module,  # noqa: F401 - autouse fixture
    terminate_if_running,
)

HTML = b"<p>bad input must not reach S3</p>"


@dataclass
class Ctx:
    la: LargeAttrClient
    table: LargeAttrTable  # partition key only, with item "existing"
    sk_table: LargeAttrTable  # partition key + sort key, with item ("existing", "1")
    tmp_path: Path
    opened: list[Any]


class HugeFile(io.RawIOBase):
    """A seekable binary file object that claims to be larger than S3 accepts."""

    mode = "rb"

    def __init__(self, size: int) -> None:
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        return 0


def text_file(ctx: Ctx) -> Any:
    path = ctx.tmp_path / "page.html"
    path.write_text("<p>text</p>")
    handle = open(path)  # noqa: SIM115 - closed by the ctx fixture
    ctx.opened.append(handle)
    return handle


def create(key: Any, blobs: Any = None, **kwargs: Any) -> Callable[[Ctx], Awaitable[Any]]:
    return lambda ctx: ctx.la.create(
        ctx.table, key, {"html": HTML} if blobs is None else blobs, **kwargs
    )


def create_sk(key: Any) -> Callable[[Ctx], Awaitable[Any]]:
    return lambda ctx: ctx.la.create(ctx.sk_table, key, {"html": HTML})


def update(
    key: Any = "existing", blobs: Any = None, **kwargs: Any
) -> Callable[[Ctx], Awaitable[Any]]:
    return lambda ctx: ctx.la.update(ctx.table, key, blobs, **kwargs)


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Ctx], Awaitable[Any]]
    error: type[LargeAttrError]
    match: str  # what the message tells the user (a regex, searched case-insensitively)


CASES = [
    # ---------------------------------------------------------------- keys
    Case("empty-pk", create(""), InvalidKey, "must not be empty"),
    Case("empty-bytes-pk", create(b""), InvalidKey, "must not be empty"),
    Case("empty-sk", create_sk(("a", "")), InvalidKey, "must not be empty"),
    Case("pk-over-2048-bytes", create("x" * 2049), InvalidKey, "DynamoDB allows 2048"),
    Case("sk-over-1024-bytes", create_sk(("a", "y" * 1025)), InvalidKey, "DynamoDB allows 1024"),
    # 800 UTF-8 bytes: fine for DynamoDB, 2,400 bytes once percent-encoded in the S3 key.
    Case("escaped-s3-key-over-1024-unicode", create("é" * 400), InvalidKey, "shorter key value"),
    Case("escaped-s3-key-over-1024-slashes", create("/" * 340), InvalidKey, "S3 allows 1024"),
    Case("escaped-s3-key-over-1024-update", update("%" * 340, set={"a": 1}), InvalidKey, "1024"),
    Case(
        "escaped-s3-key-over-1024-sk-newlines",
        lambda ctx: ctx.la.delete(ctx.sk_table, ("a", "\n" * 340)),
        InvalidKey,
        "shorter key value",
    ),
    Case("lone-surrogate-pk", create("bad\udc80key"), InvalidKey, "not valid Unicode"),
    Case("lone-surrogate-sk", create_sk(("a", "\ud800")), InvalidKey, "fix its encoding"),
    Case("float-pk", create(1.5), InvalidKey, "must be a str, int, Decimal or bytes"),
    Case("bool-pk", create(True), InvalidKey, "must be a str, int, Decimal or bytes"),
    Case("list-pk", create(["a"]), InvalidKey, "must be a str, int, Decimal or bytes"),
    Case("none-pk", create(None), InvalidKey, "needs 'pk'"),
    Case("nan-pk", create(Decimal("NaN")), InvalidKey, "finite number"),
    Case("infinite-pk", create(Decimal("-Infinity")), InvalidKey, "finite number"),
    Case("sk-missing", create_sk("a"), InvalidKey, r"has a sort key; give \(pk, sk\)"),
    Case("sk-on-table-without-sk", create(("a", "b")), InvalidKey, "the key of .* is pk"),
    Case("extra-key-attribute", create({"pk": "a", "id": "b"}), InvalidKey, "not key attributes"),
    # The table's pk is a string; only DynamoDB knows that (the worker's read is refused).
    Case("key-type-mismatch", create(7), InvalidInput, "DynamoDB rejected the request.*mismatch"),
    # ---------------------------------------------------------------- attributes
    Case("unknown-large-attribute", create("a", {"pdf": b"%PDF"}), UnknownAttribute, "declared"),
    Case(
        "unknown-large-attribute-update",
        update(blobs={"thumbnail": b"x"}),
        UnknownAttribute,
        "Pass other attributes as attributes=",
    ),
    Case(
        "large-attribute-as-plain",
        create("a", attributes={"html": "<p>inline</p>"}),
        InvalidInput,
        "pass it in blobs=",
    ),
    Case("remove-large-attribute-by-name", update(remove=["html"]), InvalidInput, "blobs="),
    Case("set-key-attribute", update(set={"pk": "other"}), InvalidInput, "key attribute"),
    Case("set-version", update(set={"la_version": 99}), InvalidInput, "maintained by largeattr"),
    Case("remove-meta", update(remove=["la_meta"]), InvalidInput, "maintained by largeattr"),
    Case("empty-attribute-name", create("a", attributes={"": 1}), InvalidInput, "non-empty"),
    Case(
        "unstorable-value",
        create("a", attributes={"when": dt.datetime(2024, 1, 1)}),
        InvalidInput,
        "DynamoDB cannot store datetime.*use str, int",
    ),
    Case("remove-as-one-string", update(remove="title"), InvalidInput, "takes a list"),
    Case("nothing-to-update", update(), InvalidInput, "nothing to change; pass blobs"),
    Case(
        "attribute-in-set-and-remove",
        update(set={"title": "x"}, remove=["title"]),
        InvalidInput,
        "more than one of set/remove/add/delete",
    ),
    Case(
        "expected-version-str",
        update(set={"a": 1}, expected_version="1"),
        InvalidInput,
        "must be an int",
    ),
    Case(
        "expected-version-bool",
        update(set={"a": 1}, expected_version=True),
        InvalidInput,
        "must be an int",
    ),
    Case(
        "on-busy-unknown", update(set={"a": 1}, on_busy="queue"), InvalidInput, "'wait' or 'fail'"
    ),
    Case("create-blob-none", create("a", {"html": None}), InvalidInput, "leave them out"),
    # ---------------------------------------------------------------- sizes
    Case(
        "item-over-400kb-one-attribute",
        create("a", attributes={"notes": "x" * 410_000}),
        ItemTooLarge,
        "Declare the biggest attributes as large attributes",
    ),
    Case(
        "item-over-400kb-many-attributes",
        create("a", attributes={f"a{i}": "y" * 1_000 for i in range(420)}),
        ItemTooLarge,
        "DynamoDB allows 409,600",
    ),
    Case(
        "item-over-400kb-update",
        update(set={"notes": "z" * 420_000}),
        ItemTooLarge,
        "go to S3",
    ),
    Case(
        "blob-over-5tb",
        lambda ctx: ctx.la.create(ctx.table, "a", {"image": HugeFile(MAX_OBJECT_SIZE + 1)}),
        BlobTooLarge,
        "S3 objects are at most",
    ),
    # ---------------------------------------------------------------- blob types
    Case("blob-list-of-str", create("a", {"html": ["<p>", "</p>"]}), InvalidInput, "bytes chunks"),
    Case("blob-set", create("a", {"html": {b"a", b"b"}}), InvalidInput, "serialise it first"),
    Case("blob-bool", create("a", {"html": True}), InvalidInput, "not bool"),
    Case("blob-wrapped-none", create("a", {"html": Blob(None)}), InvalidInput, "must be bytes"),
    Case(
        "blob-text-mode-file",
        lambda ctx: ctx.la.create(ctx.table, "a", {"html": text_file(ctx)}),
        InvalidInput,
        "binary mode",
    ),
    Case(
        "blob-directory",
        lambda ctx: ctx.la.create(ctx.table, "a", {"html": ctx.tmp_path}),
        InvalidInput,
        "not a readable file",
    ),
]


@pytest.fixture
async def ctx(la: LargeAttrClient, new_table: Any, tmp_path: Path) -> AsyncIterator[Ctx]:
    table, sk_table = new_table(), new_table(sort_key="sk")
    await la.create(table, "existing", {"html": HTML}, {"title": "kept", "notes": "n"})
    await la.create(sk_table, ("existing", "1"), {"html": HTML})
    context = Ctx(la, table, sk_table, tmp_path, [])
    yield context
    for handle in context.opened:
        handle.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_and_nothing_is_written(
    ctx: Ctx, case: Case, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    with (
        nothing_written(s3, dynamodb, ctx.table, ctx.sk_table),
        no_change(s3, dynamodb, ctx.table, ctx.table.key("existing")),
        pytest.raises(LargeAttrError) as raised,
    ):
        await asyncio.wait_for(case.call(ctx), 120)
    err = raised.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    # "Nothing written" is checked on the tables and the bucket by nothing_written() and
    # no_change() above.
    assert re.search(case.match, str(err), re.IGNORECASE), str(err)
    await assert_invariants(s3, dynamodb, temporal, ctx.table, ["existing"])
    await assert_invariants(s3, dynamodb, temporal, ctx.sk_table, [("existing", "1")])


# ------------------------------------------------------------------ awkward but valid keys

AWKWARD = {
    "slash": "a/b",
    "equals": "pk=a",
    "slash-sk-lookalike": "a/sk=b",
    "percent": "100%",
    "percent-escape": "a%2Fb",
    "dot-dot": "..",
    "dot-dot-path": "../../etc/passwd",
    "single-dot": ".",
    "newline": "line1\nline2",
    "crlf-tab": "a\r\n\tb",
    "nul": "a\x00b",
    "emoji-and-rtl": "🎉 مرحبا",
    "combining": "e\u0301",
    "precomposed": "\u00e9",
}


async def test_awkward_key_values_are_escaped_not_refused(
    la: LargeAttrClient, new_table: Any, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    """pk/sk values with ``/``, ``=``, ``%``, ``..``, newlines and non-ASCII are legal in
    DynamoDB: they are accepted, and each maps to its own S3 path, inside the prefix."""
    table = new_table(sort_key="sk")
    paths: dict[str, str] = {}
    for name, value in AWKWARD.items():
        result = await la.create(table, (value, value), {"html": value.encode()})
        key = result.blobs[0].key
        assert key.startswith(f"{table.prefix}/t={table.table_name}/pk=")
        pk_segment, sk_segment = key.split("/")[-4:-2]
        assert pk_segment == f"pk={keys.escape(value)}"
        assert sk_segment == f"sk={keys.escape(value)}"
        # Nothing a path tool could read as a step or a separator.
        assert all(part not in (".", "..") for part in key.split("/")), key
        assert key.isascii(), key
        assert "\n" not in key, key
        paths[name] = key
        item = await la.get(table, (value, value))
        assert item is not None
        assert await la.read_blob(item.blob("html")) == value.encode()
    assert len(set(paths.values())) == len(AWKWARD)  # no two values share a path
    await assert_invariants(s3, dynamodb, temporal, table, [(v, v) for v in AWKWARD.values()])


# ------------------------------------------------------------------ the wrong table / bucket


async def test_missing_table_is_table_not_found(
    la: LargeAttrClient, s3: Any, dynamodb: Any, temporal: Client
) -> None:
    name = f"missing-{uuid.uuid4().hex[:8]}"
    table = LargeAttrTable(
        table_name=name, partition_key="pk", large_attributes=("html",), bucket=BUCKET, prefix=name
    )
    for call in (
        lambda: la.create(table, "doc", {"html": HTML}),
        lambda: la.update(table, "doc", {"html": HTML}),
        lambda: la.delete(table, "doc"),
        lambda: la.get(table, "doc"),
    ):
        with pytest.raises(TableNotFound, match=r"create it \(`largeattr setup`\)"):
            await asyncio.wait_for(call(), 120)
    assert name not in dynamodb.list_tables()["TableNames"]
    assert object_keys(s3, table) == set()


async def test_missing_bucket_is_bucket_not_found(
    la: LargeAttrClient, dynamodb: Any, s3: Any, temporal: Client
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    table = LargeAttrTable(
        table_name=name, partition_key="pk", large_attributes=("html",), bucket=bucket, prefix=name
    )
    ensure_table(dynamodb, table, "S", "S")
    try:
        with pytest.raises(BucketNotFound, match=r"create it \(`largeattr setup`\)"):
            await asyncio.wait_for(la.create(table, "doc", {"html": HTML}), 60)
    finally:
        left_running = await terminate_if_running(temporal, table.workflow_id("doc"))
    assert not left_running, "the saga was still running (compensation retrying forever?)"
    assert raw_item(dynamodb, table, table.key("doc")) is None
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


# ------------------------------------------------------------------ wrong credentials

#: How AWS refuses credentials, as botocore reports it: DynamoDB's unknown key and wrong
#: secret, a 403 without a parsable body (S3 answers a HEAD so; moto answers DynamoDB so),
#: a missing IAM permission.
REFUSALS = {
    "unknown-key": ("GetItem", "UnrecognizedClientException", 400),
    "wrong-secret": ("GetItem", "InvalidSignatureException", 400),
    "no-permission": ("GetItem", "AccessDeniedException", 400),
    "bare-403": ("GetItem", "403", 403),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_aws_refusals_are_access_denied(
    la: LargeAttrClient, table: LargeAttrTable, refusal: str
) -> None:
    """Injected on this client's own DynamoDB client (a read runs no saga), so each code
    costs no retries: they are refusals, not glitches."""
    await la.create(table, "doc", {"html": HTML})
    operation, code, status = REFUSALS[refusal]
    client_side = Faults().attach(la.storage.dynamodb)
    client_side.fail(operation, times=1, error=lambda: client_error(code, status))
    with pytest.raises(LargeAttrError) as raised:
        await la.get(table, "doc")
    assert type(raised.value) is AccessDenied, f"{type(raised.value).__name__}: {raised.value}"
    assert "check the credentials" in str(raised.value)


@dataclass
class AuthStack:
    endpoint: str
    good: AwsConfig
    bad_key: AwsConfig
    bad_secret: AwsConfig
    good_queue: str
    bad_queue: str


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
async def auth_stack(
    temporal: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AuthStack]:
    """A private moto server that checks credentials, with a worker that has good ones and
    a worker that has an unknown access key."""
    import boto3

    log = tmp_path_factory.mktemp("auth-moto") / "moto.log"
    process, port = start_moto(port=None, log=log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="largeattr")
        iam.put_user_policy(
            UserName="largeattr",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        access = iam.create_access_key(UserName="largeattr")["AccessKey"]
        good = AwsConfig(
            endpoint_url=endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id=access["AccessKeyId"],
            aws_secret_access_key=access["SecretAccessKey"],
            max_attempts=1,
        )
        bad_key = AwsConfig(
            endpoint_url=endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id="AKIANOTAREALKEY00000",
            aws_secret_access_key="wrong",
            max_attempts=1,
        )
        bad_secret = AwsConfig(
            endpoint_url=endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id=access["AccessKeyId"],
            aws_secret_access_key="not-the-secret",
            max_attempts=1,
        )
        s3, _ = good.clients()
        ensure_bucket(s3, BUCKET)
        _post(f"{endpoint}/moto-api/reset-auth", b"0")  # from now on, every call is checked
        s3.list_objects_v2(Bucket=BUCKET)  # the good key still works
        queues = []
        workers = []
        for config in (good, bad_key):
            queue = f"auth-{uuid.uuid4().hex[:8]}"
            workers.append(
                build_worker(
                    temporal,
                    task_queue=queue,
                    activities=SagaActivities(*config.clients()),
                    shutdown_grace=1.0,
                )
            )
            queues.append(queue)
        async with workers[0][0], workers[1][0]:
            yield AuthStack(endpoint, good, bad_key, bad_secret, queues[0], queues[1])
        for _, executor in workers:
            executor.shutdown(wait=False)
    finally:
        stop_process(process)


@pytest.fixture
def auth_table(auth_stack: AuthStack) -> LargeAttrTable:
    from largeattr.provision import ensure_table as make_table

    name = f"t-{uuid.uuid4().hex[:10]}"
    table = LargeAttrTable(
        table_name=name,
        partition_key="pk",
        large_attributes=("html", "image"),
        bucket=BUCKET,
        prefix=f"p/{name}",
    )
    _, dynamodb = auth_stack.good.clients()
    make_table(dynamodb, table, "S", "S")
    return table


CREDENTIAL_CASES = [
    "client-read-unknown-key",
    "client-read-wrong-secret",
    "client-upload-unknown-key",
    "worker-unknown-key",
]


@pytest.mark.parametrize("case", CREDENTIAL_CASES)
async def test_wrong_credentials_are_access_denied(
    auth_stack: AuthStack, auth_table: LargeAttrTable, temporal: Client, case: str
) -> None:
    table = auth_table
    s3, dynamodb = auth_stack.good.clients()
    good = LargeAttrClient(temporal, task_queue=auth_stack.good_queue, aws=auth_stack.good)
    await good.create(table, "existing", {"html": HTML})
    config = auth_stack.bad_secret if case == "client-read-wrong-secret" else auth_stack.bad_key
    if case.startswith("worker"):
        # The caller's credentials are right; the worker's are not.
        la = LargeAttrClient(temporal, task_queue=auth_stack.bad_queue, aws=auth_stack.good)
    else:
        la = LargeAttrClient(temporal, task_queue=auth_stack.good_queue, aws=config)
    call: Coroutine[Any, Any, object]
    if case.startswith("client-read"):
        call = la.get(table, "existing")
    elif case == "client-upload-unknown-key":
        # Above the inline threshold: the bytes go to S3 from this client.
        call = la.create(table, "new", {"image": b"x" * (TransferConfig().inline_threshold + 1)})
    else:
        call = la.create(table, "new", {"html": HTML})
    try:
        with nothing_written(s3, dynamodb, table), pytest.raises(LargeAttrError) as raised:
            await asyncio.wait_for(call, 150)
    finally:
        await terminate_if_running(temporal, table.workflow_id("new"))
        await la.close()
        await good.close()
    err = raised.value
    assert type(err) is AccessDenied, f"{type(err).__name__}: {err}"
    assert "check the credentials" in str(err)
    await assert_invariants(s3, dynamodb, temporal, table, ["existing", "new"])
