"""Temporal workflow definitions: the create / update / delete / adopt sagas.

Deterministic, no I/O, no clocks but the workflow's own: every S3 and DynamoDB call is an
activity (``activities/``).
"""

from largeattr.workflows.adopt import AdoptItemWorkflow
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
    AdoptItemWorkflow,
]

__all__ = [
    "ALL_WORKFLOWS",
    "AdoptItemWorkflow",
    "CleanItemWorkflow",
    "CreateItemWorkflow",
    "DeleteItemWorkflow",
    "ReconcileWorkflow",
    "UpdateItemWorkflow",
]
