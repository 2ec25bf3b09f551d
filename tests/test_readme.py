"""The README's client example runs as written (against the test stack)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.provision import ensure_bucket, ensure_table

ROOT = Path(__file__).resolve().parent.parent
CONNECT = 'await LargeAttrClient.connect("127.0.0.1:7233", task_queue="largeattr")'


def client_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using it from your code", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


async def test_readme_client_example_runs(
    temporal: Any,
    task_queue: str,
    aws: AwsConfig,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = client_example()
    assert CONNECT in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.png").write_bytes(b"\x89PNG not really a cat" * 1000)
    scope: dict[str, Any] = {}
    header, body = code.split("async with", 1)
    exec(header, scope)
    docs: LargeAttrTable = scope["docs"]
    ensure_bucket(s3, docs.bucket)
    ensure_table(dynamodb, docs)

    async def connect() -> LargeAttrClient:
        return LargeAttrClient(temporal, task_queue=task_queue, aws=aws)

    scope["connect"] = connect
    run = "async def example():\n" + textwrap.indent(
        "async with" + body.replace(CONNECT, "await connect()") + "return locals()\n", "    "
    )
    exec(run, scope)
    names = await scope["example"]()
    assert names["html"] == b"<b>Hello again</b>"
    assert names["updated"].version == 2
    assert names["result"].version == 1
    assert (tmp_path / "page.html").read_bytes() == b"<b>Hello again</b>"
    assert names["url"].startswith("http://127.0.0.1")
    item = await LargeAttrClient(temporal, task_queue=task_queue, aws=aws).get(docs, "id-1")
    assert item is None
