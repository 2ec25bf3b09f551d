"""What travels through Temporal stays within its payload limits (no servers needed)."""

from __future__ import annotations

import os

import pytest
from temporalio.converter import DataConverter

from largeattr import LargeAttrTable, TransferConfig
from largeattr.messages import BlobInput, CreateItemInput

pytestmark = pytest.mark.unit

#: Temporal server's default payload warning (dynamic config limit.blobSize.warn).
PAYLOAD_WARNING = 512 * 1024


def test_inline_blobs_at_the_limit_fit_under_the_payload_warning() -> None:
    config = TransferConfig()
    table = LargeAttrTable(
        table_name="documents",
        partition_key="pk",
        large_attributes=("html", "image"),
        bucket="my-bucket",
        prefix="documents",
    )
    first = config.inline_threshold
    second = config.inline_total - first
    request = CreateItemInput(
        table=table.spec,
        key=table.key("id-1"),
        blobs=(
            BlobInput.inline("html", os.urandom(first), "text/html"),
            BlobInput.inline("image", os.urandom(second), "image/png"),
        ),
        attributes=table.attributes({"title": "t" * 1000}, "create"),
    )
    payload = DataConverter.default.payload_converter.to_payloads([request])[0]
    assert payload.ByteSize() < PAYLOAD_WARNING
