"""Saved histories replay against today's workflow code (no server: the Replayer runs alone).

A change to a workflow that would break the sagas already running in production fails
here; see tests/histories/README.md. Every history replays in the SDK's sandbox (the
default) and without it (``worker.py``'s default; ``--sandboxed`` turns it on): a worker may
run either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from largeattr.workflows import ALL_WORKFLOWS
from tests.record_histories import (
    HISTORIES,
    KINDS,
    RECORDED,
    SAGAS,
    WORKFLOW_IDS,
    mismatch,
    took_fast_path,
    workflow_type,
)

pytestmark = pytest.mark.unit

FILES = sorted(p for p in HISTORIES.glob("*.json") if p != WORKFLOW_IDS)


def load(path: Path) -> WorkflowHistory:
    workflow_id = json.loads(WORKFLOW_IDS.read_text())[path.stem]
    return WorkflowHistory.from_json(workflow_id, path.read_text())


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_history_replays(path: Path) -> None:
    history = load(path)
    assert mismatch(path.stem, history) is None
    result = await Replayer(workflows=ALL_WORKFLOWS).replay_workflow(history)
    assert result.replay_failure is None


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_history_replays_unsandboxed(path: Path) -> None:
    replayer = Replayer(workflows=ALL_WORKFLOWS, workflow_runner=UnsandboxedWorkflowRunner())
    result = await replayer.replay_workflow(load(path))
    assert result.replay_failure is None


def test_every_kind_is_recorded() -> None:
    assert {p.stem for p in FILES} == set(KINDS)


def test_histories_cover_every_workflow_type() -> None:
    # temporalio has no public accessor for a class's workflow name.
    names = {workflow._Definition.must_from_class(cls).name for cls in ALL_WORKFLOWS}
    assert names <= {workflow_type(load(p)) for p in FILES}


def test_every_saga_kind_is_recorded_on_both_paths() -> None:
    """Each saga kind recorded before the fast path has a fast_ twin on disk, the same
    workflow, that took the patch; the other workflows' kinds have none (no patch there)."""
    recorded = {p.stem: load(p) for p in FILES}
    old = {name for name, h in recorded.items() if not took_fast_path(h)}
    sagas = {name for name in old if workflow_type(recorded[name]) in SAGAS}
    assert {workflow_type(recorded[name]) for name in sagas} == set(SAGAS)
    born_fast = {"adopt_item"}  # a workflow written after the fast path: no old twin
    fast = set(recorded) - old - born_fast
    recorded_fast = {name for name in RECORDED if name.startswith("fast_")}
    assert {f"fast_{name}" for name in sagas} == fast == recorded_fast
    for name in sagas:
        twin = recorded[f"fast_{name}"]
        assert workflow_type(twin) == workflow_type(recorded[name])
        assert took_fast_path(twin)


@workflow.defn(name="largeattr.DeleteItem")
class DeleteThatSkipsItsRead:
    """A delete saga changed without ``workflow.patched``: the replay must catch it."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> None:
        await workflow.wait_condition(lambda: False)


@pytest.mark.parametrize("name", ["delete", "fast_delete"])
async def test_a_changed_workflow_fails_replay(name: str) -> None:
    # Unsandboxed: the sandbox would re-import this test module, which reads files.
    replayer = Replayer(
        workflows=[DeleteThatSkipsItsRead], workflow_runner=UnsandboxedWorkflowRunner()
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES / f"{name}.json"))


@pytest.mark.parametrize("name", sorted(n for n in KINDS if f"fast_{n}" in KINDS))
def test_the_kind_check_tells_the_paths_apart(name: str) -> None:
    assert mismatch(name, load(HISTORIES / f"fast_{name}.json")) is not None
    assert mismatch(f"fast_{name}", load(HISTORIES / f"{name}.json")) is not None
