"""Temporal workflow definitions: the create / update / delete sagas.

Deterministic, no I/O, no clocks but the workflow's own: every S3 and DynamoDB call is an
activity (``activities/``).
"""

from workflows.create import CreateItemWorkflow
from workflows.delete import DeleteItemWorkflow
from workflows.reconcile import CleanItemWorkflow, ReconcileWorkflow
from workflows.update import UpdateItemWorkflow

ALL_WORKFLOWS = [
    CreateItemWorkflow,
    UpdateItemWorkflow,
    DeleteItemWorkflow,
    ReconcileWorkflow,
    CleanItemWorkflow,
]

__all__ = [
    "ALL_WORKFLOWS",
    "CleanItemWorkflow",
    "CreateItemWorkflow",
    "DeleteItemWorkflow",
    "ReconcileWorkflow",
    "UpdateItemWorkflow",
]
