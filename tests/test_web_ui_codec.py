"""The Web UI decodes encrypted sagas through ``largeattr codec-server``, in Chromium.

A dev server of its own, started as the README says (``--ui-codec-endpoint``), a worker and
a client with the codec, one committed create. The browser shows the attribute value in the
workflow's input only because the page asked the codec server: the server's history holds
ciphertext (tests/test_codec.py), and the codec server counts the payloads it decrypted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.codec import EncryptionCodec, Keyring, new_key_entry
from largeattr.codecserver import CodecService, serve_in_background
from largeattr.devstack import (
    Stack,
    connect_when_serving,
    free_port,
    start_temporal,
    stop_process,
)
from largeattr.failures import data_converter
from largeattr.provision import ensure_table
from largeattr.transfer import TransferConfig
from tests.conftest import BUCKET, client_with_worker
from tests.ui.browser import EVENT_ROW, Browser, text

ATTR_MARK = "ATTR-SECRET-UI-4c81"


class CountingCodec(EncryptionCodec):
    """The codec, counting the encrypted payloads it opened (for the codec server)."""

    opened = 0

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == b"binary/encrypted":
            self.opened += 1
        return super().decrypt(payload)


@pytest.fixture(scope="module")
def codec() -> CountingCodec:
    return CountingCodec(Keyring.parse([new_key_entry("ui")], "test"))


@pytest.fixture(scope="module")
def ui_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def codec_url(codec: CountingCodec, ui_port: int) -> Iterator[str]:
    """The codec server, open to the UI's origin only (the browser enforces CORS)."""
    origins = frozenset({f"http://127.0.0.1:{ui_port}"})
    server, url = serve_in_background(CodecService(codec, origins=origins))
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def codec_stack(
    tmp_path_factory: pytest.TempPathFactory, codec_url: str, ui_port: int, aws: AwsConfig
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("codec-stack")
    process, port, ui_port = start_temporal(
        data, port=None, ui_port=ui_port, extra_args=["--ui-codec-endpoint", codec_url]
    )
    moto_port = int(str(aws.endpoint_url).rsplit(":", 1)[1])
    yield Stack(port, ui_port, moto_port, data)
    stop_process(process)


@pytest.fixture(scope="module")
async def codec_la(
    codec_stack: Stack, codec: CountingCodec, aws: AwsConfig, test_transfer: TransferConfig
) -> AsyncIterator[LargeAttrClient]:
    address = f"127.0.0.1:{codec_stack.temporal_port}"
    await connect_when_serving(address)
    temporal = await Client.connect(address, data_converter=data_converter(codec=codec))
    async with client_with_worker(temporal, aws, test_transfer, "ui-codec", sandboxed=False) as la:
        yield la


async def test_the_web_ui_shows_decoded_input_through_the_codec_server(
    browser: Browser,
    codec_stack: Stack,
    codec_la: LargeAttrClient,
    codec: CountingCodec,
    dynamodb: Any,
) -> None:
    name = f"t-uicodec-{uuid.uuid4().hex[:8]}"
    table = LargeAttrTable(
        table_name=name,
        partition_key="pk",
        large_attributes=("html",),
        bucket=BUCKET,
        prefix=f"p/{name}",
    )
    ensure_table(dynamodb, table)
    handle = await codec_la.start_create(
        table, "doc", blobs={"html": b"<p>hidden</p>"}, attributes={"note": ATTR_MARK}
    )
    await codec_la.result(handle)
    last = (await handle.fetch_history()).events[-1].event_id
    url = codec_stack.workflow_url(handle.id, handle.result_run_id or "")
    opened_before = codec.opened
    read = await asyncio.to_thread(
        browser.run,
        [
            {"goto": url},
            {"wait": f'{EVENT_ROW}[data-eventid="{last}"]'},
            {"wait": "body", "text": ATTR_MARK},
            {"read": "body", "as": "page"},
            {"screenshot": "codec-decoded-input"},
        ],
    )
    assert ATTR_MARK in text(read, "page")
    assert codec.opened > opened_before, "the page never asked the codec server"
