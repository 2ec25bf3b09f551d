#!/usr/bin/env python
"""Issue 12: a full reconcile against a bare listing of the same prefix.

    .venv/bin/python benchmarks/reconcile_bench.py --objects 100000

One run starts its own stack on 127.0.0.1 (the Temporal dev server as largeattr.devstack
starts it, headless, and a moto server), creates the bucket and the table, and writes N
objects with boto3 directly (no sagas; a pool of threads): items with two large attributes
(``html``, ``image``) reference 90% of them; the other 10% are orphans (by
default two per item: a failed update of both attributes with ``clean_up_on_failure=False``
leaves both new objects behind; ``--orphans-per-item 1`` gives every orphan its own item, so
twice as many item locks). Then,
in this order:

* ``list``: a bare ``list_objects_v2`` walk of the prefix (1,000 keys a page), timed;
* ``reconcile``: ``LargeAttrClient.reconcile(grace_seconds=0)`` from a client process of its
  own, against ``worker.py`` in a process of its own, timed; then the listing is checked:
  exactly the orphans are gone.

It prints objects/s of both, the CPU seconds of moto, Temporal and the worker in each, the
reconcile's result, the peak RSS (kernel high-water mark)
of the worker and of the client, and last ``RESULT reconcile_ratio=<reconcile rate / list
rate> peak_rss_mb=<max of the two>``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUCKET = "largeattr-recon-bench"
TABLE = "largeattr-recon-bench"
PREFIX = "bench"
TASK_QUEUE = "largeattr-recon-bench"
BODY = b"x" * 64


def bench_table() -> Any:
    from largeattr import LargeAttrTable

    return LargeAttrTable(
        table_name=TABLE,
        partition_key="pk",
        large_attributes=("html", "image"),
        bucket=BUCKET,
        prefix=PREFIX,
    )


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of a process's resident set (VmHWM), in MiB. Not
    getrusage's ru_maxrss: Linux carries the forking parent's peak into it across exec."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        out[name] = times.user + times.system
    return out


def cpu_line(before: dict[str, float], after: dict[str, float]) -> str:
    return ", ".join(f"{name} {after[name] - before[name]:.1f}" for name in before)


def digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def populate(s3: Any, dynamodb: Any, n: int, threads: int, per_item: int) -> tuple[int, int]:
    """N objects: 0.9 N referenced by 0.45 N items, 0.1 N orphans, ``per_item`` per item."""
    from largeattr import keys

    spec = bench_table().spec
    orphans = n // 10
    items = (n - orphans) // 2
    orphans = n - 2 * items

    def uri(i: int, attr: str, version: int) -> str:
        key = keys.object_key(spec, {"pk": {"S": f"item-{i:08d}"}}, attr, digest(i, attr, version))
        return key

    def put_item_batch(start: int) -> None:
        requests = []
        for i in range(start, min(start + 25, items)):
            item = {
                "pk": {"S": f"item-{i:08d}"},
                "html": {"S": keys.s3_uri(BUCKET, uri(i, "html", 1))},
                "image": {"S": keys.s3_uri(BUCKET, uri(i, "image", 1))},
                "la_version": {"N": "1"},
            }
            requests.append({"PutRequest": {"Item": item}})
        pending: dict[str, Any] = {TABLE: requests}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def put_object(job: tuple[int, str, int]) -> None:
        s3.put_object(Bucket=BUCKET, Key=uri(*job), Body=BODY)

    jobs = [(i, attr, 1) for i in range(items) for attr in ("html", "image")]
    # Orphan items spread evenly over the table (and so over the listing).
    attrs = ("html", "image")[:per_item]
    step = max(1, items // -(-orphans // per_item))
    jobs += [((i // per_item) * step, attrs[i % per_item], 2) for i in range(orphans)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put_item_batch, range(0, items, 25)))
        for done, _ in enumerate(pool.map(put_object, jobs), start=1):
            if done % 20000 == 0:
                print(f"  setup: {done:,}/{len(jobs):,} objects", flush=True)
    return items, orphans


def list_walk(s3: Any) -> int:
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{PREFIX}/", PaginationConfig={"PageSize": 1000}
    ):
        count += len(page.get("Contents", []))
    return count


async def client_main(address: str, endpoint: str) -> None:
    """The client process: run one reconcile, print its result, time and peak RSS."""
    from largeattr import AwsConfig, LargeAttrClient
    from largeattr.devstack import EMULATOR_AWS, EMULATOR_REGION

    aws = AwsConfig(
        endpoint_url=endpoint,
        region_name=EMULATOR_REGION,
        aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
        aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
    )
    la = await LargeAttrClient.connect(address, task_queue=TASK_QUEUE, aws=aws)
    async with la:
        started = time.monotonic()
        result = await la.reconcile(bench_table(), grace_seconds=0)
        elapsed = time.monotonic() - started
    out = {"seconds": elapsed, "result": vars(result), "rss_mb": peak_rss_mb(os.getpid())}
    print("DONE " + json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--setup-threads", type=int, default=16)
    parser.add_argument(
        "--orphans-per-item",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: a failed update of both attributes left both (default); 1: one per item",
    )
    parser.add_argument(
        "--client", nargs=2, metavar=("ADDRESS", "ENDPOINT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.client:
        asyncio.run(client_main(*args.client))
        return 0

    from largeattr import AwsConfig
    from largeattr.devstack import (
        EMULATOR_AWS,
        EMULATOR_REGION,
        start_moto,
        start_temporal,
        stop_process,
    )
    from largeattr.provision import ensure_bucket, ensure_table

    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        temporal, port, _ = start_temporal(work / "temporal", None, None, ui=False)
        processes.append(temporal)
        moto, moto_port = start_moto(None, work / "moto.log")
        processes.append(moto)
        endpoint, address = f"http://127.0.0.1:{moto_port}", f"127.0.0.1:{port}"
        aws = AwsConfig(
            endpoint_url=endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
            aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
        )
        s3, dynamodb = aws.clients()
        ensure_bucket(s3, BUCKET)
        ensure_table(dynamodb, bench_table())

        started = time.monotonic()
        items, orphans = populate(
            s3, dynamodb, args.objects, args.setup_threads, args.orphans_per_item
        )
        print(
            f"setup: {args.objects:,} objects ({orphans:,} orphans), {items:,} items "
            f"in {time.monotonic() - started:.0f} s"
        )

        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": EMULATOR_AWS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": EMULATOR_AWS["aws_secret_access_key"],
            "AWS_REGION": EMULATOR_REGION,
        }
        log = work / "worker.log"
        with open(log, "ab") as out:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "worker.py"),
                    "--address",
                    address,
                    "--task-queue",
                    TASK_QUEUE,
                    "--aws-endpoint-url",
                    endpoint,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        processes.append(worker)
        deadline = time.monotonic() + 90
        while "worker polling" not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log}")
            time.sleep(0.2)

        pids = {"moto": moto.pid, "temporal": temporal.pid, "worker": worker.pid}
        cpu = cpu_seconds({**pids, "bench": os.getpid()})
        started = time.monotonic()
        listed = list_walk(s3)
        list_seconds = time.monotonic() - started
        print(f"list CPU s:      {cpu_line(cpu, cpu_seconds({**pids, 'bench': os.getpid()}))}")
        list_rate = listed / list_seconds
        print(f"list:      {listed:,} objects in {list_seconds:.1f} s = {list_rate:,.0f} objects/s")

        cpu = cpu_seconds(pids)
        client = subprocess.run(
            [sys.executable, __file__, "--client", address, endpoint],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        done = [line for line in client.stdout.splitlines() if line.startswith("DONE ")]
        if not done:
            raise RuntimeError(f"the client failed:\n{client.stdout}\n{client.stderr}")
        print(f"reconcile CPU s: {cpu_line(cpu, cpu_seconds(pids))} (+ the client process)")
        report = json.loads(done[-1][5:])
        result = report["result"]
        rate = result["objects_scanned"] / report["seconds"]
        print(
            f"reconcile: {result['objects_scanned']:,} objects in {report['seconds']:.1f} s = "
            f"{rate:,.0f} objects/s"
        )
        print("result:    " + json.dumps(result))
        left = list_walk(s3)
        if result["objects_deleted"] != orphans or left != args.objects - orphans:
            raise RuntimeError(
                f"expected {orphans} orphans deleted and {args.objects - orphans} objects "
                f"left; deleted {result['objects_deleted']}, {left} left"
            )
        worker_rss, client_rss = peak_rss_mb(worker.pid), report["rss_mb"]
        print(f"peak RSS:  worker {worker_rss:.0f} MB, client {client_rss:.0f} MB")
        print(
            f"RESULT reconcile_ratio={rate / list_rate:.3f} "
            f"peak_rss_mb={max(worker_rss, client_rss):.0f}"
        )
        shutil.rmtree(work, ignore_errors=True)  # kept, with its logs, when a run fails
        return 0
    finally:
        for process in reversed(processes):
            stop_process(process)


if __name__ == "__main__":
    sys.exit(main())
