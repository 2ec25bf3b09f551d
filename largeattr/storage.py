"""Every S3 and DynamoDB call of the sagas, as plain synchronous methods.

This is pynamodb_mate's "step-by-step API": usable without Temporal, and exactly the code
the activities in ``activities/`` call. ``Storage`` puts together its three parts, each
idempotent so that a retried activity (or a retried botocore call whose response was
lost) cannot do harm:

* ``storage.items`` (``largeattr.items``): DynamoDB reads and the conditional pivots;
* ``storage.blobs`` (``largeattr.blobs``): blob bytes written to S3, never overwriting;
* ``storage.cleanup`` (``largeattr.cleanup``): deletes of what no item references.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from largeattr.blobs import Blobs
from largeattr.cleanup import Cleanup
from largeattr.items import Items
from largeattr.transfer.config import TransferConfig

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client


class Storage:
    """S3 + DynamoDB steps of the sagas, on injected boto3 clients."""

    def __init__(
        self,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        transfer: TransferConfig | None = None,
    ) -> None:
        self.s3 = s3
        self.dynamodb = dynamodb
        self.items = Items(dynamodb)
        self.blobs = Blobs(s3, transfer or TransferConfig())
        self.cleanup = Cleanup(s3, self.items)


__all__ = ["Storage"]
