"""The real stack for the tests: Temporal dev server and moto server, each its own process.

Both start once per session on free ports on 127.0.0.1. A worker runs in this process on
a private task queue; its boto3 clients carry a ``Faults`` object so a test can make an
AWS call fail, fail after committing, or stall.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from temporalio.client import Client

from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
from largeattr.activities import SagaActivities
from largeattr.devstack import (
    EMULATOR_AWS,
    EMULATOR_REGION,
    Stack,
    connect_when_serving,
    start_moto,
    start_temporal,
    stop_process,
)
from largeattr.messages import BlobInput, CreateItemInput
from largeattr.provision import ensure_bucket, ensure_table
from largeattr.sources import SourceRegistry
from largeattr.transfer import MiB, TransferConfig
from largeattr.worker import build_worker
from tests.faults import Faults
from tests.ui.browser import ARTIFACTS, Browser, unavailable

BUCKET = "largeattr-tests"


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def temporal_ports(stack_dir: Path) -> Iterator[tuple[int, int]]:
    """The dev server's frontend and Web UI ports. Its Web UI (tests/test_web_ui.py) costs
    the session nothing measurable: same start time, idle CPU and memory as --headless."""
    process, port, ui_port = start_temporal(stack_dir / "temporal", port=None, ui_port=None)
    yield port, ui_port
    stop_process(process)


@pytest.fixture(scope="session")
def temporal_address(temporal_ports: tuple[int, int]) -> str:
    return f"127.0.0.1:{temporal_ports[0]}"


@pytest.fixture(scope="session")
def web_ui(temporal_ports: tuple[int, int], aws: AwsConfig, stack_dir: Path) -> Stack:
    """The session's servers as the demo sees them, for their Web UI links."""
    port = urlsplit(str(aws.endpoint_url)).port
    assert port is not None
    return Stack(temporal_ports[0], temporal_ports[1], port, stack_dir)


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Headless Chromium for the Web UI tests, installed by .ci/install-browser (run here
    when missing and this machine can install it); skips, saying why, where it cannot."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # the folder shows this run's pages only
    return Browser(ARTIFACTS)


@pytest.fixture(scope="session")
def aws(stack_dir: Path) -> Iterator[AwsConfig]:
    process, port = start_moto(port=None, log=stack_dir / "moto.log")
    yield AwsConfig(
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=EMULATOR_REGION,
        aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
        aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
    )
    stop_process(process)


@pytest.fixture(scope="session")
def aws_clients(aws: AwsConfig) -> tuple[Any, Any]:
    """Clients for the tests' own checks: no faults on them."""
    s3, dynamodb = aws.clients()
    ensure_bucket(s3, BUCKET)
    return s3, dynamodb


@pytest.fixture(scope="session")
def s3(aws_clients: tuple[Any, Any]) -> Any:
    return aws_clients[0]


@pytest.fixture(scope="session")
def dynamodb(aws_clients: tuple[Any, Any]) -> Any:
    return aws_clients[1]


@pytest.fixture(scope="session")
def worker_faults() -> Faults:
    return Faults()


@pytest.fixture(scope="session")
def allowed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="session")
def test_transfer() -> TransferConfig:
    """Small parts, so multipart paths run on blobs of a few MB."""
    return TransferConfig(
        multipart_threshold=6 * MiB,
        part_size=5 * MiB,
        max_concurrency=3,
        copy_threshold=10 * MiB,  # the 12 MiB stream test then runs a multipart copy
        copy_part_size=5 * MiB,
    )


@pytest.fixture(scope="session")
async def temporal(temporal_address: str) -> Client:
    client: Client = await connect_when_serving(temporal_address)
    return client


@pytest.fixture(scope="session")
async def task_queue(
    temporal: Client,
    aws: AwsConfig,
    worker_faults: Faults,
    allowed_dir: Path,
    test_transfer: TransferConfig,
) -> AsyncIterator[str]:
    """A worker in this process, on its own task queue, with fault hooks on its clients."""
    queue = f"tests-{uuid.uuid4().hex[:8]}"
    s3, dynamodb = aws.clients()
    worker_faults.attach(s3, dynamodb)
    activities = SagaActivities(s3, dynamodb, test_transfer, SourceRegistry([allowed_dir]))
    # Sandboxed: the tests run every saga under the SDK's determinism checks, which the
    # production default leaves out for speed (largeattr.worker.build_worker).
    worker, executor = build_worker(
        temporal, task_queue=queue, activities=activities, shutdown_grace=2.0, sandboxed=True
    )
    async with worker:
        yield queue
    executor.shutdown(wait=False)


@pytest.fixture
def faults(worker_faults: Faults) -> Iterator[Faults]:
    worker_faults.clear()
    yield worker_faults
    worker_faults.clear()


@pytest.fixture
def new_table(dynamodb: Any) -> Any:
    """A factory of fresh tables (own name and prefix) in the shared bucket."""

    def make(
        sort_key: str | None = None,
        partition_key_type: str = "S",
        sort_key_type: str = "S",
        large: tuple[str, ...] = ("html", "image"),
        **kwargs: Any,
    ) -> LargeAttrTable:
        name = f"t-{uuid.uuid4().hex[:10]}"
        table = LargeAttrTable(
            table_name=name,
            partition_key="pk",
            sort_key=sort_key,
            large_attributes=large,
            bucket=BUCKET,
            prefix=f"p/{name}",
            **kwargs,
        )
        ensure_table(dynamodb, table, partition_key_type, sort_key_type)
        return table

    return make


@pytest.fixture
def table(new_table: Any) -> LargeAttrTable:
    return new_table()  # type: ignore[no-any-return]


@pytest.fixture
async def la(
    temporal: Client, task_queue: str, aws: AwsConfig, test_transfer: TransferConfig
) -> AsyncIterator[LargeAttrClient]:
    client = LargeAttrClient(temporal, task_queue=task_queue, aws=aws, transfer=test_transfer)
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def client_with_worker(
    temporal: Client,
    aws: AwsConfig,
    transfer: TransferConfig,
    name: str,
    *,
    activities: SagaActivities | None = None,
    sandboxed: bool = True,
) -> AsyncIterator[LargeAttrClient]:
    """A client and a worker in this process on a fresh task queue (``name``-...), both on
    ``temporal`` (its codec, interceptors or metrics runtime); the worker's activities are
    ``activities`` (e.g. with fault hooks) or plain ones on ``aws``."""
    queue = f"{name}-{uuid.uuid4().hex[:8]}"
    worker, executor = build_worker(
        temporal,
        task_queue=queue,
        aws=aws,
        activities=activities,
        shutdown_grace=2.0,
        sandboxed=sandboxed,
    )
    async with (
        worker,
        LargeAttrClient(temporal, task_queue=queue, aws=aws, transfer=transfer) as la,
    ):
        yield la
    executor.shutdown(wait=False)


def largeattr_toml(
    table: LargeAttrTable,
    address: str,
    task_queue: str,
    endpoint: str,
    ui_url: str | None = None,
) -> str:
    """A largeattr.toml pointing at the test stack that declares ``table`` as ``docs``."""
    ui = f'ui_url = "{ui_url}"\n' if ui_url else ""
    return (
        f'[temporal]\naddress = "{address}"\ntask_queue = "{task_queue}"\n{ui}\n'
        f'[aws]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n\n'
        f'[tables.docs]\ntable_name = "{table.table_name}"\n'
        f'partition_key = "{table.partition_key}"\nbucket = "{table.bucket}"\n'
        f'prefix = "{table.prefix}"\nlarge = {json.dumps(list(table.large_attributes))}\n'
    )


def create_from_file(table: LargeAttrTable, key: str, path: Path) -> CreateItemInput:
    """A create whose `html` blob the worker uploads from ``path`` (a ``file:`` source under
    its allowed directory), started with a plain Temporal client."""
    blob = BlobInput(attribute="html", source=f"file:{path}", size=path.stat().st_size)
    return CreateItemInput(table=table.spec, key=table.key(key), blobs=(blob,))


def steps(history: Any) -> list[tuple[str, str, int]]:
    """A saga's steps as its history records them: (activity type, summary, attempt) of each
    regular activity (its start event) and each local activity (its marker)."""
    found = []
    scheduled: dict[int, tuple[str, str]] = {}
    for event in history.events:
        summary = (
            event.user_metadata.summary.data.decode() if event.HasField("user_metadata") else ""
        )
        summary = json.loads(summary) if summary else ""
        if event.HasField("activity_task_scheduled_event_attributes"):
            kind = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (kind, summary)
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            found.append((*scheduled[started.scheduled_event_id], started.attempt))
        elif event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if "data" in marker.details:
                data = json.loads(marker.details["data"].payloads[0].data)
                found.append((data["activity_type"], summary, int(data["attempt"])))
    return found


def object_keys(s3: Any, table: LargeAttrTable) -> set[str]:
    """Every object under the table's prefix."""
    found: set[str] = set()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=table.bucket, Prefix=f"{table.prefix}/"):
        found.update(obj["Key"] for obj in page.get("Contents", []))
    return found


def open_uploads(s3: Any, table: LargeAttrTable) -> list[str]:
    uploads = s3.list_multipart_uploads(Bucket=table.bucket, Prefix=f"{table.prefix}/")
    return [u["Key"] for u in uploads.get("Uploads", [])]


def raw_item(dynamodb: Any, table: LargeAttrTable, key: dict[str, Any]) -> dict[str, Any] | None:
    from largeattr import dynamo

    response = dynamodb.get_item(
        TableName=table.table_name, Key=dynamo.item_to_low_level(key), ConsistentRead=True
    )
    item = response.get("Item")
    return dict(item) if item else None


@contextlib.contextmanager
def no_change(s3: Any, dynamodb: Any, table: LargeAttrTable, key: dict[str, Any]) -> Iterator[None]:
    """Assert that the block leaves the item and the table's objects exactly as they were."""
    objects, item = object_keys(s3, table), raw_item(dynamodb, table, key)
    yield
    assert raw_item(dynamodb, table, key) == item, "the item changed"
    assert object_keys(s3, table) == objects, "objects were left behind or removed"
    assert open_uploads(s3, table) == [], "a multipart upload was left open"
