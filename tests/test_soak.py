"""Soak: thousands of mixed operations on many items while worker processes are SIGKILLed.

Two real worker processes serve the sagas; a killer SIGKILLs one at random every few
seconds and starts a replacement. A model of every item (what its last committed saga
wrote) is kept from the results. Meanwhile a few other items get bursts of concurrent
updates (``on_busy="wait"``, no expected version): every one must commit, each at a
version of its own. At the end the table must match the model exactly, and the checker
must find no dangling reference, no drift and no orphan, before reconcile as after it.

    .venv/bin/python -m pytest -m faults tests/test_soak.py -s
    SOAK_OPS=2000 SOAK_ITEMS=200 SOAK_RACE_ITEMS=4 SOAK_RACE_WRITERS=5 (defaults) SOAK_SEED=1
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from largeattr import (
    AwsConfig,
    ItemAlreadyExists,
    ItemNotFound,
    LargeAttrClient,
    LargeAttrTable,
    Storage,
    VersionConflict,
)
from largeattr.check import check_drift, check_storage

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Model:
    """What the last committed saga left for one item (None: absent)."""

    version: int = 0
    saga_id: str = ""
    blobs: dict[str, str] = field(default_factory=dict)  # attribute -> sha256
    exists: bool = False


@dataclass
class Race:
    """An item updated by bursts of concurrent writers: what each committed update returned."""

    committed: dict[int, tuple[str, str]] = field(default_factory=dict)  # version -> saga, sha
    duplicates: list[int] = field(default_factory=list)  # versions returned twice: a lost update


class Workers:
    """Worker processes on one task queue, killed and replaced at random."""

    def __init__(self, address: str, aws: AwsConfig, queue: str, log_dir: Path) -> None:
        self.address, self.aws, self.queue, self.log_dir = address, aws, queue, log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.kills = 0
        self.started = 0

    def start_one(self) -> None:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        log = open(self.log_dir / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        self.processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "worker.py",
                    "--address",
                    self.address,
                    "--aws-endpoint-url",
                    str(self.aws.endpoint_url),
                    "--task-queue",
                    self.queue,
                    "--shutdown-grace",
                    "1",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self.started += 1

    def kill_one(self, rng: random.Random) -> None:
        alive = [p for p in self.processes if p.poll() is None]
        if not alive:
            return
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kills += 1
        self.processes.remove(victim)

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            process.wait()


def blob(rng: random.Random) -> bytes:
    size = rng.choice([0, 40, 900, 5_000, 60_000, 300_000])
    seed = rng.getrandbits(64).to_bytes(8, "big")
    return (hashlib.sha256(seed).digest() * (size // 32 + 1))[:size]


@pytest.mark.faults
@pytest.mark.timeout(3600)
async def test_soak_with_random_worker_kills(
    temporal: Client,
    temporal_address: str,
    aws: AwsConfig,
    new_table: Any,
    s3: Any,
    dynamodb: Any,
    tmp_path: Path,
) -> None:
    operations = int(os.environ.get("SOAK_OPS", "2000"))
    item_count = int(os.environ.get("SOAK_ITEMS", "200"))
    race_items = int(os.environ.get("SOAK_RACE_ITEMS", "4"))
    race_writers = int(os.environ.get("SOAK_RACE_WRITERS", "5"))
    seed = int(os.environ.get("SOAK_SEED", "1"))
    rng = random.Random(seed)
    race_rng = random.Random(seed + 1)  # its own, so the main sequence stays as it was
    table: LargeAttrTable = new_table()
    queue = f"soak-{table.table_name}"
    workers = Workers(temporal_address, aws, queue, tmp_path)
    for _ in range(2):
        workers.start_one()
    la = LargeAttrClient(temporal, task_queue=queue, aws=aws)
    models = {f"item-{i:03d}": Model() for i in range(item_count)}
    locks = {name: asyncio.Lock() for name in models}
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    done = asyncio.Event()
    races = {f"race-{i}": Race() for i in range(race_items)}
    for name in races:
        await la.create(table, name, blobs={"html": b"start"}, attributes={"hits": 0})

    async def race_update(name: str) -> None:
        value = blob(race_rng)
        try:
            result = await la.update(
                table, name, blobs={"html": value}, add={"hits": 1}, on_busy="wait"
            )
        except Exception as err:
            unexpected.append(f"{name} (race): {type(err).__name__}: {err}")
            return
        race = races[name]
        if result.version in race.committed:
            race.duplicates.append(result.version)
        race.committed[result.version] = (result.saga_id, hashlib.sha256(value).hexdigest())
        outcomes["race-update"] += 1

    async def racer() -> None:
        """Bursts of concurrent updates on one race item at a time, while workers die."""
        while races and not done.is_set():
            name = race_rng.choice(list(races))
            await asyncio.gather(*(race_update(name) for _ in range(race_writers)))

    async def killer() -> None:
        while not done.is_set():
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            if done.is_set():
                return
            workers.kill_one(rng)
            workers.start_one()

    async def one(index: int) -> None:
        name = rng.choice(list(models))
        roll = rng.random()
        async with locks[name]:
            model = models[name]
            try:
                if not model.exists:
                    data = {"html": blob(rng), "image": blob(rng)}
                    result = await la.create(table, name, blobs=data, attributes={"n": index})
                    model.exists, model.version = True, result.version
                    model.saga_id = result.saga_id
                    model.blobs = {a: hashlib.sha256(b).hexdigest() for a, b in data.items()}
                    outcomes["create"] += 1
                elif roll < 0.08:
                    with contextlib.suppress(ItemAlreadyExists):
                        await la.create(table, name, blobs={"html": b"dup"})
                        unexpected.append(f"{name}: create over an existing item succeeded")
                    outcomes["create-existing"] += 1
                elif roll < 0.14:
                    with contextlib.suppress(VersionConflict):
                        await la.update(
                            table, name, set={"stale": 1}, expected_version=model.version - 1
                        )
                        unexpected.append(f"{name}: stale update succeeded")
                    outcomes["stale-update"] += 1
                elif roll < 0.30:
                    await la.delete(table, name, expected_version=model.version)
                    models[name] = Model()
                    outcomes["delete"] += 1
                else:
                    attribute = rng.choice(["html", "image"])
                    value: bytes | None = None if roll > 0.95 else blob(rng)
                    result = await la.update(
                        table,
                        name,
                        blobs={attribute: value},
                        set={"n": index},
                        expected_version=model.version,
                    )
                    model.version, model.saga_id = result.version, result.saga_id
                    if value is None:
                        model.blobs.pop(attribute, None)
                    else:
                        model.blobs[attribute] = hashlib.sha256(value).hexdigest()
                    outcomes["update"] += 1
            except (ItemAlreadyExists, ItemNotFound, VersionConflict) as err:
                unexpected.append(f"{name}: {type(err).__name__}: {err}")
            except Exception as err:
                unexpected.append(f"{name}: {type(err).__name__}: {err}")

    started = time.monotonic()
    kill_task = asyncio.create_task(killer())
    race_task = asyncio.create_task(racer())
    semaphore = asyncio.Semaphore(24)

    async def bounded(index: int) -> None:
        async with semaphore:
            await one(index)

    try:
        await asyncio.gather(*(bounded(i) for i in range(operations)))
    finally:
        done.set()
        await kill_task
        await race_task
    elapsed = time.monotonic() - started

    # Let the surviving workers finish, then compare the table with the model.
    workers.start_one()
    try:
        mismatches = []
        for name, model in models.items():
            item = await la.get(table, name)
            if not model.exists:
                if item is not None:
                    mismatches.append(f"{name}: present, model says deleted")
                continue
            if item is None:
                mismatches.append(f"{name}: absent, model says version {model.version}")
                continue
            if (item.version, item.saga_id) != (model.version, model.saga_id):
                mismatches.append(f"{name}: {item.version}/{item.saga_id} != model")
            stored = {a: ref.sha256 for a, ref in item.blobs.items()}
            if stored != model.blobs:
                mismatches.append(f"{name}: blobs {stored} != {model.blobs}")
        for name, race in races.items():
            # No lost update: versions 2..n+1 each committed once, the last one is the item.
            count = len(race.committed) + len(race.duplicates)
            if sorted(race.committed) != list(range(2, count + 2)) or race.duplicates:
                mismatches.append(f"{name}: versions {sorted(race.committed)} {race.duplicates}")
            item = await la.get(table, name)
            if item is None:
                mismatches.append(f"{name}: absent after {count} concurrent updates")
                continue
            last_saga, last_sha = race.committed.get(count + 1, ("", ""))
            got = (item.version, item.saga_id, item.attributes.get("hits"))
            if got != (count + 1, last_saga, count) or item.blob("html").sha256 != last_sha:
                mismatches.append(f"{name}: {got} != {(count + 1, last_saga, count)}")
        storage = Storage(s3, dynamodb)
        report = check_storage(storage, table.spec)
        all_keys = [table.key(n) for n in [*models, *races]]
        drift = await check_drift(storage, table.spec, temporal, all_keys)
        orphans_before = len(report.orphans)
        reconciled = await la.reconcile(table, grace_seconds=0, upload_grace_seconds=0)
        after = check_storage(storage, table.spec)
    finally:
        await la.close()
        workers.stop()

    print(
        f"\nSOAK ops={operations} items={item_count} seconds={elapsed:.0f} "
        f"kills={workers.kills} outcomes={dict(outcomes)} unexpected={len(unexpected)} "
        f"race_items={race_items}x{race_writers} "
        f"mismatches={len(mismatches)} dangling={len(report.dangling)} drift={len(drift)} "
        f"orphans_before_reconcile={orphans_before} reconciled={reconciled.objects_deleted} "
        f"uploads_aborted={reconciled.uploads_aborted} orphans_after={len(after.orphans)}"
    )
    assert unexpected == [], unexpected[:10]
    assert mismatches == [], mismatches[:10]
    assert report.dangling == [], report.dangling[:10]
    assert drift == [], drift[:10]
    # Every saga finished (done or compensated) before the check: nothing for reconcile.
    assert orphans_before == 0, list(report.lines())[:10]
    assert (reconciled.orphans_found, reconciled.objects_deleted) == (0, 0), reconciled
    assert reconciled.uploads_aborted == 0, reconciled
    assert after.ok(), list(after.lines())[:10]
    assert workers.kills >= 3
    assert sum(outcomes.values()) - outcomes["race-update"] == operations
    if races:
        assert outcomes["race-update"] >= race_writers, "the same-item race did not run"
