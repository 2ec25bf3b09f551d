"""Errors a user can catch. Each message says what to do next.

The same names travel through Temporal as the ``type`` of an ``ApplicationError``, so an
error raised by an activity in the worker comes back to the caller as the same class.
"""

from __future__ import annotations

from typing import Any


class LargeAttrError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def type_name(self) -> str:
        return type(self).__name__


class InvalidInput(LargeAttrError, ValueError):
    """The request is malformed; fix the input and try again. Nothing was written."""


class InvalidKey(InvalidInput):
    """A key value cannot be stored (empty, too long, wrong type)."""


class UnknownAttribute(InvalidInput):
    """A large attribute name that the table does not declare."""


class ItemTooLarge(InvalidInput):
    """The item would exceed DynamoDB's 400 KB limit."""


class BlobTooLarge(InvalidInput):
    """A blob is larger than S3 accepts, or larger than allowed by configuration."""


class ItemAlreadyExists(LargeAttrError):
    """Create found an item with this key. Use update, or create with overwrite=True."""


class ItemNotFound(LargeAttrError):
    """Update or delete found no item with this key."""


class VersionConflict(LargeAttrError):
    """The item changed since the version the caller expected. Re-read it and retry."""


class ItemBusy(LargeAttrError):
    """Another operation on this item is running. Retry later, or pass on_busy='wait'."""


class TableNotFound(LargeAttrError):
    """The DynamoDB table does not exist. Create it (``largeattr setup``) or fix the name."""


class BucketNotFound(LargeAttrError):
    """The S3 bucket does not exist. Create it (``largeattr setup``) or fix the name."""


class AccessDenied(LargeAttrError):
    """AWS refused the credentials or the permission. Check the credential chain and IAM."""


class SourceUnavailable(LargeAttrError):
    """The process that held a blob's bytes is gone, or the file cannot be read."""


class CorruptObject(LargeAttrError):
    """An S3 object's bytes do not match the checksum recorded for them."""


class DanglingReference(LargeAttrError):
    """An item references an S3 object that does not exist (deleted outside largeattr).
    Run ``largeattr check`` to list every such reference, then rewrite or delete the item."""


class UndecryptablePayload(LargeAttrError):
    """A payload is encrypted with a key this process's codec keyring lacks or does not
    match (largeattr.codec). Add the key that encrypted it back to the keyring."""


class SagaFailed(LargeAttrError):
    """A saga failed for a reason without a more specific class; its cause is attached."""


#: Errors that are a verdict, not a glitch: retrying the same call cannot succeed.
BUSINESS_ERRORS: tuple[type[LargeAttrError], ...] = (
    InvalidInput,
    InvalidKey,
    UnknownAttribute,
    ItemTooLarge,
    BlobTooLarge,
    ItemAlreadyExists,
    ItemNotFound,
    VersionConflict,
    TableNotFound,
    BucketNotFound,
    AccessDenied,
    SourceUnavailable,
    CorruptObject,
)

BUSINESS_ERROR_NAMES: tuple[str, ...] = tuple(cls.__name__ for cls in BUSINESS_ERRORS)

_BY_NAME: dict[str, type[LargeAttrError]] = {
    cls.__name__: cls for cls in (*BUSINESS_ERRORS, ItemBusy, SagaFailed)
}


def error_class(type_name: str | None) -> type[LargeAttrError] | None:
    """The error class whose name travelled as an ApplicationError type, if it is ours."""
    return _BY_NAME.get(type_name or "")
