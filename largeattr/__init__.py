"""largeattr: durable sagas on Temporal for DynamoDB items whose large attributes live in S3.

The public API:

* ``LargeAttrTable``: declare a table once (keys, large attributes, bucket, prefix).
* ``LargeAttrClient``: create / update / delete (each a saga workflow) and read items.
* ``Storage``: the same steps without Temporal (pynamodb_mate's step-by-step API).
* errors: ``ItemAlreadyExists``, ``ItemNotFound``, ``VersionConflict``, ``ItemBusy``...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from largeattr.client import Blob, LargeAttrClient
    from largeattr.config import AwsConfig
    from largeattr.errors import (
        AccessDenied,
        BlobTooLarge,
        BucketNotFound,
        CorruptObject,
        DanglingReference,
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
    from largeattr.transfer.config import TransferConfig

# Imported on first use, so that importing a submodule (the workflow sandbox imports
# largeattr.workflows for every run) does not load boto3 and the client.
_EXPORTS = {
    "AccessDenied": "largeattr.errors",
    "AwsConfig": "largeattr.config",
    "Blob": "largeattr.client",
    "BlobRef": "largeattr.read",
    "BlobTooLarge": "largeattr.errors",
    "BucketNotFound": "largeattr.errors",
    "CorruptObject": "largeattr.errors",
    "DanglingReference": "largeattr.errors",
    "InvalidInput": "largeattr.errors",
    "InvalidKey": "largeattr.errors",
    "Item": "largeattr.read",
    "ItemAlreadyExists": "largeattr.errors",
    "ItemBusy": "largeattr.errors",
    "ItemNotFound": "largeattr.errors",
    "ItemResult": "largeattr.messages",
    "ItemTooLarge": "largeattr.errors",
    "LargeAttrClient": "largeattr.client",
    "LargeAttrError": "largeattr.errors",
    "LargeAttrTable": "largeattr.table",
    "S3Options": "largeattr.messages",
    "SagaFailed": "largeattr.errors",
    "SagaOptions": "largeattr.messages",
    "SourceUnavailable": "largeattr.errors",
    "Storage": "largeattr.storage",
    "TableNotFound": "largeattr.errors",
    "TransferConfig": "largeattr.transfer.config",
    "UnknownAttribute": "largeattr.errors",
    "VersionConflict": "largeattr.errors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'largeattr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccessDenied",
    "AwsConfig",
    "Blob",
    "BlobRef",
    "BlobTooLarge",
    "BucketNotFound",
    "CorruptObject",
    "DanglingReference",
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
