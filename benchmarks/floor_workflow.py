"""The engine's floor for saga_bench.py: a workflow with no activity at all.

One run costs one workflow task: what any saga pays before its first step. It is served by a
worker process of its own (``saga_bench.py _floor_worker``); this module stays tiny because a
sandboxed worker imports it again for every run.
"""

from __future__ import annotations

from temporalio import workflow


@workflow.defn(name="bench.Empty")
class EmptyWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return name
