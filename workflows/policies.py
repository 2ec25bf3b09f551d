"""Retry policies and timeouts of the saga steps, in one place.

Before and at the pivot a business error (``ItemAlreadyExists``, ``VersionConflict``...) is
final and the saga compensates; transient AWS errors retry with backoff. After the pivot
nothing is final: clean-up is retried until it succeeds.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from largeattr.errors import BUSINESS_ERROR_NAMES

#: Steps before the pivot, and the pivot.
BEFORE_PIVOT = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=list(BUSINESS_ERROR_NAMES),
)
#: Reading a one-pass stream cannot be repeated once it has started.
ONE_PASS = RetryPolicy(maximum_attempts=1)
#: After the pivot, and compensation: retried until done; never fails the saga. The
#: interval stays short (a step of several calls, each of which may fail once, must not wait
#: a minute per failure) and, for local activities, under the SDK's local retry threshold
#: (1 min): the worker waits in process, the workflow task heartbeating meanwhile.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)

# Each attempt is bounded tightly: a worker that dies mid-activity is only noticed when the
# attempt times out, so these bound how long a crash stalls a saga.
DYNAMODB_CALL = timedelta(seconds=10)
#: The pivot's attempts outlast the worker's whole DynamoDB call, botocore retries included
#: (``AwsConfig.dynamodb_call_bound``, 20 s by default): when an attempt has timed out, its
#: write is no longer on the wire, so reading the item tells whether the pivot committed.
PIVOT_CALL = timedelta(seconds=30)
SMALL_UPLOAD = timedelta(seconds=30)
CLEAN_UP = timedelta(seconds=30)
LARGE_TRANSFER = timedelta(hours=12)
TRANSFER_HEARTBEAT = timedelta(seconds=30)
#: A blob held by a client process: if nobody serves its queue this long, the client is
#: gone and the saga compensates (a Schedule-To-Start timeout is never retried).
CLIENT_PICKUP = timedelta(seconds=60)
#: Reconcile: one page of the listing, and one item's orphans.
RECONCILE_PAGE = timedelta(minutes=10)
RECONCILE_ITEM = timedelta(minutes=5)
#: Reconcile, batched pass: a few listing pages with their batched reads and deletes.
RECONCILE_CHUNK = timedelta(minutes=10)
RECONCILE_HEARTBEAT = timedelta(seconds=60)

#: An activity that may write is waited for when the saga is cancelled; cancelling it
#: blindly would let it commit after compensation ran.
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
