"""largeattr: durable sagas on Temporal for DynamoDB items whose large attributes live in S3.

The public API:

* ``LargeAttrTable``: declare a table once (keys, large attributes, bucket, prefix).
* ``LargeAttrClient``: create / update / delete (each a saga workflow) and read items.
* ``Storage``: the same steps without Temporal (pynamodb_mate's step-by-step API).
* errors: ``ItemAlreadyExists``, ``ItemNotFound``, ``VersionConflict``, ``ItemBusy``...
"""

from largeattr.client import Blob, LargeAttrClient
from largeattr.config import AwsConfig
from largeattr.errors import (
    AccessDenied,
    BlobTooLarge,
    BucketNotFound,
    CorruptObject,
    InvalidInput,
    InvalidKey,
    ItemAlreadyExists,
    ItemBusy,
    ItemNotFound,
    ItemTooLarge,
    LargeAttrError,
    SagaFailed,
    SourceUnavailable,
    TableNotFound,
    UnknownAttribute,
    VersionConflict,
)
from largeattr.messages import ItemResult, S3Options, SagaOptions
from largeattr.read import BlobRef, Item
from largeattr.storage import Storage
from largeattr.table import LargeAttrTable
from largeattr.transfer import TransferConfig

__all__ = [
    "AccessDenied",
    "AwsConfig",
    "Blob",
    "BlobRef",
    "BlobTooLarge",
    "BucketNotFound",
    "CorruptObject",
    "InvalidInput",
    "InvalidKey",
    "Item",
    "ItemAlreadyExists",
    "ItemBusy",
    "ItemNotFound",
    "ItemResult",
    "ItemTooLarge",
    "LargeAttrClient",
    "LargeAttrError",
    "LargeAttrTable",
    "S3Options",
    "SagaFailed",
    "SagaOptions",
    "SourceUnavailable",
    "Storage",
    "TableNotFound",
    "TransferConfig",
    "UnknownAttribute",
    "VersionConflict",
]
