"""Invariant checks shared by the fault, concurrency and bad-input scenarios.

After every scenario: no dangling reference, no orphan (unless the scenario itself made
one on purpose, outside largeattr) and no drift between the items and their last
committed saga.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError
from temporalio.client import Client

from largeattr import LargeAttrTable, Storage
from largeattr.check import CheckReport, Drift, check_drift, check_storage
from largeattr.table import KeyInput
from tests.conftest import object_keys, open_uploads
from tests.faults import Faults


@dataclass
class Tally:
    """What the scenarios of one test module did, for its summary line."""

    faults: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    dangling: int = 0
    orphans: int = 0
    drift: int = 0

    def record_rules(self, faults: Faults) -> None:
        for rule in faults.rules:
            if not rule.hits or rule.operation == "*":  # "*": the random rules count their own
                continue
            if rule.error is not None:
                error = rule.error()
                kind = (
                    error.response["Error"]["Code"]
                    if isinstance(error, ClientError)
                    else type(error).__name__
                )
                kind = f"{kind} ({'response lost' if rule.phase == 'after' else 'not sent'})"
            elif rule.delay:
                kind = "stall"
            elif rule.action is not None:
                kind = "racing direct write"
            else:
                continue  # a counter, not a fault
            self.faults[kind] += rule.hits

    def reset(self) -> None:
        self.faults.clear()
        self.checks = self.dangling = self.orphans = self.drift = 0

    def summary(self, name: str) -> str:
        return (
            f"{name}: {sum(self.faults.values())} faults injected {dict(self.faults)}; "
            f"{self.checks} invariant checks: dangling={self.dangling} orphans={self.orphans} "
            f"drift={self.drift} (beyond those a scenario made on purpose)"
        )


TALLY = Tally()


async def drift_of(
    s3: Any, dynamodb: Any, temporal: Client, table: LargeAttrTable, keys: Iterable[KeyInput]
) -> list[Drift]:
    """check_drift, given a few seconds for the visibility store to see closed runs."""
    storage = Storage(s3, dynamodb)
    item_keys = [table.key(k) for k in keys]
    drift: list[Drift] = []
    for _ in range(20):
        drift = await check_drift(storage, table.spec, temporal, item_keys)
        if not any("still running" in d.reason for d in drift):
            return drift
        await asyncio.sleep(0.5)
    return drift


async def assert_invariants(
    s3: Any,
    dynamodb: Any,
    temporal: Client,
    table: LargeAttrTable,
    keys: Iterable[KeyInput],
    *,
    expected_orphans: Iterable[str] = (),
) -> CheckReport:
    """No dangling reference, no orphan but the expected ones, no drift for ``keys``."""
    report = check_storage(Storage(s3, dynamodb), table.spec)
    expected = set(expected_orphans)
    TALLY.checks += 1
    TALLY.dangling += len(report.dangling)
    TALLY.orphans += len([o for o in report.orphans if o.key not in expected])
    assert report.dangling == [], "\n".join(report.lines())
    assert {o.key for o in report.orphans} == expected, "\n".join(report.lines())
    drift = await drift_of(s3, dynamodb, temporal, table, keys)
    TALLY.drift += len(drift)
    assert drift == [], drift
    return report


def scan_table(dynamodb: Any, table: LargeAttrTable) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table.table_name, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=repr)


@contextlib.contextmanager
def nothing_written(s3: Any, dynamodb: Any, *tables: LargeAttrTable) -> Iterator[None]:
    """Like ``no_change`` but for whole tables, so it also holds when the key is invalid."""
    before = [(scan_table(dynamodb, t), object_keys(s3, t)) for t in tables]
    yield
    for table, (items, objects) in zip(tables, before, strict=True):
        assert scan_table(dynamodb, table) == items, f"{table.table_name}: items changed"
        assert object_keys(s3, table) == objects, f"{table.table_name}: objects changed"
        assert open_uploads(s3, table) == [], f"{table.table_name}: a multipart upload is open"


async def terminate_if_running(temporal: Client, workflow_id: str) -> bool:
    """Stop a saga a failed test left running (so it does not retry for the whole session)."""
    handle = temporal.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except Exception:
        return False
    if description.status is not None and description.status.name == "RUNNING":
        await handle.terminate("left running by a test")
        return True
    return False


# ------------------------------------------------------------------ fixtures for the tally
# Import both into a test module to get its summary (printed at the module's end; shown
# with -s, and appended to the file named by LARGEATTR_TALLY if that is set).


@pytest.fixture(autouse=True)
def tally_faults(faults: Faults) -> Iterator[None]:
    yield
    TALLY.record_rules(faults)


@pytest.fixture(scope="module", autouse=True)
def tally_module(request: pytest.FixtureRequest) -> Iterator[None]:
    TALLY.reset()
    yield
    line = TALLY.summary(request.module.__name__)
    print(f"\n{line}")
    if os.environ.get("LARGEATTR_TALLY"):
        with open(os.environ["LARGEATTR_TALLY"], "a") as out:
            out.write(line + "\n")
