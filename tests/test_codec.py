"""Payload encryption (largeattr.codec) and the codec server, on the real stack.

The proof that matters: with the codec on, no blob byte and no attribute value is in the
history the Temporal server holds (``temporal workflow show``), the sagas give the same
results and errors as without it, and the codec server gives the data back to a holder of
its token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.activities import SagaActivities
from largeattr.cli import run as cli_run
from largeattr.codec import ENCODING, KEY_ID, EncryptionCodec, Keyring, new_key_entry
from largeattr.codecserver import CodecService, serve_for_ui, serve_in_background
from largeattr.devstack import temporal_binary
from largeattr.errors import InvalidInput, ItemAlreadyExists, TableNotFound, UndecryptablePayload
from largeattr.failures import (
    LargeAttrEncryptedFailureConverter,
    LargeAttrFailureConverter,
    data_converter,
)
from largeattr.sources import SourceRegistry
from largeattr.transfer import TransferConfig
from largeattr.workflows import ALL_WORKFLOWS
from tests.conftest import client_with_worker, largeattr_toml, object_keys, raw_item

#: Markers no serialisation of ours produces by chance.
BLOB_MARK = b"BLOB-SECRET-7f3a9c"
ATTR_MARK = "ATTR-SECRET-5b21e8"
TOKEN = "codec-test-token"


def keyring(*ids: str) -> Keyring:
    return Keyring.parse([new_key_entry(i) for i in ids], "test")


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# ------------------------------------------------------------------ the codec alone


@pytest.mark.unit
async def test_round_trip_hides_data_and_encoding() -> None:
    codec = EncryptionCodec(keyring("k1"))
    [sealed] = await codec.encode([payload(ATTR_MARK)])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"k1"
    assert ATTR_MARK.encode() not in sealed.data
    assert b"json/plain" not in sealed.data
    [opened] = await codec.decode([sealed])
    assert opened == payload(ATTR_MARK)
    # A fresh nonce each time: equal inputs do not give equal ciphertexts.
    [again] = await codec.encode([payload(ATTR_MARK)])
    assert again.data != sealed.data


@pytest.mark.unit
async def test_rotation_new_key_encrypts_old_keys_still_decrypt() -> None:
    old_entry, new_entry = new_key_entry("2026-11"), new_key_entry("2026-12")
    old = EncryptionCodec(Keyring.parse([old_entry], "old"))
    rotated = EncryptionCodec(Keyring.parse([new_entry, old_entry], "rotated"))
    [written_before] = await old.encode([payload("before")])
    [written_after] = await rotated.encode([payload("after")])
    assert written_after.metadata[KEY_ID] == b"2026-12"
    assert await rotated.decode([written_before, written_after]) == [
        payload("before"),
        payload("after"),
    ]
    # Once the old key is dropped, its payloads fail with a message that names it.
    dropped = EncryptionCodec(Keyring.parse([new_entry], "dropped"))
    with pytest.raises(UndecryptablePayload, match=r"'2026-11'.*add that key back"):
        await dropped.decode([written_before])


@pytest.mark.unit
async def test_wrong_key_or_altered_payload_is_refused() -> None:
    codec = EncryptionCodec(keyring("k1"))
    impostor = EncryptionCodec(keyring("k1"))  # same id, other bytes
    [sealed] = await codec.encode([payload("x")])
    with pytest.raises(UndecryptablePayload, match="does not decrypt"):
        await impostor.decode([sealed])
    altered = Payload()
    altered.CopyFrom(sealed)
    altered.metadata[KEY_ID] = b"k2"
    with pytest.raises(UndecryptablePayload, match="'k2'"):
        await codec.decode([altered])


@pytest.mark.unit
async def test_plain_payloads_pass_through_decode() -> None:
    """Sagas started before the codec was turned on still decode."""
    codec = EncryptionCodec(keyring("k1"))
    assert await codec.decode([payload("plain")]) == [payload("plain")]


@pytest.mark.unit
def test_bad_keyrings_say_what_to_do_and_never_echo_a_key(tmp_path: Path) -> None:
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(InvalidInput, match=r"entry 1.*32-byte.*largeattr codec-key") as caught:
        Keyring.parse([f"k1={short}"], "LARGEATTR_CODEC_KEYS")
    assert short not in str(caught.value)
    with pytest.raises(InvalidInput, match="twice"):
        Keyring.parse([new_key_entry("a"), new_key_entry("a")], "x")
    with pytest.raises(InvalidInput, match="empty"):
        Keyring.parse(["# nothing", ""], "x")
    with pytest.raises(InvalidInput, match="not both"):
        Keyring.from_env({"LARGEATTR_CODEC_KEYS": "a", "LARGEATTR_CODEC_KEY_FILE": "b"})
    with pytest.raises(InvalidInput, match="cannot read the codec key file"):
        Keyring.from_env({"LARGEATTR_CODEC_KEY_FILE": str(tmp_path / "missing")})
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# newest first\n{new_key_entry('b')}\n{new_key_entry('a')}\n")
    ring = Keyring.from_env({"LARGEATTR_CODEC_KEY_FILE": str(keys_file)})
    assert ring is not None
    assert ring.active == "b"
    assert [i for i, _ in ring.keys] == ["b", "a"]
    assert Keyring.from_env({}) is None


# ------------------------------------------------------------------ the codec server


@pytest.fixture
def codec_server() -> Iterator[tuple[str, EncryptionCodec]]:
    codec = EncryptionCodec(keyring("k1"))
    service = CodecService(codec, tokens=frozenset({TOKEN}), namespaces=frozenset({"default"}))
    server, url = serve_in_background(service)
    yield url, codec
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wire(*payloads: Payload) -> bytes:
    """A codec server request body: proto3 JSON, bytes as base64."""
    return json.dumps(
        {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                    "data": base64.b64encode(p.data).decode(),
                }
                for p in payloads
            ]
        }
    ).encode()


@pytest.mark.unit
def test_codec_server_decodes_for_token_holders_only(
    codec_server: tuple[str, EncryptionCodec],
) -> None:
    url, codec = codec_server
    sealed = codec.encrypt(payload(ATTR_MARK))
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}

    status, _, body = post(f"{url}/decode", wire(sealed), **auth)
    assert status == 200
    [decoded] = json.loads(body)["payloads"]
    assert base64.b64decode(decoded["data"]) == json.dumps(ATTR_MARK).encode()
    # The CLI's namespace-templated path works the same.
    assert post(f"{url}/default/decode", wire(sealed), Authorization=f"Bearer {TOKEN}")[0] == 200

    # encode then decode over HTTP gives the payload back.
    status, _, body = post(f"{url}/encode", wire(payload("round")), **auth)
    assert status == 200
    [encoded] = json.loads(body)["payloads"]
    assert base64.b64decode(encoded["metadata"]["encoding"]) == ENCODING
    status, _, body = post(f"{url}/decode", json.dumps({"payloads": [encoded]}).encode(), **auth)
    assert base64.b64decode(json.loads(body)["payloads"][0]["data"]) == b'"round"'

    no_token = post(f"{url}/decode", wire(sealed), **{"X-Namespace": "default"})
    assert no_token[0] == 401
    assert ATTR_MARK.encode() not in no_token[2]
    wrong = post(f"{url}/decode", wire(sealed), Authorization="Bearer nope")
    assert wrong[0] == 401
    other_ns = post(f"{url}/decode", wire(sealed), **{**auth, "X-Namespace": "prod"})
    assert other_ns[0] == 403
    assert post(f"{url}/other", wire(sealed), **auth)[0] == 404
    bad = post(f"{url}/decode", b"not json", **auth)
    assert bad[0] == 400
    assert "proto3 JSON" in json.loads(bad[2])["error"]
    assert post(f"{url}/decode", b"\xff\xfe", **auth)[0] == 400
    mismatch = post(f"{url}/default/decode", wire(sealed), **{**auth, "X-Namespace": "prod"})
    assert mismatch[0] == 400
    truncated = Payload()
    truncated.CopyFrom(sealed)
    truncated.data = sealed.data[:5]
    short = post(f"{url}/decode", wire(truncated), **auth)
    assert short[0] == 400
    assert "does not decrypt" in json.loads(short[2])["error"]


@pytest.mark.unit
def test_codec_server_answers_the_web_ui_preflight(
    codec_server: tuple[str, EncryptionCodec],
) -> None:
    url, _ = codec_server

    def preflight(origin: str) -> dict[str, str]:
        request = urllib.request.Request(
            f"{url}/decode",
            method="OPTIONS",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(answer.headers)

    allowed = preflight("http://localhost:8233")
    assert allowed["Access-Control-Allow-Origin"] == "http://localhost:8233"
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert {"x-namespace", "authorization", "content-type"} <= {
        h.strip().lower() for h in allowed["Access-Control-Allow-Headers"].split(",")
    }
    assert "Access-Control-Allow-Origin" not in preflight("http://evil.example")


@pytest.mark.unit
def test_codec_server_refuses_to_serve_off_loopback_without_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(new_key_entry("k1") + "\n")
    code = cli_run(["codec-server", "--host", "0.0.0.0", "--key-file", str(keys_file)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--token-file" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ on the real stack


def hidden_in(text: str, needle: bytes) -> bool:
    """Whether ``needle`` is in ``text``, raw or under up to three layers of base64 (a
    payload's data is base64 in the JSON output; a blob is base64 again inside it)."""
    layers = [text.encode()]
    for _ in range(3):
        if any(needle in layer for layer in layers):
            return True
        decoded = []
        for layer in layers:
            for run in re.findall(rb"[A-Za-z0-9+/]{16,}={0,2}", layer):
                for start in range(4):  # runs inside text may start off a 4-char boundary
                    chunk = run[start:]
                    chunk = chunk[: len(chunk) - len(chunk) % 4]
                    try:
                        decoded.append(base64.b64decode(chunk))
                    except (binascii.Error, ValueError):
                        continue
        layers = decoded
    return any(needle in layer for layer in layers)


def workflow_show(address: str, run: Run, *extra: str) -> str:
    result = subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "show",
            "--address",
            address,
            "-w",
            run[0],
            "-r",
            run[1],
            "--output",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def codec_entry() -> str:
    return new_key_entry("k-test")


@pytest.fixture(scope="module")
def codec(codec_entry: str) -> EncryptionCodec:
    return EncryptionCodec(Keyring.parse([codec_entry], "test"))


@pytest.fixture(scope="module")
async def codec_temporal(temporal_address: str, codec: EncryptionCodec) -> Client:
    return await Client.connect(temporal_address, data_converter=data_converter(codec=codec))


@pytest.fixture(scope="module")
async def codec_la(
    codec_temporal: Client, aws: AwsConfig, allowed_dir: Path, test_transfer: TransferConfig
) -> AsyncIterator[LargeAttrClient]:
    """A client and a sandboxed worker, both with the codec, on their own task queue."""
    s3, dynamodb = aws.clients()
    activities = SagaActivities(s3, dynamodb, test_transfer, SourceRegistry([allowed_dir]))
    async with client_with_worker(
        codec_temporal, aws, test_transfer, "codec", activities=activities
    ) as la:
        yield la


Run = tuple[str, str]


async def run_sagas(la: LargeAttrClient, table: LargeAttrTable, key: str) -> list[Run]:
    """Create, update, delete one item carrying the markers; their (workflow id, run id):
    the three share the item's workflow id."""
    created = await la.start_create(
        table, key, blobs={"html": BLOB_MARK * 50}, attributes={"note": ATTR_MARK}
    )
    assert (await la.result(created)).version == 1
    item = await la.get(table, key)
    assert item is not None
    assert item.attributes["note"] == ATTR_MARK
    assert await la.read_blob(item.blobs["html"]) == BLOB_MARK * 50
    updated = await la.start_update(
        table, key, {"image": BLOB_MARK + b"-image"}, set={"note": ATTR_MARK + "-2"}
    )
    assert (await la.result(updated)).version == 2
    deleted = await la.start_delete(table, key)
    await la.result(deleted)
    return [(h.id, str(h.result_run_id)) for h in (created, updated, deleted)]


async def test_without_the_codec_the_markers_are_in_the_history(
    la: LargeAttrClient, table: LargeAttrTable, temporal_address: str
) -> None:
    """The control: the search below finds the markers when nothing hides them."""
    ids = await run_sagas(la, table, "plain")
    for run in ids[:2]:  # the create and the update carry both (a delete carries neither)
        shown = workflow_show(temporal_address, run)
        assert hidden_in(shown, BLOB_MARK), run
        assert hidden_in(shown, ATTR_MARK.encode()), run


async def test_with_the_codec_no_blob_byte_or_attribute_value_reaches_temporal(
    codec_la: LargeAttrClient,
    table: LargeAttrTable,
    temporal_address: str,
    codec_server: tuple[str, EncryptionCodec],
    codec: EncryptionCodec,
    s3: Any,
    dynamodb: Any,
) -> None:
    ids = await run_sagas(codec_la, table, "secret")
    assert raw_item(dynamodb, table, {"pk": {"S": "secret"}}) is None
    assert object_keys(s3, table) == set()
    for run in ids:
        shown = workflow_show(temporal_address, run)
        assert "binary/encrypted" in base64_metadata(shown)
        assert not hidden_in(shown, BLOB_MARK), run
        assert not hidden_in(shown, ATTR_MARK.encode()), run

    # Through a codec server holding the key, `temporal` shows the data again.
    url = codec_server_for(codec)
    decoded = workflow_show(
        temporal_address, ids[0], "--codec-endpoint", url, "--codec-auth", f"Bearer {TOKEN}"
    )
    assert hidden_in(decoded, ATTR_MARK.encode())


def base64_metadata(shown: str) -> str:
    """The history's payload encodings, decoded (metadata values are base64 in JSON)."""
    found = re.findall(r'"encoding":\s*"([A-Za-z0-9+/=]+)"', shown)
    return " ".join(base64.b64decode(v).decode(errors="replace") for v in found)


_servers: dict[int, str] = {}


def codec_server_for(codec: EncryptionCodec) -> str:
    """A codec server (one per codec, for the module) that decodes with ``codec``."""
    if id(codec) not in _servers:
        service = CodecService(codec, tokens=frozenset({TOKEN}))
        _servers[id(codec)] = serve_in_background(service)[1]
    return _servers[id(codec)]


async def test_with_the_codec_errors_and_compensation_are_unchanged(
    codec_la: LargeAttrClient,
    new_table: Any,
    temporal_address: str,
    s3: Any,
    dynamodb: Any,
) -> None:
    table = new_table()
    await codec_la.create(table, "taken", blobs={"html": b"first"}, attributes={"n": ATTR_MARK})
    with pytest.raises(
        ItemAlreadyExists, match=r"pk=taken already exists \(version 1\); use update"
    ):
        await codec_la.create(table, "taken", blobs={"html": BLOB_MARK})

    # The pivot is refused after the upload: compensation removes the object.
    gone = LargeAttrTable(**{**table.__dict__, "table_name": f"{table.table_name}-missing"})
    before = object_keys(s3, gone)
    with pytest.raises(TableNotFound):
        await codec_la.create(gone, "nowhere", blobs={"html": BLOB_MARK})
    assert object_keys(s3, gone) == before

    # The failure message itself is encrypted in the history (it may quote input).
    failed = [
        w
        async for w in codec_la.temporal.list_workflows(
            f"WorkflowId STARTS_WITH '{gone.workflow_id('nowhere')}'"
        )
    ]
    assert failed
    shown = workflow_show(temporal_address, (failed[0].id, failed[0].run_id))
    assert "Encoded failure" in shown
    assert not hidden_in(shown, b"does not exist")


async def test_codec_histories_replay_with_the_codec(
    codec_la: LargeAttrClient, table: LargeAttrTable, codec: EncryptionCodec
) -> None:
    ids = await run_sagas(codec_la, table, "replayed")
    replayer = Replayer(
        workflows=list(ALL_WORKFLOWS),
        data_converter=data_converter(DataConverter.default, codec=codec),
    )
    for workflow_id, run_id in ids:
        handle = codec_la.temporal.get_workflow_handle(workflow_id, run_id=run_id)
        result = await replayer.replay_workflow(await handle.fetch_history())
        assert result.replay_failure is None


async def test_the_cli_encrypts_with_the_keyring_the_environment_names(
    codec_la: LargeAttrClient,
    codec_entry: str,
    table: LargeAttrTable,
    temporal_address: str,
    aws: AwsConfig,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``largeattr put`` with the keyring from ``LARGEATTR_CODEC_KEY_FILE``: the worker
    (which has the codec) decrypts what it encrypted."""
    keys_file = tmp_path / "codec.keys"
    keys_file.write_text(f"# the workers' keyring\n{codec_entry}\n")
    monkeypatch.delenv("LARGEATTR_CODEC_KEYS", raising=False)
    monkeypatch.setenv("LARGEATTR_CODEC_KEY_FILE", str(keys_file))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = tmp_path / "largeattr.toml"
    config.write_text(
        largeattr_toml(table, temporal_address, codec_la.task_queue, str(aws.endpoint_url))
    )
    blob = tmp_path / "page.html"
    blob.write_bytes(BLOB_MARK * 10)
    argv = ["put", "docs", "cli", "--blob", f"html=@{blob}", "--set", f"note={ATTR_MARK}"]
    code = await asyncio.to_thread(cli_run, [*argv, f"--config={config}", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    item = await codec_la.get(table, "cli")
    assert item is not None
    assert item.attributes["note"] == ATTR_MARK
    assert await codec_la.read_blob(item.blobs["html"]) == BLOB_MARK * 10
    run = (table.workflow_id("cli"), json.loads(out.out)["run_id"])
    shown = workflow_show(temporal_address, run)
    assert "binary/encrypted" in base64_metadata(shown)
    assert not hidden_in(shown, BLOB_MARK)
    assert not hidden_in(shown, ATTR_MARK.encode())

    # A keyring that cannot be read stops the command before anything is sent.
    keys_file.unlink()
    code = await asyncio.to_thread(cli_run, [*argv, "--update", f"--config={config}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot read the codec key file" in err
    assert (await codec_la.get(table, "cli")).version == 1  # type: ignore[union-attr]


@pytest.mark.unit
def test_the_codec_server_command_serves_the_keyring_it_is_given(tmp_path: Path) -> None:
    entry = new_key_entry("cmd")
    keys_file, tokens = tmp_path / "keys", tmp_path / "tokens"
    keys_file.write_text(entry + "\n")
    tokens.write_text(f"{TOKEN}\n")
    command = [sys.executable, "-c", "from largeattr.cli import main; main()", "codec-server"]
    args = ["--port", "0", "--key-file", str(keys_file), "--token-file", str(tokens)]
    server = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first
        sealed = EncryptionCodec(Keyring.parse([entry], "test")).encrypt(payload(ATTR_MARK))
        status, _, body = post(
            f"{found.group()}/decode", wire(sealed), Authorization=f"Bearer {TOKEN}"
        )
        assert status == 200
        [decoded] = json.loads(body)["payloads"]
        assert base64.b64decode(decoded["data"]) == json.dumps(ATTR_MARK).encode()
        assert post(f"{found.group()}/decode", wire(sealed))[0] == 401
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.unit
def test_largeattr_dev_serves_the_codec_to_its_web_ui_when_keys_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``largeattr dev`` passes this URL to ``--ui-codec-endpoint`` (checked by hand: the UI's
    /api/v1/settings then names it); the page's origin is the only one let in."""
    monkeypatch.delenv("LARGEATTR_CODEC_KEY_FILE", raising=False)
    monkeypatch.delenv("LARGEATTR_CODEC_KEYS", raising=False)
    assert serve_for_ui(8233) is None
    entry = new_key_entry("dev")
    monkeypatch.setenv("LARGEATTR_CODEC_KEYS", entry)
    url = serve_for_ui(8233)
    assert url is not None
    sealed = EncryptionCodec(Keyring.parse([entry], "test")).encrypt(payload(ATTR_MARK))
    status, headers, body = post(
        f"{url}/decode", wire(sealed), Origin="http://localhost:8233", **{"X-Namespace": "d"}
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
    assert ATTR_MARK in base64.b64decode(json.loads(body)["payloads"][0]["data"]).decode()
    # CORS only hides answers from foreign pages: their requests are refused outright.
    other = post(f"{url}/decode", wire(sealed), Origin="http://127.0.0.1:9999")
    assert other[0] == 403
    assert "Access-Control-Allow-Origin" not in other[1]
    assert ATTR_MARK.encode() not in other[2]
    # A DNS-rebound page reaches 127.0.0.1 under its own name: refused without tokens.
    rebound = post(f"{url}/decode", wire(sealed), Host="evil.example:8233")
    assert rebound[0] == 403
    assert "loopback" in json.loads(rebound[2])["error"]
    # The CLI sends neither Origin nor a foreign Host.
    assert post(f"{url}/decode", wire(sealed))[0] == 200


@pytest.mark.unit
def test_every_failure_of_a_cause_chain_is_hidden_even_when_re_raised() -> None:
    """A decoded error keeps its restored message *and* its encoded attributes (the SDK's
    ``from_failure``); re-raising it must not put the cause's message back in clear."""
    converter = LargeAttrEncryptedFailureConverter()
    payloads = DataConverter.default.payload_converter

    def chain(failure: Failure) -> list[Failure]:
        levels = [failure]
        while levels[-1].HasField("cause"):
            levels.append(levels[-1].cause)
        return levels

    try:
        try:
            raise KeyError(ATTR_MARK + "-cause")
        except KeyError as inner:
            raise TableNotFound(ATTR_MARK + "-top") from inner
    except TableNotFound as err:
        raised = err
    first = Failure()
    converter.to_failure(raised, payloads, first)
    back = converter.from_failure(first, payloads)
    assert isinstance(back, TableNotFound)
    assert back.message == ATTR_MARK + "-top"
    assert ATTR_MARK + "-cause" in str(back.__cause__)
    again = Failure()
    converter.to_failure(back, payloads, again)
    levels = chain(again)
    assert len(levels) == 2
    for level in levels:
        assert level.message == "Encoded failure"
        assert level.stack_trace == ""
        assert level.HasField("encoded_attributes")  # encrypted by the codec on the wire
    # Without the codec's converter, the same chain is in clear (the control).
    plain = Failure()
    LargeAttrFailureConverter().to_failure(back, payloads, plain)
    assert ATTR_MARK + "-cause" in chain(plain)[1].message
