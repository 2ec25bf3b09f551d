"""Run a largeattr worker: configuration -> AWS clients -> Temporal worker.

    python worker.py --address 127.0.0.1:7233 --task-queue largeattr
    python worker.py --aws-endpoint-url http://127.0.0.1:5000   # an emulator; unset = AWS

Temporal connection settings also come from the SDK's environment configuration
(``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, TLS, profiles); AWS
from boto3's credential chain. SIGINT / SIGTERM stop polling, let running activities
finish for ``--shutdown-grace`` seconds, then exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from largeattr import telemetry, tracing
from largeattr.activities import SagaActivities
from largeattr.config import DEFAULT_TASK_QUEUE, AwsConfig, connect_temporal, exit_now
from largeattr.errors import InvalidInput, LargeAttrError
from largeattr.failures import with_our_failures
from largeattr.sources import SourceRegistry
from largeattr.transfer import FULL_OBJECT, MULTIPART_CHECKSUMS, MiB, TransferConfig
from largeattr.workflows import ALL_WORKFLOWS
from largeattr.workflows.policies import PIVOT_CALL

log = logging.getLogger("largeattr.worker")
#: Beyond ``--shutdown-grace``: the SDK's own cancel-then-finish of running activities.
SHUTDOWN_SLACK = 2.0


def build_worker(
    temporal: Client,
    *,
    task_queue: str = DEFAULT_TASK_QUEUE,
    aws: AwsConfig | None = None,
    transfer: TransferConfig | None = None,
    allow_files: Sequence[str] = (),
    max_concurrent_activities: int = 32,
    shutdown_grace: float = 10.0,
    activities: SagaActivities | None = None,
    sandboxed: bool = False,
    **worker_options: Any,
) -> tuple[Worker, ThreadPoolExecutor]:
    """A worker for the sagas; its activities use boto3 clients built from ``aws``, unless
    ready-made ``activities`` are given (tests pass ones whose clients inject faults).

    Workflows run without the SDK's sandbox unless ``sandboxed``: the sandbox re-imports the
    workflow modules for every run, which doubled the worker's CPU per saga (53 against 25
    ms per create, BENCHMARKS.md). Determinism stays guarded where it is cheap: the test
    suite runs every saga in the sandbox (tests/conftest.py), and the replay tests replay
    every recorded history both ways."""
    if activities is None:
        aws = aws or AwsConfig.from_env()
        bound = aws.dynamodb_call_bound()
        if bound >= PIVOT_CALL.total_seconds():
            raise InvalidInput(
                f"a DynamoDB call may last {bound:.0f} s with these AwsConfig timeouts and "
                f"attempts, longer than a pivot attempt ({PIVOT_CALL.total_seconds():.0f} s); "
                "lower dynamodb_connect_timeout, dynamodb_read_timeout or dynamodb_max_attempts"
            )
        s3, dynamodb = aws.clients()
        activities = SagaActivities(s3, dynamodb, transfer, SourceRegistry(allow_files))
    executor = ThreadPoolExecutor(
        max_workers=max_concurrent_activities, thread_name_prefix="largeattr-activity"
    )
    if not sandboxed:
        worker_options["workflow_runner"] = UnsandboxedWorkflowRunner()
    worker_options["interceptors"] = [
        telemetry.BusinessErrorsAreBenign(),
        *worker_options.get("interceptors", ()),
    ]
    worker = Worker(
        with_our_failures(temporal),
        task_queue=task_queue,
        workflows=ALL_WORKFLOWS,
        activities=activities.all(),
        activity_executor=executor,
        max_concurrent_activities=max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=shutdown_grace),
        **worker_options,
    )
    return worker, executor


async def run_worker(args: argparse.Namespace, ready: asyncio.Event | None = None) -> None:
    runtime = None
    if args.metrics_port is not None:
        runtime = telemetry.prometheus_runtime(args.metrics_address, args.metrics_port)
    temporal = await connect_temporal(
        args.address, args.namespace, runtime=runtime, tracing=args.tracing
    )
    worker, executor = build_worker(
        temporal,
        task_queue=args.task_queue,
        aws=AwsConfig.from_env(endpoint_url=args.aws_endpoint_url, region_name=args.region),
        transfer=TransferConfig(
            part_size=args.part_size_mib * MiB,
            max_concurrency=args.upload_concurrency,
            multipart_checksum=args.multipart_checksum,
        ),
        allow_files=args.allow_files,
        max_concurrent_activities=args.max_concurrent_activities,
        shutdown_grace=args.shutdown_grace,
        sandboxed=args.sandboxed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second signal: leave now, whatever still runs
            log.warning("second signal: exiting without waiting for running activities")
            exit_now(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    running = asyncio.create_task(worker.run())
    log.info(
        "worker polling task queue %r on %s (namespace %s)",
        args.task_queue,
        temporal.service_client.config.target_host,
        temporal.namespace,
    )
    if runtime is not None:
        log.info("metrics at http://%s:%d/metrics", args.metrics_address, args.metrics_port)
    if ready is not None:
        ready.set()
    await asyncio.wait([running, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    log.info("signal received: finishing running activities, then stopping")
    # The grace is a bound: an activity stuck in a call that does not return is left to
    # time out and be retried by another worker, rather than keeping this one alive.
    try:
        await asyncio.wait_for(worker.shutdown(), args.shutdown_grace + SHUTDOWN_SLACK)
        await asyncio.gather(running, return_exceptions=True)
    except TimeoutError:
        log.warning(
            "activities still running after %.0f s; exiting (their attempts will time out "
            "and be retried)",
            args.shutdown_grace,
        )
        exit_now(0)  # threads blocked in a call cannot be joined; leave without them
    executor.shutdown(wait=True)
    log.info("worker stopped")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Temporal frontend host:port (env TEMPORAL_ADDRESS)")
    parser.add_argument("--namespace", help="Temporal namespace (env TEMPORAL_NAMESPACE)")
    parser.add_argument("--task-queue", default=DEFAULT_TASK_QUEUE)
    parser.add_argument(
        "--aws-endpoint-url",
        help="S3/DynamoDB endpoint, e.g. an emulator (env AWS_ENDPOINT_URL); unset = AWS",
    )
    parser.add_argument("--region", help="AWS region (env AWS_REGION)")
    parser.add_argument(
        "--allow-files",
        action="append",
        default=[],
        metavar="DIR",
        help="directory whose files sagas may upload by path (file: sources); repeatable",
    )
    parser.add_argument("--max-concurrent-activities", type=int, default=32)
    parser.add_argument("--part-size-mib", type=int, default=8)
    parser.add_argument("--upload-concurrency", type=int, default=4)
    parser.add_argument(
        "--multipart-checksum",
        choices=MULTIPART_CHECKSUMS,
        default=FULL_OBJECT,
        help="what S3 verifies on multipart uploads besides each part: the whole object's "
        "CRC32 (FULL_OBJECT) or only the parts (COMPOSITE, for stores without FULL_OBJECT)",
    )
    parser.add_argument("--shutdown-grace", type=float, default=10.0)
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics (the SDK's temporal_* and largeattr_*) at "
        "http://ADDRESS:PORT/metrics; unset: no metrics",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address the metrics endpoint listens on (default 127.0.0.1; 0.0.0.0 in a "
        "container that Prometheus scrapes from outside)",
    )
    parser.add_argument(
        "--log-format",
        choices=telemetry.LOG_FORMATS,
        default="text",
        help="text lines on stderr, or one JSON object per line on stdout",
    )
    parser.add_argument(
        "--tracing",
        choices=tracing.MODES,
        help="OpenTelemetry spans of every workflow and activity (needs largeattr[otel]): "
        "otlp (OTEL_EXPORTER_OTLP_* variables), console, global (your provider), off "
        f"(default: ${tracing.TRACING_ENV}, else off)",
    )
    parser.add_argument(
        "--sandboxed",
        action="store_true",
        help="run workflows in the SDK's sandbox (stricter checks, about twice the worker CPU "
        "per saga; the tests run every saga sandboxed)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    telemetry.configure_logging(args.log_format)
    try:
        asyncio.run(run_worker(args))
    except LargeAttrError as err:  # bad settings: one line that says what to do
        print(f"worker.py: {type(err).__name__}: {err}", file=sys.stderr)
        exit_now(2)
    exit_now(0)


if __name__ == "__main__":
    main()
