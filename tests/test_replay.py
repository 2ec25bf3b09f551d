"""Saved histories replay against today's workflow code (no server: the Replayer runs alone).

A change to a workflow that would break the sagas already running in production fails
here; see tests/histories/README.md.
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
from tests.record_histories import HISTORIES, KINDS, WORKFLOW_IDS, mismatch, workflow_type

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


def test_every_kind_is_recorded() -> None:
    assert {p.stem for p in FILES} == set(KINDS)


def test_histories_cover_every_workflow_type() -> None:
    # temporalio has no public accessor for a class's workflow name.
    names = {workflow._Definition.must_from_class(cls).name for cls in ALL_WORKFLOWS}
    assert names <= {workflow_type(load(p)) for p in FILES}


@workflow.defn(name="largeattr.DeleteItem")
class DeleteThatSkipsItsRead:
    """A delete saga changed without ``workflow.patched``: the replay must catch it."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> None:
        await workflow.wait_condition(lambda: False)


async def test_a_changed_workflow_fails_replay() -> None:
    # Unsandboxed: the sandbox would re-import this test module, which reads files.
    replayer = Replayer(
        workflows=[DeleteThatSkipsItsRead], workflow_runner=UnsandboxedWorkflowRunner()
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES / "delete.json"))
