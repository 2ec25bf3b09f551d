#!/usr/bin/env python
"""Issue 4: one large attribute through largeattr vs. boto3 ``upload_file``, on the embedded stack.

    .venv/bin/python benchmarks/blob_bench.py                 # 1 GiB
    .venv/bin/python benchmarks/blob_bench.py --size 2GiB --read

One run starts its own stack (the Temporal dev server and a moto server on 127.0.0.1),
creates the bucket and the table, starts ``worker.py`` as a separate process, then times, in
this order (so that neither side always runs on a warmer or colder machine):

1. boto3 ``upload_file`` (default TransferConfig), in a process of its own;
2. ``LargeAttrClient.create`` of an item whose large attribute is the same file, in a client
   process of its own (the client hashes the file and uploads it from its own task queue);
3. boto3 ``upload_file`` again; with ``--rounds N``, steps 2 and 3 are repeated N times.

With ``--read`` each of them also reads the object back: ``la.download`` (one streamed GET,
SHA-256 verified) and boto3 ``download_file`` limited to one GET (moto copies the whole
object for every GET, so ranged parallel GETs are no fair baseline there). Times are wall
times of the operation alone (process start, imports, connections and a small warm-up call
are outside them). Peak RSS is the kernel's high-water mark (``VmHWM``) of each process,
reset before every phase, with a 50 ms psutil poll as a cross-check; CPU seconds of every
process (moto included: the machine's cores are shared by moto, Temporal, the worker and the
client) are taken per phase.

The output ends with one line:
``RESULT blob_ratio=<largeattr/boto3> peak_rss_mb=<max client/worker> history_kb=<size>``
where both times are means over their runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
GiB = 1024 * MiB
MB = 1000 * 1000  # RSS is reported in MB (10^6 bytes), the unit of the 200 MB bound
BUCKET = "largeattr-bench"
TABLE = "largeattr-bench"
PREFIX = "bench"
ATTRIBUTE = "data"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
         "mib": MiB, "g": 1000**3, "gb": 1000**3, "gib": GiB}  # fmt: skip


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256MiB, 1GiB, 1073741824)")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


# ====================================================================== child processes
#
# Every child talks to the parent on stdout/stdin: "READY <phase>" then it waits for one
# line on stdin (the parent resets the RSS high-water marks meanwhile), runs the phase, and
# prints "DONE <phase> <json>". Logs go to stderr.


def _ready(phase: str) -> None:
    _hwm(f"before {phase}")
    print(f"READY {phase}", flush=True)
    sys.stdin.readline()


def _hwm(where: str) -> None:
    """Log this process's RSS high-water mark so far (stderr)."""
    status = Path("/proc/self/status").read_text()
    hwm = re.search(r"VmHWM:\s+(\d+)", status)
    rss = re.search(r"VmRSS:\s+(\d+)", status)
    if hwm and rss:
        print(
            f"[rss] {where}: VmHWM {int(hwm[1]) // 1024} MiB, VmRSS {int(rss[1]) // 1024} MiB",
            file=sys.stderr,
            flush=True,
        )


def _done(phase: str, **result: Any) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Not used for the peaks: after vfork + exec it may include the parent's RSS.
    result["ru_maxrss_mb"] = usage.ru_maxrss * 1024 / MB
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(f"DONE {phase} {json.dumps(result)}", flush=True)


class S3Trace:
    """Per-operation timings of a boto3 client's calls (botocore event hooks)."""

    def __init__(self, client: Any) -> None:
        self.lock = threading.Lock()
        self.origin = time.perf_counter()
        self.ops: dict[str, list[float]] = {}  # name -> [count, busy s, first start, last end]
        events = client.meta.events
        events.register("before-call.s3.*", self._before)
        events.register("after-call.s3.*", self._after)

    def reset(self) -> None:
        with self.lock:
            self.origin = time.perf_counter()
            self.ops.clear()

    def _before(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        context["bench_start"] = time.perf_counter()

    def _after(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        end = time.perf_counter()
        start = context.get("bench_start", end)
        with self.lock:
            op = self.ops.setdefault(model.name, [0, 0.0, start - self.origin, 0.0])
            op[0] += 1
            op[1] += end - start
            op[2] = min(op[2], start - self.origin)
            op[3] = max(op[3], end - self.origin)

    def summary(self) -> dict[str, list[float]]:
        with self.lock:
            return {name: list(values) for name, values in self.ops.items()}


def child_boto3(args: argparse.Namespace) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    config = TransferConfig()  # the default: 8 MiB parts, 10 threads, 8 MiB threshold
    s3.put_object(Bucket=args.bucket, Key=f"{args.key}.warmup", Body=b"x" * 1024)  # warm-up
    trace = S3Trace(s3)
    _ready("upload")
    trace.reset()
    start = time.perf_counter()
    extra: dict[str, str] = {}
    if args.full_object:
        # Like-for-like: the whole-object CRC32 that largeattr makes S3 verify (computing it
        # is part of the timed work, as largeattr's hash pass is).
        crc = 0
        with open(args.file, "rb") as source:
            while chunk := source.read(4 * MiB):
                crc = zlib.crc32(chunk, crc)
        extra["ChecksumCRC32"] = base64.b64encode(crc.to_bytes(4, "big")).decode()
    s3.upload_file(args.file, args.bucket, args.key, Config=config, ExtraArgs=extra)
    _done(
        "upload",
        seconds=time.perf_counter() - start,
        s3_ops=trace.summary(),
        part_size=config.multipart_chunksize,
        concurrency=config.max_request_concurrency,
    )
    if args.read:
        # One GET stream, like la.download: moto reads the whole object into memory for
        # every GET, ranged or not, so download_file's parallel ranged GETs would cost it
        # (object size x parts) of copying.
        single = TransferConfig(multipart_threshold=args.size + 1)
        target = Path(args.out)
        _ready("read")
        trace.reset()
        start = time.perf_counter()
        s3.download_file(args.bucket, args.key, str(target), Config=single)
        _done(
            "read",
            seconds=time.perf_counter() - start,
            bytes=target.stat().st_size,
            s3_ops=trace.summary(),
        )
        target.unlink()


async def child_client(args: argparse.Namespace) -> None:
    import largeattr
    from largeattr import LargeAttrClient, LargeAttrTable
    from largeattr.config import AwsConfig
    from largeattr.transfer import TransferConfig

    print(f"largeattr from {Path(largeattr.__file__).parent}", file=sys.stderr, flush=True)
    _hwm("imported")
    table = LargeAttrTable(
        table_name=args.table,
        partition_key="pk",
        large_attributes=(ATTRIBUTE,),
        bucket=args.bucket,
        prefix=PREFIX,
    )
    aws = AwsConfig(
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    transfer = TransferConfig()
    overrides: dict[str, Any] = {}
    if args.part_size_mib:
        overrides["part_size"] = args.part_size_mib * MiB
    if args.concurrency:
        overrides["max_concurrency"] = args.concurrency
    if args.composite:
        overrides["multipart_checksum"] = "COMPOSITE"
    if overrides:
        transfer = TransferConfig(**overrides)
    async with await LargeAttrClient.connect(
        args.address, task_queue=args.task_queue, aws=aws, transfer=transfer
    ) as la:
        _hwm("connected")
        # Warm-up: a 1 MiB blob also goes through this process's blob task queue, so the
        # lazily started blob worker and the first workflow tasks are outside the timing.
        start = time.perf_counter()
        await la.create(table, f"{args.key}-warmup", blobs={ATTRIBUTE: os.urandom(MiB)})
        warmup = time.perf_counter() - start
        _hwm("warm-up done")
        trace = S3Trace(la.storage.s3)
        _ready("upload")
        trace.reset()
        start = time.perf_counter()
        if args.via_worker:
            # The worker reads the file itself (a ``file:`` source, worker.py --allow-files).
            from largeattr.messages import BlobInput, CreateItemInput
            from largeattr.workflows import CreateItemWorkflow

            request = CreateItemInput(
                table=table.spec,
                key=table.key(args.key),
                blobs=(BlobInput(attribute=ATTRIBUTE, source=f"file:{args.file}", size=args.size),),
            )
            handle = await la.temporal.start_workflow(
                CreateItemWorkflow.run,
                request,
                id=table.workflow_id(args.key),
                task_queue=args.task_queue,
            )
        else:
            handle = await la.start_create(table, args.key, blobs={ATTRIBUTE: Path(args.file)})
        result = await la.result(handle)
        seconds = time.perf_counter() - start
        blob = result.blobs[0]
        _done(
            "upload",
            seconds=seconds,
            warmup_s=warmup,
            workflow_id=handle.id,
            run_id=handle.result_run_id or handle.run_id,
            uri=blob.uri,
            size=blob.meta.size,
            sha256=blob.meta.sha256,
            part_size=transfer.part_size_for(blob.meta.size),
            concurrency=transfer.max_concurrency,
            s3_ops=trace.summary(),
        )
        if args.read:
            _ready("read")
            trace.reset()
            start = time.perf_counter()
            item = await la.get(table, args.key)
            assert item is not None
            written = await la.download(item.blob(ATTRIBUTE), args.out)
            _done(
                "read", seconds=time.perf_counter() - start, bytes=written, s3_ops=trace.summary()
            )
            Path(args.out).unlink()


# ====================================================================== measuring


class Proc:
    """A process we measure: RSS high-water mark per phase, CPU seconds, polled RSS."""

    def __init__(self, name: str, pid: int) -> None:
        import psutil

        self.name = name
        self.pid = pid
        self.ps = psutil.Process(pid)
        self.lifetime_hwm_kb = 0
        self.poll_peak = 0
        self._cpu0 = 0.0

    def hwm_kb(self) -> int:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    value = int(line.split()[1])
                    self.lifetime_hwm_kb = max(self.lifetime_hwm_kb, value)
                    return value
        return 0

    def start_phase(self) -> None:
        self.hwm_kb()  # keep the lifetime peak before resetting it
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM to VmRSS
        self.poll_peak = 0
        self._cpu0 = self.cpu()

    def cpu(self) -> float:
        try:
            times = self.ps.cpu_times()
            return times.user + times.system
        except Exception:
            return 0.0

    def poll(self) -> None:
        with contextlib.suppress(Exception):
            self.poll_peak = max(self.poll_peak, self.ps.memory_info().rss)

    def end_phase(self) -> dict[str, float]:
        return {
            "peak_mb": self.hwm_kb() * 1024 / MB,
            "poll_mb": self.poll_peak / MB,
            "cpu_s": self.cpu() - self._cpu0,
        }


class Poller(threading.Thread):
    """Polls the RSS of every measured process every 50 ms."""

    def __init__(self, procs: list[Proc]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for proc in list(self.procs):
                proc.poll()


def run_phases(
    command: list[str],
    name: str,
    others: list[Proc],
    poller: Poller,
    env: dict[str, str],
    log: Path,
    phases: list[str],
    profile: list[tuple[str, Path]] = (),  # type: ignore[assignment]
) -> dict[str, dict[str, Any]]:
    """Run one child through its phases; measure it and ``others`` during each phase."""
    with open(log, "ab") as err:
        child = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=ROOT,
        )
    me = Proc(name, child.pid)
    poller.procs.append(me)
    results: dict[str, dict[str, Any]] = {}
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        for phase in phases:
            line = _expect(child, "READY", phase, log)
            for proc in [me, *others]:
                proc.start_phase()
            spies = [
                _spy({p.name: p for p in [me, *others]}[target].pid, Path(f"{out}-{phase}"))
                for target, out in profile
            ]
            wall = time.perf_counter()
            child.stdin.write("go\n")
            child.stdin.flush()
            line = _expect(child, "DONE", phase, log)
            wall = time.perf_counter() - wall
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait(timeout=60)
            data = json.loads(line.split(" ", 2)[2])
            data["wall_s"] = wall
            data["procs"] = {proc.name: proc.end_phase() for proc in [me, *others]}
            data["lifetime_mb"] = me.lifetime_hwm_kb * 1024 / MB  # start-up and warm-up included
            results[phase] = data
        child.stdin.close()
        rc = child.wait(timeout=120)
        if rc not in (0, -11, 139):  # sdk-python issue 300: a crash at exit after the work
            raise RuntimeError(f"{name} exited with {rc}; see {log}")
    finally:
        poller.procs.remove(me)
        if child.poll() is None:
            child.kill()
            child.wait()
    return results


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy attached to a process, stopped with SIGINT (it then writes its output)."""
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "--pid", str(pid), "--threads", "--rate", "100"]
    command += ["--format", "raw", "--output", f"{out}.txt"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return process


def _expect(child: subprocess.Popen[str], word: str, phase: str, log: Path) -> str:
    assert child.stdout is not None
    while True:
        line = child.stdout.readline()
        if not line:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"child exited before {word} {phase}; log tail:\n{tail}")
        line = line.strip()
        if line.startswith(f"{word} {phase}"):
            return line


async def history_of(address: str, workflow_id: str, run_id: str) -> dict[str, Any]:
    """Size of a saga's event history, and where its time went (from event timestamps)."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import History
    from temporalio.client import Client

    client = await Client.connect(address)
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    events = list(history.events)
    serialized = History(events=events).ByteSize()
    biggest = max(events, key=lambda e: e.ByteSize())
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    steps: list[tuple[str, float, float]] = []  # (activity, queue wait, run time)
    t0 = events[0].event_time.ToDatetime().timestamp()
    for event in events:
        when = event.event_time.ToDatetime().timestamp()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, when)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = when
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            activity, at = scheduled[sid]
            begun = started.get(sid, at)
            steps.append((activity.removeprefix("largeattr."), begun - at, when - begun))
    total = events[-1].event_time.ToDatetime().timestamp() - t0
    return {
        "bytes": serialized,
        "events": len(events),
        "biggest_event": (EventType.Name(biggest.event_type), biggest.ByteSize()),
        "steps": steps,
        "workflow_s": total,
    }


# ====================================================================== the benchmark


def make_file(path: Path, size: int) -> None:
    """Random (incompressible) bytes; a 64 MiB random block repeated keeps this fast."""
    block = os.urandom(min(size, 64 * MiB))
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            # Vary every block so no two parts are equal.
            out.write(left.to_bytes(8, "big") + chunk[8:] if len(chunk) > 8 else chunk)
            left -= len(chunk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="largeattr vs boto3 upload_file (issue 4)")
    parser.add_argument("--size", type=parse_size, default=GiB, help="blob size (default 1GiB)")
    parser.add_argument("--read", action="store_true", help="also time reading it back")
    parser.add_argument("--keep-dir", help="work here and keep it (default: a temp dir, removed)")
    parser.add_argument("--part-size-mib", type=int, default=0, help="client TransferConfig")
    parser.add_argument("--concurrency", type=int, default=0, help="client TransferConfig")
    parser.add_argument("--worker-args", default="", help="extra worker.py arguments")
    parser.add_argument(
        "--via-worker",
        action="store_true",
        help="let the worker upload the file (a file: source; worker.py --allow-files) "
        "instead of the client process",
    )
    parser.add_argument(
        "--like-for-like",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time boto3 upload_file with a whole-object CRC32, the S3-verified "
        "checksum largeattr uses (informational; not in the RESULT ratio)",
    )
    parser.add_argument(
        "--composite",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time largeattr with TransferConfig(multipart_checksum='COMPOSITE'), the "
        "checksum upload_file uses by default (informational; not in the RESULT ratio)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="largeattr runs, each followed by a boto3 run (default 1: boto3, largeattr, boto3)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=["client", "worker", "moto"],
        help="record py-spy profiles (collapsed stacks, .txt) of this process during the "
        "largeattr phases; repeatable",
    )
    args = parser.parse_args(argv)

    import boto3
    import psutil
    from botocore.config import Config

    from largeattr.devstack import start_moto, start_temporal, stop_process
    from largeattr.provision import ensure_bucket, ensure_table
    from largeattr.table import LargeAttrTable

    work = Path(args.keep_dir or tempfile.mkdtemp(prefix="largeattr-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    # The source file, a read-back copy, and moto's temp files for the parts and the object.
    if free < args.size * 5:
        print(f"only {free / GiB:.1f} GiB free in {work}; need about {5 * args.size / GiB:.1f}")
        return 2
    source = work / f"blob-{args.size}.bin"
    if not source.exists() or source.stat().st_size != args.size:
        print(f"writing {args.size / MiB:.0f} MiB of random bytes to {source}", flush=True)
        make_file(source, args.size)
    # Read it once so both sides start from the page cache.
    with open(source, "rb") as f:
        while f.read(64 * MiB):
            pass

    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, **AWS_ENV, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    try:
        temporal, tport, _ = start_temporal(work / "temporal", port=None, ui=False)
        processes.append(temporal)
        moto, mport = start_moto(port=None, log=work / "moto.log")
        processes.append(moto)
        address, endpoint = f"127.0.0.1:{tport}", f"http://127.0.0.1:{mport}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        table = LargeAttrTable(
            table_name=TABLE,
            partition_key="pk",
            large_attributes=(ATTRIBUTE,),
            bucket=BUCKET,
            prefix=PREFIX,
        )
        ensure_bucket(s3, BUCKET)
        ensure_table(dynamodb, table)
        task_queue = f"bench-{os.getpid()}"
        worker_log = work / "worker.log"
        worker = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "worker.py"),
                "--address",
                address,
                "--aws-endpoint-url",
                endpoint,
                "--task-queue",
                task_queue,
                *(["--allow-files", str(work)] if args.via_worker else []),
                *args.worker_args.split(),
            ],
            stdout=open(worker_log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        processes.append(worker)
        deadline = time.monotonic() + 60
        while "worker polling" not in worker_log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {worker_log}")
            time.sleep(0.2)

        others = [
            Proc("worker", worker.pid),
            Proc("moto", moto.pid),
            Proc("temporal", temporal.pid),
        ]
        poller = Poller(list(others))
        poller.start()
        phases = ["upload", "read"] if args.read else ["upload"]
        me = [sys.executable, str(Path(__file__).resolve())]
        common = ["--endpoint", endpoint, "--bucket", BUCKET, "--file", str(source)]
        common += ["--size", str(args.size)]
        common += ["--read"] if args.read else []
        runs: list[tuple[str, dict[str, dict[str, Any]]]] = []

        def boto3_run(n: int, full_object: bool = False) -> None:
            key = f"boto3/run-{n}{'-full' if full_object else ''}"
            result = run_phases(
                [
                    *me,
                    "_boto3",
                    *common,
                    "--key",
                    key,
                    "--out",
                    str(work / "boto3.out"),
                    *(["--full-object"] if full_object else []),
                ],
                "boto3",
                others,
                poller,
                env,
                work / f"boto3-{n}.log",
                ["upload"] if full_object else phases,
            )
            runs.append((f"{'fullcrc' if full_object else 'boto3'} #{n}", result))
            s3.delete_object(Bucket=BUCKET, Key=key)
            s3.delete_object(Bucket=BUCKET, Key=f"{key}.warmup")

        def largeattr_run(n: int, composite: bool = False) -> None:
            command = [
                *me, "_client", *common,
                "--address", address,
                "--task-queue", task_queue,
                "--table", TABLE,
                "--key", f"item-{'c' if composite else ''}{n}",
                "--out", str(work / "largeattr.out"),
                "--part-size-mib", str(args.part_size_mib),
                "--concurrency", str(args.concurrency),
                *(["--via-worker"] if args.via_worker else []),
                *(["--composite"] if composite else []),
            ]  # fmt: skip
            result = run_phases(
                command,
                "client",
                others,
                poller,
                env,
                work / f"client-{n}.log",
                phases,
                profile=[(p, work / f"{p}-{n}") for p in args.profile],
            )
            runs.append((f"{'composite' if composite else 'largeattr'} #{n}", result))
            for key in list_keys(s3):
                s3.delete_object(Bucket=BUCKET, Key=key)

        print(
            f"size {args.size / MiB:.0f} MiB; Temporal {address}, moto {endpoint}; "
            f"{psutil.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        # boto3, then (largeattr, boto3) per round: every largeattr run has a boto3 run
        # just before and just after it.
        boto3_run(1)
        histories = []
        for n in range(1, args.rounds + 1):
            largeattr_run(n)
            upload = runs[-1][1]["upload"]
            histories.append(
                asyncio.run(history_of(address, upload["workflow_id"], upload["run_id"]))
            )
            boto3_run(n + 1)
        if args.like_for_like:
            for n in range(1, args.rounds + 1):
                boto3_run(n, full_object=True)
        if args.composite:
            for n in range(1, args.rounds + 1):
                largeattr_run(n, composite=True)
        poller.stop.set()
        report(args, runs, histories, others)
    finally:
        for process in reversed(processes):
            stop_process(process)
        if not args.keep_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def list_keys(s3: Any) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/"):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def report(
    args: argparse.Namespace,
    runs: list[tuple[str, dict[str, dict[str, Any]]]],
    histories: list[dict[str, Any]],
    others: list[Proc],
) -> None:
    size_mib = args.size / MiB
    print()
    header = (
        f"{'run':<14}{'phase':<8}{'seconds':>8}{'MiB/s':>7}  "
        f"{'peak RSS MB (VmHWM; 50 ms poll)':<44}{'CPU s':<40}"
    )
    print(header)
    print("-" * len(header))
    for name, phases in runs:
        for phase, data in phases.items():
            procs = data["procs"]
            own = "client" if name.startswith(("largeattr", "composite")) else "boto3"
            rss = "  ".join(
                f"{p}={v['peak_mb']:.0f}({v['poll_mb']:.0f})"
                for p, v in procs.items()
                if p in (own, "worker", "moto")
            )
            cpu = "  ".join(f"{p}={v['cpu_s']:.1f}" for p, v in procs.items())
            speed = size_mib / data["seconds"]
            print(f"{name:<14}{phase:<8}{data['seconds']:>8.2f}{speed:>7.0f}  {rss:<44}{cpu}")
    print()
    print("S3 calls: operation, count, busy seconds summed over threads, [first start-last end]")
    for name, phases in runs:
        for phase, data in phases.items():
            ops = "; ".join(
                f"{op} {int(c)}x {busy:.2f}s [{first:.2f}-{last:.2f}]"
                for op, (c, busy, first, last) in sorted(
                    data.get("s3_ops", {}).items(), key=lambda kv: kv[1][2]
                )
            )
            print(f"  {name} {phase}: {ops}")
    boto_up = [p["upload"]["seconds"] for n, p in runs if n.startswith("boto3")]
    la_up = [p["upload"]["seconds"] for n, p in runs if n.startswith("largeattr")]
    boto_mean = sum(boto_up) / len(boto_up)
    la_mean = sum(la_up) / len(la_up)
    ratio = la_mean / boto_mean
    full = [p["upload"]["seconds"] for n, p in runs if n.startswith("fullcrc")]
    pairs = [la / ((boto_up[i] + boto_up[i + 1]) / 2) for i, la in enumerate(la_up)]
    print()
    print(
        "per round, largeattr / mean of the boto3 runs around it: "
        + ", ".join(f"{r:.3f}" for r in pairs)
    )
    print(
        f"upload: largeattr {la_mean:.2f} s (runs {', '.join(f'{s:.2f}' for s in la_up)}), "
        f"boto3 {boto_mean:.2f} s (runs {', '.join(f'{s:.2f}' for s in boto_up)}): "
        f"ratio {ratio:.3f} (vs the faster boto3 run {la_mean / min(boto_up):.3f})"
    )
    if full:
        full_mean = sum(full) / len(full)
        print(
            f"like for like: boto3 upload_file with a whole-object CRC32 (the FULL_OBJECT "
            f"checksum largeattr has S3 verify) {full_mean:.2f} s (runs "
            f"{', '.join(f'{s:.2f}' for s in full)}): largeattr / that = "
            f"{la_mean / full_mean:.3f}"
        )
    composite = [p["upload"]["seconds"] for n, p in runs if n.startswith("composite")]
    if composite:
        composite_mean = sum(composite) / len(composite)
        print(
            f"like for like: largeattr with multipart_checksum='COMPOSITE' (per-part CRC32s "
            f"only, as upload_file by default) {composite_mean:.2f} s (runs "
            f"{', '.join(f'{s:.2f}' for s in composite)}): that / boto3 = "
            f"{composite_mean / boto_mean:.3f}"
        )
    if args.read:
        boto_rd = [p["read"]["seconds"] for n, p in runs if n.startswith("boto3")]
        la_rd = [p["read"]["seconds"] for n, p in runs if n.startswith("largeattr")]
        print(
            f"read:   largeattr {sum(la_rd) / len(la_rd):.2f} s (get + verified download), "
            f"boto3 download_file (one GET) {sum(boto_rd) / len(boto_rd):.2f} s: ratio "
            f"{(sum(la_rd) / len(la_rd)) / (sum(boto_rd) / len(boto_rd)):.3f}"
        )
    la_runs = [p for n, p in runs if n.startswith("largeattr")]
    first = la_runs[0]["upload"]
    print(
        f"largeattr: part {first['part_size'] // MiB} MiB x {first['concurrency']} threads; "
        f"boto3: part {runs[0][1]['upload']['part_size'] // MiB} MiB x "
        f"{runs[0][1]['upload']['concurrency']} threads; warm-up create (1 MiB) "
        f"{first['warmup_s']:.2f} s"
    )
    client_peak = max(
        max(v["procs"]["client"]["peak_mb"], v["procs"]["client"]["poll_mb"], v["lifetime_mb"])
        for r in la_runs
        for v in r.values()
    )
    worker_peak = max(
        max(v["procs"]["worker"]["peak_mb"], v["procs"]["worker"]["poll_mb"])
        for _, r in runs
        for v in r.values()
    )
    worker = others[0]
    worker.hwm_kb()
    worker_life = worker.lifetime_hwm_kb * 1024 / MB
    moto_peak = max(v["procs"]["moto"]["peak_mb"] for _, r in runs for v in r.values())
    boto_peak = max(
        v["procs"]["boto3"]["peak_mb"] for n, r in runs if n.startswith("boto3") for v in r.values()
    )
    print(
        f"peak RSS (MB = 10^6 bytes): client {client_peak:.0f} MB (start-up included), "
        f"worker {worker_peak:.0f} MB during the phases ({worker_life:.0f} MB lifetime), "
        f"boto3 {boto_peak:.0f} MB, moto {moto_peak:.0f} MB"
    )
    for n, history in enumerate(histories, start=1):
        steps = ", ".join(f"{a} {w:.2f}+{r:.2f}s" for a, w, r in history["steps"])
        print(
            f"history #{n}: {history['bytes']:,} bytes ({history['bytes'] / 1024:.1f} KiB), "
            f"{history['events']} events, biggest {history['biggest_event'][0]} "
            f"{history['biggest_event'][1]:,} bytes; workflow {history['workflow_s']:.2f} s"
        )
        print(f"  activities (queue wait + run): {steps}")
    peak = max(client_peak, worker_peak, worker_life)
    history_kb = max(h["bytes"] for h in histories) / 1024
    print(f"RESULT blob_ratio={ratio:.3f} peak_rss_mb={peak:.0f} history_kb={history_kb:.1f}")


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_boto3", "_client"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--read", action="store_true")
    parser.add_argument("--via-worker", action="store_true")
    parser.add_argument("--full-object", action="store_true")
    parser.add_argument("--composite", action="store_true")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--address")
    parser.add_argument("--task-queue")
    parser.add_argument("--table")
    parser.add_argument("--part-size-mib", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "_boto3":
        child_boto3(args)
    else:
        asyncio.run(child_client(args))
    sys.stdout.flush()
    sys.stdin.readline()  # stay alive until the parent has read our high-water mark
    os._exit(0)  # skip interpreter teardown (sdk-python issue 300)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main(sys.argv[1:])
    else:
        sys.exit(main())
