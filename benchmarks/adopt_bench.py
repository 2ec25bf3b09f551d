"""How fast ``adopt_table`` adopts items that pynamodb_mate wrote (issue 12).

    .venv/bin/python benchmarks/adopt_bench.py --items 100 --concurrency 8 16

Starts its own stack (Temporal dev server, moto server) on free 127.0.0.1 ports and
``worker.py`` as a process of its own; for each concurrency, writes ``--items`` items as
pynamodb_mate lays them out (two ~10 KB objects each, keys ending ``md5=<md5>``), then times
``LargeAttrClient.adopt_table`` (unpaced) and prints items/s and the CPU seconds of each
process. Not a test: the machine is shared, so the numbers move.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def mate_items(s3: Any, dynamodb: Any, table: Any, count: int, tag: str) -> None:
    """Items as pynamodb_mate's create_large_attribute_item writes them."""
    for i in range(count):
        pk = f"{tag}-{i}"
        item = {"pk": {"S": pk}, "title": {"S": f"document {i}"}}
        for attribute in ("html", "image"):
            data = hashlib.sha256(f"{pk}/{attribute}".encode()).digest() * 320  # 10 KiB
            key = f"mate/pk={pk}/attr={attribute}/md5={hashlib.md5(data).hexdigest()}"
            s3.put_object(Bucket=table.bucket, Key=key, Body=data)
            item[attribute] = {"S": f"s3://{table.bucket}/{key}"}
        dynamodb.put_item(TableName=table.table_name, Item=item)


def cpu(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """CPU seconds of each process (this one's children are the servers: not counted)."""
    out = {}
    for name, process in processes.items():
        times = process.cpu_times()
        out[name] = times.user + times.system
    return out


async def bench(args: argparse.Namespace) -> None:
    from largeattr import AwsConfig, LargeAttrClient, LargeAttrTable
    from largeattr.devstack import (
        EMULATOR_AWS,
        EMULATOR_REGION,
        connect_when_serving,
        start_moto,
        start_temporal,
        stop_process,
    )
    from largeattr.provision import ensure_bucket, ensure_table

    with tempfile.TemporaryDirectory(prefix="largeattr-adopt-bench-") as scratch:
        temporal_process, port, _ = start_temporal(Path(scratch) / "temporal", port=None, ui=False)
        moto_process, moto_port = start_moto(port=None, log=Path(scratch) / "moto.log")
        aws = AwsConfig(
            endpoint_url=f"http://127.0.0.1:{moto_port}",
            region_name=EMULATOR_REGION,
            aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
            aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
        )
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": EMULATOR_AWS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": EMULATOR_AWS["aws_secret_access_key"],
        }
        worker = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "worker.py"),
                *("--address", f"127.0.0.1:{port}", "--task-queue", "bench"),
                *("--aws-endpoint-url", str(aws.endpoint_url), "--region", EMULATOR_REGION),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("ADOPT_BENCH_WORKER_LOG", os.devnull), "wb"),  # noqa: SIM115
        )
        processes = {
            "temporal": psutil.Process(temporal_process.pid),
            "moto": psutil.Process(moto_process.pid),
            "worker": psutil.Process(worker.pid),
            "client": psutil.Process(),
        }
        try:
            temporal = await connect_when_serving(f"127.0.0.1:{port}")
            s3, dynamodb = aws.clients()
            la = LargeAttrClient(temporal, task_queue="bench", aws=aws)
            async with la:
                for round_, concurrency in enumerate(args.concurrency):
                    table = LargeAttrTable(
                        table_name=f"bench-{round_}",
                        partition_key="pk",
                        large_attributes=("html", "image"),
                        bucket="adopt-bench",
                        prefix=f"docs{round_}",
                    )
                    ensure_bucket(s3, table.bucket)
                    ensure_table(dynamodb, table)
                    mate_items(s3, dynamodb, table, args.items, f"r{round_}")
                    if round_ == 0:  # warm up: the worker's first tasks import and connect
                        await la.adopt(table, "r0-0")
                    before, started = cpu(processes), time.monotonic()
                    report = await la.adopt_table(table, concurrency=concurrency)
                    seconds = time.monotonic() - started
                    spent = {k: v - before[k] for k, v in cpu(processes).items()}
                    assert not report.failed, report.failed
                    adopted = len(report.adopted)
                    print(
                        f"concurrency {concurrency}: adopted {adopted} in {seconds:.2f} s = "
                        f"{adopted / seconds:.1f} items/s; CPU s per item: "
                        + ", ".join(f"{k} {v / adopted * 1000:.0f} ms" for k, v in spent.items())
                    )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            stop_process(moto_process)
            stop_process(temporal_process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
