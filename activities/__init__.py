"""Temporal activities: every S3 and DynamoDB call of the sagas, each one idempotent."""

from largeattr.activities.saga import SagaActivities

__all__ = ["SagaActivities"]
