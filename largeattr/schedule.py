"""A Temporal Schedule that runs ``largeattr.Reconcile`` on a table every so often.

One schedule per table, id ``largeattr-reconcile/<table>``: creating it again updates it
(interval, grace, where the objects live), ``remove_reconcile_schedule`` deletes it. A pass
still running when the next is due is skipped (``ScheduleOverlapPolicy.SKIP``), so passes
of one table never overlap. The memo says what the schedule is for (table, bucket,
prefix: what its id stands for); the note, updated with it, says how it runs.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from largeattr import keys
from largeattr.errors import InvalidInput
from largeattr.messages import ReconcileInput
from largeattr.table import LargeAttrTable

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


def schedule_id(table_name: str) -> str:
    return f"largeattr-reconcile/{keys.escape(table_name)}"


def parse_every(text: str) -> timedelta:
    """``90s``, ``30m``, ``6h``, ``1d`` or a sum such as ``1h30m``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise InvalidInput(
            f"--every {text!r} is not a duration; write a number and a unit (s, m, h, d), "
            "e.g. 6h, 30m or 1h30m"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds < 60:
        raise InvalidInput(f"--every {text!r} is under a minute; reconcile at most every 1m")
    return timedelta(seconds=seconds)


def _schedule(
    table: LargeAttrTable, every: timedelta, request: ReconcileInput, task_queue: str
) -> Schedule:
    from largeattr.workflows import ReconcileWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            request,
            # Temporal appends the scheduled time, so a manual `largeattr reconcile`
            # (id without it) and a scheduled pass never collide on the id.
            id=schedule_id(table.table_name),
            task_queue=task_queue,
            static_summary=f"scheduled reconcile {table.table_name} (every {every})",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            note=(
                f"reconcile {table.table_name} (s3://{table.bucket}/{table.prefix}/) every "
                f"{every}, grace {request.grace_seconds} s"
                + (", staged streams only" if request.keep_old_versions else "")
                + "; set by `largeattr schedule reconcile`"
            )
        ),
    )


async def schedule_reconcile(
    temporal: Client,
    table: LargeAttrTable,
    every: timedelta,
    *,
    task_queue: str,
    grace_seconds: int = 900,
    keep_old_versions: bool | None = None,
) -> tuple[ScheduleHandle, bool]:
    """Create the table's reconcile schedule, or update it. Returns (handle, created)."""
    keep = (
        (not table.options.delete_old_objects) if keep_old_versions is None else keep_old_versions
    )
    request = ReconcileInput(table=table.spec, grace_seconds=grace_seconds, keep_old_versions=keep)
    schedule = _schedule(table, every, request, task_queue)
    memo: dict[str, Any] = {
        "largeattr": "reconcile schedule",
        "table": table.table_name,
        "bucket": table.bucket,
        "prefix": table.prefix,
    }
    try:
        handle = await temporal.create_schedule(schedule_id(table.table_name), schedule, memo=memo)
        return handle, True
    except ScheduleAlreadyRunningError:
        handle = temporal.get_schedule_handle(schedule_id(table.table_name))

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(replace)
        return handle, False


async def remove_reconcile_schedule(temporal: Client, table_name: str) -> bool:
    """Delete the table's reconcile schedule; False if there was none. A pass already
    running finishes."""
    try:
        await temporal.get_schedule_handle(schedule_id(table_name)).delete()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
