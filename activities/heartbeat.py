"""Heartbeats that keep coming while a long transfer waits on a slow part or a slow stream.

A transfer activity reports progress as parts finish; with a slow uplink (or a client that
feeds a stream slowly) the gap between two parts can exceed the heartbeat timeout, and
Temporal would then retry an attempt that is still running. ``Beating`` repeats the last
progress report every few seconds from a thread of its own for as long as the attempt
runs. A worker that dies stops it too, so the heartbeat timeout still detects a lost
worker. The SDK's heartbeat call is safe from any thread of a threaded activity (it hands
the details to the worker's event loop; temporalio/worker/_activity.py).
"""

from __future__ import annotations

import contextvars
import threading
from types import TracebackType
from typing import Any

from temporalio import activity

#: Well under the sagas' heartbeat timeout (30 s, workflows/policies.py TRANSFER_HEARTBEAT).
EVERY_SECONDS = 10.0


class Beating:
    """``with Beating() as beat: ... beat(details)``: send details now, and repeat the
    latest every ``every`` seconds until the block ends."""

    def __init__(self, every: float = EVERY_SECONDS) -> None:
        self.every = every
        # Until this attempt reports, repeat what the last attempt reported (its resume
        # point): an empty heartbeat would erase it.
        self._details: tuple[Any, ...] = tuple(activity.info().heartbeat_details)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # The activity's context (its heartbeat function) for the repeating thread.
        self._context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=self._context.run, args=(self._repeat,), name="largeattr-heartbeat", daemon=True
        )

    def __call__(self, *details: Any) -> None:
        with self._lock:
            self._details = details
        activity.heartbeat(*details)

    def _repeat(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                details = self._details
            try:
                activity.heartbeat(*details)
            except Exception:  # the attempt is ending; its own thread reports the outcome
                return

    def __enter__(self) -> Beating:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every)
