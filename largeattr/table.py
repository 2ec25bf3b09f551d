"""Declaring a table once: the role pynamodb_mate's model class plays.

    docs = LargeAttrTable(
        table_name="documents", partition_key="pk",
        large_attributes=("html", "image"), bucket="my-bucket", prefix="documents",
    )

The declaration is checked when it is made, so a typo fails before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from largeattr import dynamo, keys
from largeattr.errors import InvalidInput, InvalidKey, UnknownAttribute
from largeattr.messages import AttributeValue, ItemKey, SagaOptions, TableSpec

#: A key value as users pass it.
KeyValue = str | int | Decimal | bytes
#: A whole key as users pass it: the partition key value, (pk, sk), or {name: value}.
KeyInput = KeyValue | tuple[KeyValue, KeyValue] | Mapping[str, KeyValue]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


@dataclass(frozen=True)
class LargeAttrTable:
    """A DynamoDB table whose ``large_attributes`` are stored in S3."""

    table_name: str
    partition_key: str
    large_attributes: Sequence[str]
    bucket: str
    prefix: str
    sort_key: str | None = None
    #: Replaceable key function (see ``largeattr.keys``); None: the default scheme.
    key_template: str | None = None
    version_attribute: str = "la_version"
    #: Default switches for this table's sagas (each call may override them).
    options: SagaOptions = field(default_factory=SagaOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "large_attributes", tuple(self.large_attributes))
        # "/docs/" and "docs" name one folder; an inner "//" is refused (keys.check_prefix).
        object.__setattr__(self, "prefix", self.prefix.strip("/"))
        if not _TABLE.match(self.table_name):
            raise InvalidInput(
                f"{self.table_name!r} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
            )
        if not _BUCKET.match(self.bucket):
            raise InvalidInput(f"{self.bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        keys.check_prefix(self.prefix)
        if not self.large_attributes:
            raise InvalidInput("declare at least one large attribute")
        names = [self.partition_key, *([self.sort_key] if self.sort_key else [])]
        for name in [*names, *self.large_attributes, self.version_attribute]:
            if not isinstance(name, str) or not name:
                raise InvalidInput("attribute names must be non-empty strings")
        if len(set(self.large_attributes)) != len(self.large_attributes):
            raise InvalidInput(f"large attributes {self.large_attributes} repeat a name")
        for name in self.large_attributes:
            if name in names:
                raise InvalidInput(
                    f"{name!r} is a key attribute; a key cannot be a large attribute"
                )
            if name in dynamo.bookkeeping_attributes(self.spec):
                raise InvalidInput(f"{name!r} is reserved for largeattr's bookkeeping")
        keys.validate_template(self.spec)

    @property
    def spec(self) -> TableSpec:
        """The table as it travels to the worker (data only)."""
        return TableSpec(
            table_name=self.table_name,
            partition_key=self.partition_key,
            bucket=self.bucket,
            prefix=self.prefix,
            large_attributes=tuple(self.large_attributes),
            sort_key=self.sort_key,
            key_template=self.key_template,
            version_attribute=self.version_attribute,
        )

    # ------------------------------------------------------------------ keys

    def key(self, key: KeyInput) -> ItemKey:
        """Validate and convert a key: ``"id-1"``, ``("a", 2)`` or ``{"pk": "a", "sk": 2}``."""
        if isinstance(key, Mapping):
            extra = set(key) - {self.partition_key, self.sort_key}
            if extra:
                raise InvalidKey(
                    f"{sorted(extra)} are not key attributes of {self.table_name}; the key is "
                    f"{self._key_names()}"
                )
            pk = key.get(self.partition_key)
            sk = key.get(self.sort_key) if self.sort_key else None
        elif isinstance(key, tuple):
            if len(key) != 2 or not self.sort_key:
                raise InvalidKey(f"the key of {self.table_name} is {self._key_names()}")
            pk, sk = key
        else:
            pk, sk = key, None
        if pk is None:
            raise InvalidKey(f"the key needs {self.partition_key!r}")
        if self.sort_key and sk is None:
            raise InvalidKey(
                f"{self.table_name} has a sort key; give ({self.partition_key}, "
                f"{self.sort_key}) or a dict with both"
            )
        if not self.sort_key and sk is not None:
            raise InvalidKey(f"{self.table_name} has no sort key")
        item_key = {self.partition_key: _key_value(self.partition_key, pk, 2048)}
        if self.sort_key:
            item_key[self.sort_key] = _key_value(self.sort_key, sk, 1024)
        for attribute in self.large_attributes:
            keys.object_key(self.spec, item_key, attribute, "0" * 64)  # raises if too long
        keys.workflow_id(self.spec, item_key)
        return item_key

    def _key_names(self) -> str:
        return f"({self.partition_key}, {self.sort_key})" if self.sort_key else self.partition_key

    def workflow_id(self, key: KeyInput) -> str:
        return keys.workflow_id(self.spec, self.key(key))

    # ------------------------------------------------------------------ attributes

    def check_blob_names(self, names: Sequence[str]) -> None:
        check_blob_names(self.spec, names)

    def attributes(self, values: Mapping[str, Any] | None, what: str) -> dict[str, AttributeValue]:
        """Validate plain attributes (not keys, not large, not bookkeeping) and convert them."""
        out: dict[str, AttributeValue] = {}
        for name, value in (values or {}).items():
            self.check_plain_name(name, what)
            out[name] = dynamo.to_wire(value)
        return out

    def check_plain_name(self, name: str, what: str) -> None:
        check_plain_name(self.spec, name, what)


# ---------------------------------------------------------------- checks on the wire form
# The client runs these on what users pass; the sagas run them again on their input, since
# a saga can also be started with a plain Temporal client.


def check_blob_names(spec: TableSpec, names: Sequence[str]) -> None:
    for name in names:
        if name not in spec.large_attributes:
            raise UnknownAttribute(
                f"{name!r} is not a large attribute of {spec.table_name}; declared: "
                f"{list(spec.large_attributes)}. Pass other attributes as attributes="
            )
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise InvalidInput(f"large attributes given more than once: {repeated}")


def check_plain_name(spec: TableSpec, name: str, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{what}: attribute names must be non-empty strings")
    if name in (spec.partition_key, spec.sort_key):
        raise InvalidInput(f"{what}: {name!r} is a key attribute and cannot be changed")
    if name in spec.large_attributes:
        raise InvalidInput(
            f"{what}: {name!r} is a large attribute; pass it in blobs= so it goes to S3"
        )
    if name in dynamo.bookkeeping_attributes(spec):
        raise InvalidInput(f"{what}: {name!r} is maintained by largeattr itself")


def check_request(
    spec: TableSpec,
    key: ItemKey,
    blob_names: Sequence[str] = (),
    plain_names: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """A saga's input, checked before anything is read or written: the key has exactly the
    table's key attributes, blobs are declared large attributes, and plain attributes
    (by what they are for: "attributes", "update set"...) are neither keys, nor large, nor
    largeattr's own."""
    names = [spec.partition_key] + ([spec.sort_key] if spec.sort_key else [])
    if sorted(key) != sorted(names):
        raise InvalidKey(f"the key of {spec.table_name} is {names}, not {sorted(key)}")
    check_blob_names(spec, blob_names)
    for what, plain in (plain_names or {}).items():
        for name in plain:
            check_plain_name(spec, name, what)


def _key_value(name: str, value: Any, limit: int) -> AttributeValue:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal | bytes):
        raise InvalidKey(
            f"key {name!r} must be a str, int, Decimal or bytes, not {type(value).__name__}"
        )
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidKey(
            f"key {name!r} is {value}; DynamoDB keys are finite numbers, strings or bytes"
        )
    if isinstance(value, str | bytes) and not value:
        raise InvalidKey(f"key {name!r} must not be empty")
    size = (
        len(value.encode("utf-8", "surrogatepass"))
        if isinstance(value, str)
        else (len(value) if isinstance(value, bytes) else 0)
    )
    if size > limit:
        raise InvalidKey(f"key {name!r} is {size} bytes; DynamoDB allows {limit}")
    if isinstance(value, str):
        keys.escape(value)  # rejects text that is not valid Unicode
    wire = dynamo.to_wire(value)
    if "N" in wire:
        keys.canonical_number(wire["N"])
    return wire
