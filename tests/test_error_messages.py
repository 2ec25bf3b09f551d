"""Errors a user meets when something is wrong outside largeattr: each is typed, names
what it is about, and says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from largeattr import AccessDenied, AwsConfig, DanglingReference, LargeAttrClient, Storage
from largeattr.table import LargeAttrTable


async def test_a_missing_object_raises_dangling_reference(
    la: LargeAttrClient, table: LargeAttrTable, s3: Any, tmp_path: Path
) -> None:
    await la.create(table, "id-1", blobs={"html": b"<b>soon gone</b>"})
    item = await la.get(table, "id-1")
    assert item is not None
    ref = item.blob("html")
    s3.delete_object(Bucket=table.bucket, Key=ref.key)  # behind largeattr's back

    def explains(err: DanglingReference) -> None:
        text = str(err)
        assert "pk=id-1" in text
        assert "'html'" in text
        assert ref.uri in text
        assert "largeattr check" in text
        assert err.details == {"item": "pk=id-1", "attribute": "html", "uri": ref.uri}

    with pytest.raises(DanglingReference) as read:
        await la.read_blob(ref)
    explains(read.value)
    with pytest.raises(DanglingReference) as streamed:
        async for _ in la.iter_blob(ref, byte_range=(0, 3)):
            pass
    explains(streamed.value)
    target = tmp_path / "page.html"
    with pytest.raises(DanglingReference) as downloaded:
        await la.download(ref, target)
    explains(downloaded.value)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file


def test_access_denied_on_an_s3_delete_names_no_empty_table(aws: AwsConfig, dynamodb: Any) -> None:
    s3, _ = aws.clients()
    with Stubber(s3) as stub:
        stub.add_client_error(
            "delete_objects",
            service_error_code="AccessDenied",
            service_message="Access Denied",
            http_status_code=403,
        )
        with pytest.raises(AccessDenied) as denied:
            Storage(s3, dynamodb).cleanup.delete_objects("some-bucket", ["docs/t=x/old"])
    text = str(denied.value)
    assert "table" not in text
    assert "bucket 'some-bucket'" in text
