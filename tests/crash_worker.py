"""A largeattr worker *process* that can stop dead at a named point, for crash tests.

    python -m tests.crash_worker --address 127.0.0.1:7233 --task-queue q \
        --aws-endpoint-url http://127.0.0.1:5000 \
        --pause during:PutItem --marker /tmp/x/paused.json

It is ``worker.build_worker`` (the three sagas, ``SagaActivities`` on boto3 clients) plus
hooks that a test drives from outside:

* ``--pause POINT``: on reaching POINT, write ``--marker`` (JSON: point, pid, activity) and
  block forever, so that the test can SIGKILL the process at exactly that point. Points:

  - ``before:<activity>``: the activity task was delivered and started, no AWS call made
    (an activity inbound interceptor, before ``execute_activity``);
  - ``during:<AWS operation>``: the AWS call reached the server and its response came back,
    but the activity has not returned (a botocore ``after-call`` hook on the worker's
    clients): the write is committed, the activity never learns it;
  - ``after:<activity>``: the activity function returned or raised; the interceptor holds
    the outcome, so the SDK never reports it to Temporal (the ambiguous case).

  A ``#N`` suffix selects the N-th occurrence in this process (``during:UploadPart#4``).
  Activities are named without the ``largeattr.`` prefix (``read_item``, ``compensate``).
* ``--gate POINT`` (repeatable): on reaching POINT, write ``<gate-dir>/<point>.<pid>`` and
  wait until ``<gate-dir>/<point>.release`` exists, so the test can act at that moment (for
  example write a conflicting item) and then let the saga go on. Gates count every
  occurrence; a pause at the same point comes after the gate.
* ``--record-parts FILE``: append ``sent N`` before and ``done N`` after every UploadPart
  call of this process (N is the PartNumber), one line each.
* ``--ready FILE``: written once the worker polls its task queue.
* ``--start-when FILE``: start up, but poll the task queue only once FILE exists (a
  replacement worker can be spawned early and switched on right after the kill).

The configuration also comes from the environment: ``CRASH_PAUSE``, ``CRASH_MARKER``.
SIGTERM / SIGINT stop the worker as ``worker.py`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from largeattr.config import AwsConfig
from largeattr.devstack import EMULATOR_AWS, EMULATOR_REGION
from largeattr.transfer import MiB, TransferConfig
from largeattr.worker import build_worker

log = logging.getLogger("largeattr.crash_worker")


# ---------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    """``phase:name[#nth]``, e.g. ``before:read_item``, ``during:UploadPart#4``."""

    phase: str
    name: str
    nth: int = 1

    @staticmethod
    def parse(text: str) -> Point:
        phase, sep, rest = text.partition(":")
        if not sep or phase not in ("before", "during", "after") or not rest:
            raise argparse.ArgumentTypeError(
                f"bad point {text!r}: use before:<activity>, during:<AWS operation> or "
                "after:<activity>, optionally with #N"
            )
        name, _, nth = rest.partition("#")
        return Point(phase, name.removeprefix("largeattr."), int(nth) if nth else 1)

    @property
    def label(self) -> str:
        return f"{self.phase}:{self.name}"

    def __str__(self) -> str:
        return self.label if self.nth == 1 else f"{self.label}#{self.nth}"


def _write_atomic(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


def _activity_details() -> dict[str, Any]:
    """The running activity, when called from its context (not from a part-upload thread)."""
    try:
        info = activity.info()
    except RuntimeError:
        return {}
    return {
        "activity": info.activity_type,
        "activity_id": info.activity_id,
        "attempt": info.attempt,
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
    }


@dataclass
class Hooks:
    """Where this process pauses (once) and which gates it waits at."""

    pause: Point | None = None
    marker: Path | None = None
    gates: tuple[Point, ...] = ()
    gate_dir: Path | None = None
    record_parts: Path | None = None
    seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    paused: bool = False

    def reached(self, phase: str, name: str) -> tuple[bool, bool]:
        """Count an occurrence; return (wait at a gate, pause here)."""
        label = f"{phase}:{name}"
        with self.lock:
            self.seen[label] += 1
            count = self.seen[label]
            gate = any(g.label == label for g in self.gates)
            pause = (
                not self.paused
                and self.pause is not None
                and self.pause.label == label
                and self.pause.nth == count
            )
            if pause:
                self.paused = True
        return gate, pause

    def _gate_files(self, phase: str, name: str) -> tuple[Path, Path]:
        assert self.gate_dir is not None
        stem = f"{phase}-{name}"
        return self.gate_dir / f"{stem}.{os.getpid()}", self.gate_dir / f"{stem}.release"

    def _marker_text(self, point: str, extra: dict[str, Any]) -> str:
        return json.dumps({"point": point, "pid": os.getpid(), "time": time.time(), **extra})

    def _announce_pause(self, phase: str, name: str, extra: dict[str, Any]) -> None:
        log.warning("pausing at %s (pid %d) until killed", self.pause, os.getpid())
        if self.marker is not None:
            _write_atomic(self.marker, self._marker_text(f"{phase}:{name}", extra))

    # -------------------------------------------------------------- blocking, two kinds

    def block_thread(self, phase: str, name: str) -> None:
        """In a worker thread (botocore hooks)."""
        gate, pause = self.reached(phase, name)
        extra = _activity_details()
        if gate:
            reached, release = self._gate_files(phase, name)
            _write_atomic(reached, self._marker_text(f"{phase}:{name}", extra))
            while not release.exists():
                time.sleep(0.05)
        if pause:
            self._announce_pause(phase, name, extra)
            threading.Event().wait()

    async def block_async(self, phase: str, name: str) -> None:
        """On the worker's event loop (activity interceptor)."""
        gate, pause = self.reached(phase, name)
        extra = _activity_details()
        if gate:
            reached, release = self._gate_files(phase, name)
            _write_atomic(reached, self._marker_text(f"{phase}:{name}", extra))
            while not release.exists():
                await asyncio.sleep(0.05)
        if pause:
            self._announce_pause(phase, name, extra)
            await asyncio.get_running_loop().create_future()  # never done

    # -------------------------------------------------------------- botocore

    def attach(self, *clients: Any) -> None:
        for client in clients:
            events = client.meta.events
            events.register("before-parameter-build.*.*", self._remember_part)
            events.register("before-call.*.*", self._before_call)
            events.register("after-call.*.*", self._after_call)

    @staticmethod
    def _remember_part(params: Any, context: Any, **_: Any) -> None:
        if isinstance(params, dict) and "PartNumber" in params:
            context["crash_worker_part"] = int(params["PartNumber"])

    def _record(self, word: str, context: Any) -> None:
        number = context.get("crash_worker_part") if isinstance(context, dict) else None
        if self.record_parts is None or number is None:
            return
        fd = os.open(self.record_parts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{word} {number}\n".encode())
        finally:
            os.close(fd)

    def _before_call(self, model: Any, context: Any = None, **_: Any) -> None:
        if model.name == "UploadPart":
            self._record("sent", context)

    def _after_call(self, model: Any, context: Any = None, **kwargs: Any) -> None:
        if model.name == "UploadPart":
            http = kwargs.get("http_response")
            if http is not None and http.status_code < 300:
                self._record("done", context)
        self.block_thread("during", model.name)


@dataclass(frozen=True)
class HookedAwsConfig(AwsConfig):
    """An AwsConfig whose clients carry the crash hooks (``build_worker`` builds them)."""

    hooks: Hooks = field(default_factory=Hooks, compare=False)

    def clients(self) -> tuple[Any, Any]:
        s3, dynamodb = super().clients()
        self.hooks.attach(s3, dynamodb)
        return s3, dynamodb


# ---------------------------------------------------------------- activities


class _PauseActivities(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, hooks: Hooks) -> None:
        super().__init__(next)
        self.hooks = hooks

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type.removeprefix("largeattr.")
        await self.hooks.block_async("before", name)
        try:
            result = await self.next.execute_activity(input)
        except BaseException:
            await self.hooks.block_async("after", name)  # the failure is never reported
            raise
        await self.hooks.block_async("after", name)  # the result is never reported
        return result


class PauseInterceptor(Interceptor):
    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _PauseActivities(next, self.hooks)


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.crash_worker", description=__doc__)
    parser.add_argument("--address", required=True, help="Temporal frontend host:port")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--aws-endpoint-url", required=True)
    parser.add_argument("--region", default=EMULATOR_REGION)
    parser.add_argument("--pause", type=Point.parse, default=None)
    parser.add_argument("--marker", type=Path, default=None)
    parser.add_argument("--gate", type=Point.parse, action="append", default=[])
    parser.add_argument("--gate-dir", type=Path, default=None)
    parser.add_argument("--record-parts", type=Path, default=None)
    parser.add_argument("--ready", type=Path, default=None)
    parser.add_argument(
        "--start-when",
        type=Path,
        default=None,
        help="build everything, but poll the task queue only once this file exists",
    )
    parser.add_argument("--allow-files", action="append", default=[], metavar="DIR")
    parser.add_argument("--part-size-mib", type=int, default=5)
    parser.add_argument("--multipart-threshold-mib", type=int, default=6)
    parser.add_argument("--upload-concurrency", type=int, default=3)
    parser.add_argument(
        "--sticky-timeout",
        type=float,
        default=10.0,
        help="sticky_queue_schedule_to_start_timeout in seconds (SDK default 10)",
    )
    parser.add_argument("--max-cached-workflows", type=int, default=1000)
    parser.add_argument("--shutdown-grace", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.pause is None and os.environ.get("CRASH_PAUSE"):
        args.pause = Point.parse(os.environ["CRASH_PAUSE"])
    if args.marker is None and os.environ.get("CRASH_MARKER"):
        args.marker = Path(os.environ["CRASH_MARKER"])
    if args.gate and args.gate_dir is None:
        parser.error("--gate needs --gate-dir")
    return args


async def run(args: argparse.Namespace) -> None:
    hooks = Hooks(
        pause=args.pause,
        marker=args.marker,
        gates=tuple(args.gate),
        gate_dir=args.gate_dir,
        record_parts=args.record_parts,
    )
    aws = HookedAwsConfig(
        endpoint_url=args.aws_endpoint_url,
        region_name=args.region,
        aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
        aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
        hooks=hooks,
    )
    temporal = await Client.connect(args.address, namespace=args.namespace)
    worker, executor = build_worker(
        temporal,
        task_queue=args.task_queue,
        aws=aws,
        transfer=TransferConfig(
            multipart_threshold=args.multipart_threshold_mib * MiB,
            part_size=args.part_size_mib * MiB,
            max_concurrency=args.upload_concurrency,
        ),
        allow_files=args.allow_files,
        shutdown_grace=args.shutdown_grace,
        interceptors=[PauseInterceptor(hooks)],
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=args.sticky_timeout),
        max_cached_workflows=args.max_cached_workflows,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while args.start_when is not None and not args.start_when.exists():
        if stop.is_set():
            return
        await asyncio.sleep(0.02)
    async with worker:
        log.info(
            "crash worker %d polling %r, pause at %s", os.getpid(), args.task_queue, args.pause
        )
        if args.ready is not None:
            _write_atomic(args.ready, str(os.getpid()))
        await stop.wait()
    executor.shutdown(wait=False, cancel_futures=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{os.getpid()}] %(name)s %(message)s",
    )
    asyncio.run(run(args))
    sys.stdout.flush()
    # A paused thread would keep the interpreter alive; nothing is left to finish.
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
