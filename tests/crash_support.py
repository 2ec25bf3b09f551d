"""Crash-test helpers: worker processes the tests start, pause, SIGKILL and replace.

``CrashWorkers`` starts ``python -m tests.crash_worker`` processes (see that module for the
pause points) and kills whatever is left when the test ends. ``expire_lost_activities``
is the tests' stand-in for waiting out a dead worker's Start-To-Close timeout: see its
docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import (
    ResetStickyTaskQueueRequest,
    UpdateActivityOptionsRequest,
)
from temporalio.client import Client

from largeattr import AwsConfig

ROOT = Path(__file__).resolve().parent.parent


class WorkerDied(AssertionError):
    pass


@dataclass
class WorkerProcess:
    """One crash worker process."""

    process: subprocess.Popen[bytes]
    queue: str
    log: Path
    marker: Path
    ready: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_file(self, path: Path, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.process.poll() is not None:
                raise WorkerDied(
                    f"crash worker {self.pid} exited ({self.process.returncode}) before {what}:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"crash worker {self.pid} did not reach {what} within {timeout:.0f}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        await asyncio.to_thread(self._wait_file, self.ready, timeout, "polling")

    async def wait_marker(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the worker paused at its point; what it wrote there."""
        await asyncio.to_thread(self._wait_file, self.marker, timeout, "its pause point")
        return dict(json.loads(self.marker.read_text()))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no completion reported, no clean-up."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class CrashWorkers:
    """Starts crash worker processes; ``close()`` ends every one still running."""

    temporal_address: str
    aws: AwsConfig
    directory: Path
    processes: list[WorkerProcess] = field(default_factory=list)

    def new_queue(self) -> str:
        return f"crash-{uuid.uuid4().hex[:8]}"

    def start(
        self,
        queue: str,
        *,
        pause: str | None = None,
        gates: Sequence[str] = (),
        record_parts: Path | None = None,
        allow_files: Sequence[Path] = (),
        sticky_timeout: float = 10.0,
        start_when: Path | None = None,
        extra: Sequence[str] = (),
    ) -> WorkerProcess:
        name = f"w{len(self.processes)}-{uuid.uuid4().hex[:6]}"
        marker = self.directory / f"{name}.paused.json"
        ready = self.directory / f"{name}.ready"
        log = self.directory / f"{name}.log"
        assert self.aws.endpoint_url
        command = [
            sys.executable,
            "-m",
            "tests.crash_worker",
            "--address", self.temporal_address,
            "--task-queue", queue,
            "--aws-endpoint-url", self.aws.endpoint_url,
            "--marker", str(marker),
            "--ready", str(ready),
            "--gate-dir", str(self.directory),
            "--sticky-timeout", str(sticky_timeout),
            *(["--pause", pause] if pause else []),
            *[arg for gate in gates for arg in ("--gate", gate)],
            *(["--record-parts", str(record_parts)] if record_parts else []),
            *(["--start-when", str(start_when)] if start_when else []),
            *[arg for d in allow_files for arg in ("--allow-files", str(d))],
            *extra,
        ]  # fmt: skip
        with open(log, "ab") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        worker = WorkerProcess(process, queue, log, marker, ready)
        self.processes.append(worker)
        return worker

    def gate_reached(self, point: str) -> bool:
        phase, _, name = point.partition(":")
        return any(self.directory.glob(f"{phase}-{name}.[0-9]*"))

    def release(self, point: str) -> None:
        phase, _, name = point.partition(":")
        (self.directory / f"{phase}-{name}.release").touch()

    def close(self) -> None:
        for worker in self.processes:
            worker.stop(timeout=5)


def _duration(value: timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(value)
    return out


async def expire_lost_activities(
    temporal: Client,
    workflow_id: str,
    *,
    start_to_close: timedelta = timedelta(seconds=1),
) -> dict[str, int]:
    """Time out a dead worker's activities sooner (UpdateActivityOptions).

    A SIGKILLed worker reports nothing: Temporal retries its activity only once the
    attempt's Start-To-Close (or heartbeat) timeout expires, 30 s to 5 min with the sagas'
    settings. This does what an operator does with ``temporal activity update-options``:
    the server times the lost attempt out after ``start_to_close`` instead, records the
    timeout and retries it under the saga's own retry policy: the same path as waiting,
    only sooner. Returns {activity id: attempt} of the activities it changed; pass it to
    ``restore_activity_options`` so that the retries run with the saga's own timeouts.

    It also resets the workflow's sticky task queue (``ResetStickyTaskQueue``, what a
    worker's graceful shutdown does): else the next workflow task waits on the dead
    worker's sticky queue for the sticky Schedule-To-Start timeout (10 s by default) --
    unless the server has already noticed that nobody polls it, which it does by itself
    when the lost attempt takes as long to time out as the sagas' own timeouts.
    """
    description = await temporal.get_workflow_handle(workflow_id).describe()
    execution = description.raw_description.workflow_execution_info.execution
    await temporal.workflow_service.reset_sticky_task_queue(
        ResetStickyTaskQueueRequest(namespace=temporal.namespace, execution=execution)
    )
    updated: dict[str, int] = {}
    for pending in description.raw_description.pending_activities:
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
            continue
        await temporal.workflow_service.update_activity_options(
            UpdateActivityOptionsRequest(
                namespace=temporal.namespace,
                execution=execution,
                identity="crash-tests",
                activity_options=ActivityOptions(start_to_close_timeout=_duration(start_to_close)),
                update_mask=FieldMask(paths=["start_to_close_timeout"]),
                id=pending.activity_id,
            )
        )
        updated[pending.activity_id] = pending.attempt
    return updated


async def restore_activity_options(
    temporal: Client, workflow_id: str, updated: dict[str, int], timeout: float = 120.0
) -> None:
    """Once each activity changed by ``expire_lost_activities`` has left the attempt that
    was lost, give it back the options the workflow scheduled it with."""
    handle = temporal.get_workflow_handle(workflow_id)
    left = dict(updated)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        description = await handle.describe()
        raw = description.raw_description
        pending = {p.activity_id: p for p in raw.pending_activities}
        for activity_id, attempt in list(left.items()):
            now = pending.get(activity_id)
            if now is not None and now.attempt == attempt:
                continue  # the lost attempt has not timed out yet
            if now is not None:
                with contextlib.suppress(Exception):
                    await temporal.workflow_service.update_activity_options(
                        UpdateActivityOptionsRequest(
                            namespace=temporal.namespace,
                            execution=raw.workflow_execution_info.execution,
                            identity="crash-tests",
                            id=activity_id,
                            restore_original=True,
                        )
                    )
            del left[activity_id]
        if left:
            await asyncio.sleep(0.1)
