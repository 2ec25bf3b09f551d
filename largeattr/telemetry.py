"""Metrics and logs: what a worker tells its operator about the sagas it runs.

Metrics go through the SDK's own meters, so they share the worker's Prometheus endpoint
(``worker.py --metrics-port``) with the SDK's ``temporal_*`` metrics:

* workflow side (``saga_finished``, called once per saga by ``Saga.finish``):
  ``largeattr_sagas{operation,outcome}``, ``largeattr_compensations{operation}``; and
  ``largeattr_settled_pivots{operation,committed}`` (``pivot_settled``, called by
  ``Saga._settle`` each time a pivot left without an answer is settled by reading the
  item: ``committed`` is "true" when the read found the pivot's own write). The
  workflow meter records nothing while a workflow replays its history (temporalio
  ``workflow.metric_meter``: "replay safe"), and our log lines go through a
  ``workflow.LoggerAdapter``, which skips replay too. A workflow task that failed and runs
  again is live, so it may count twice (python.temporal.io, ``ReplaySafeMeterProvider``).
* activity side (``count``): ``largeattr_bytes_uploaded``, ``largeattr_parts_resumed``,
  ``largeattr_objects_deleted{reason}``.

Each saga outcome is one log line on the ``largeattr.saga`` logger, with its fields in
``extra["saga"]``; ``worker.py --log-format json`` prints them as one JSON object a line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from temporalio import activity, workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    is_cancelled_exception,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from largeattr.errors import (
    BUSINESS_ERRORS,
    AccessDenied,
    BucketNotFound,
    CorruptObject,
    InvalidInput,
    LargeAttrError,
    SourceUnavailable,
    TableNotFound,
)
from largeattr.failures import application_error, our_error
from largeattr.messages import CleanupResult, TableSpec

#: Refusals that no caller can fix by retrying differently: an operator has to look.
NEEDS_AN_OPERATOR: tuple[type[LargeAttrError], ...] = (
    AccessDenied,
    BucketNotFound,
    CorruptObject,
    SourceUnavailable,
    TableNotFound,
)

SAGAS = "largeattr_sagas"
COMPENSATIONS = "largeattr_compensations"
BYTES_UPLOADED = "largeattr_bytes_uploaded"
PARTS_RESUMED = "largeattr_parts_resumed"
OBJECTS_DELETED = "largeattr_objects_deleted"
SETTLED_PIVOTS = "largeattr_settled_pivots"

DESCRIPTIONS = {
    SAGAS: "Sagas ended, by operation and outcome (committed, refused, compensated, "
    "cancelled, failed)",
    COMPENSATIONS: "Sagas that removed objects they wrote before their pivot failed",
    BYTES_UPLOADED: "Blob bytes sent to S3 (parts an earlier attempt sent are not counted)",
    PARTS_RESUMED: "Multipart parts S3 already held from an earlier attempt, not sent again",
    OBJECTS_DELETED: "S3 objects deleted, by reason (clean_up, compensation, reconcile)",
    SETTLED_PIVOTS: "Pivots that ended without an answer, settled by reading the item, by "
    "whether the read found they had committed",
}

saga_log = workflow.LoggerAdapter(logging.getLogger("largeattr.saga"), None)
saga_log.workflow_info_on_message = False  # the line names the workflow id itself


# ---------------------------------------------------------------- the worker's runtime


def prometheus_runtime(address: str, port: int) -> Runtime:
    """A runtime whose metrics (the SDK's and ours) are served at http://address:port/metrics."""
    if not 0 < port < 65536:
        raise InvalidInput(f"--metrics-port {port} is not a TCP port; give one in 1-65535")
    host = f"[{address}]" if ":" in address else address
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(f"{host}:{port}")))
    except Exception as err:  # the SDK's core reports a failed bind as a plain exception
        raise InvalidInput(
            f"cannot serve metrics on {host}:{port} ({err}); "
            "choose another --metrics-port or --metrics-address"
        ) from err


# ---------------------------------------------------------------- workflow side


class SagaView(Protocol):
    """What ``saga_finished`` reads of ``workflows.saga.Saga``."""

    table: TableSpec
    operation: str
    updated_at: str
    bytes_written: int

    @property
    def item(self) -> str: ...

    @property
    def objects(self) -> tuple[str, ...]: ...

    @property
    def compensation(self) -> CleanupResult | None: ...

    @property
    def undone(self) -> str: ...


def saga_finished(saga: SagaView, outcome: str, failure: BaseException | None) -> None:
    """Count the saga's outcome and log it (and its compensation), once, in workflow code;
    ``failure`` is the step failure that decided it (None when it committed)."""
    info = workflow.info()
    error = error_name(failure)
    started = datetime.fromisoformat(saga.updated_at)
    fields: dict[str, Any] = {
        "event": "saga",
        "workflow_id": info.workflow_id,
        "run_id": info.run_id,
        "table": saga.table.table_name,
        "item": saga.item,
        "operation": saga.operation,
        "outcome": outcome,
        "duration_s": round((workflow.now() - started).total_seconds(), 3),
        "bytes_written": saga.bytes_written,
    }
    if error:
        fields["error"] = error
    level = outcome_level(outcome, failure)
    meter = workflow.metric_meter()
    if outcome == "compensated":
        meter.create_counter(COMPENSATIONS, DESCRIPTIONS[COMPENSATIONS]).add(
            1, {"operation": saga.operation}
        )
        done = saga.compensation or CleanupResult()
        counts = {
            "objects": len(saga.objects),
            "deleted": len(done.deleted),
            "missing": len(done.missing),
            "kept": len(done.kept),
        }
        saga_log.log(
            level,
            "%s %s: compensation %s",
            info.workflow_id,
            saga.operation,
            saga.undone,
            extra={"saga": {**fields, "event": "compensation", **counts}},
        )
    meter.create_counter(SAGAS, DESCRIPTIONS[SAGAS]).add(
        1, {"operation": saga.operation, "outcome": outcome}
    )
    saga_log.log(
        level,
        "%s %s: %s%s in %.3f s",
        info.workflow_id,
        saga.operation,
        outcome,
        f" ({error})" if error else "",
        fields["duration_s"],
        extra={"saga": fields},
    )


def pivot_settled(operation: str, committed: bool) -> None:
    """Count a settled pivot, in workflow code (nothing is recorded on replay): many with
    committed="true" mean pivot responses get lost after DynamoDB applied the write."""
    workflow.metric_meter().create_counter(SETTLED_PIVOTS, DESCRIPTIONS[SETTLED_PIVOTS]).add(
        1, {"operation": operation, "committed": "true" if committed else "false"}
    )


def step_error(err: BaseException | None) -> BaseException | None:
    """What failed a saga's step, under the ActivityError(s) Temporal wraps it in."""
    while isinstance(err, (ActivityError, ChildWorkflowError)):
        err = err.cause
    return None if err is None else our_error(err)


def error_name(err: BaseException | None) -> str:
    cause = step_error(err)
    if cause is None:
        return ""
    return (cause.type if isinstance(cause, ApplicationError) else None) or type(cause).__name__


def outcome_level(outcome: str, err: BaseException | None) -> int:
    """INFO for what sagas are for: committed, cancelled, or a verdict on the item or the
    input (ItemAlreadyExists, VersionConflict...). WARNING for what needs an operator."""
    cause = step_error(err)
    if outcome in ("committed", "cancelled") or (cause and is_cancelled_exception(cause)):
        return logging.INFO
    if isinstance(cause, BUSINESS_ERRORS) and not isinstance(cause, NEEDS_AN_OPERATOR):
        return logging.INFO
    return logging.WARNING


# ---------------------------------------------------------------- activity side


def count(name: str, value: int, **attributes: str) -> None:
    """Add to one of our activity counters (the activity's meter adds namespace, task
    queue and activity type)."""
    if value > 0:
        activity.metric_meter().create_counter(name, DESCRIPTIONS[name]).add(value, attributes)


class BusinessErrorsAreBenign(Interceptor):
    """Raise our business verdicts from activities as BENIGN ``ApplicationError``s, so the
    SDK does not log "Completing activity as failed" as a WARNING with a traceback for an
    item that already exists (``largeattr.failures.application_error``). The saga logs
    the verdict itself, at INFO, as its outcome."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Benign(next)


class _Benign(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except BUSINESS_ERRORS as err:
            raise application_error(err) from err.__cause__


# ---------------------------------------------------------------- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the saga's fields (or
    the workflow / activity the line comes from), and a traceback only when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        saga = getattr(record, "saga", None)
        if isinstance(saga, Mapping):
            line.update(saga)
        else:
            for context in ("temporal_workflow", "temporal_activity"):
                details = getattr(record, context, None)
                if isinstance(details, Mapping):
                    line.update({k: v for k, v in details.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


LOG_FORMATS = ("text", "json")


def configure_logging(log_format: str = "text") -> None:
    """The worker's logging: text lines on stderr, or JSON lines on stdout."""
    if log_format == "json":
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            force=True,
        )
    logging.getLogger("botocore").setLevel(logging.WARNING)
