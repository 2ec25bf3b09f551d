"""Temporal workflow definitions: the create / update / delete sagas.

Deterministic, no I/O, no clocks but the workflow's own: every S3 and DynamoDB call is an
activity (``activities/``).
"""

from largeattr.workflows.create import CreateItemWorkflow
from largeattr.workflows.delete import DeleteItemWorkflow
from largeattr.workflows.reconcile import CleanItemWorkflow, ReconcileWorkflow
from largeattr.workflows.update import UpdateItemWorkflow

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
