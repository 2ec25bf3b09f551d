"""DynamoDB values, item sizes and the bookkeeping attributes an item carries.

Beside each large attribute (the plain ``s3://bucket/key`` string pynamodb_mate also
writes) an item holds:

* ``la_meta``: map of large attribute -> {size, sha256, content_type[, content_encoding]}
* ``la_version`` (name configurable): incremented by every committed write
* ``la_saga``: the Temporal run id of the saga that committed the item, which lets a
  retried pivot recognise its own earlier write when the response was lost
* ``la_updated_at``: the saga's time of the write (ISO 8601, UTC)
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from largeattr.errors import InvalidInput, ItemTooLarge
from largeattr.messages import AttributeValue, BlobMeta, ItemKey, ItemState, TableSpec

META_ATTRIBUTE = "la_meta"
SAGA_ATTRIBUTE = "la_saga"
UPDATED_AT_ATTRIBUTE = "la_updated_at"

#: DynamoDB's item size limit (AWS documentation, "Service, account, and table quotas").
MAX_ITEM_BYTES = 400 * 1024

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def bookkeeping_attributes(spec: TableSpec) -> tuple[str, ...]:
    return (spec.version_attribute, META_ATTRIBUTE, SAGA_ATTRIBUTE, UPDATED_AT_ATTRIBUTE)


# ---------------------------------------------------------------- value conversion


def to_wire(value: Any) -> AttributeValue:
    """A Python value as DynamoDB JSON that survives Temporal's JSON converter."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    try:
        low_level = _serializer.serialize(_floats_to_decimal(value))
    except TypeError as err:
        raise InvalidInput(
            f"DynamoDB cannot store {type(value).__name__} values ({err}); use str, int, "
            "Decimal, bytes, bool, None, list, dict or set"
        ) from err
    return _binary_to_text(low_level)


def from_wire(value: AttributeValue) -> Any:
    """The Python value (Decimal for numbers, bytes for binary) of a DynamoDB JSON value."""
    return _deserializer.deserialize(to_low_level(value))  # type: ignore[arg-type]


def to_low_level(value: AttributeValue) -> dict[str, Any]:
    """DynamoDB JSON (binary as base64 text) -> the form boto3's low-level client takes."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(inner)}
    if tag == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    if tag == "L":
        return {"L": [to_low_level(v) for v in inner]}
    if tag == "M":
        return {"M": {k: to_low_level(v) for k, v in inner.items()}}
    return {tag: inner}


def item_to_low_level(item: Mapping[str, AttributeValue]) -> dict[str, Any]:
    return {name: to_low_level(value) for name, value in item.items()}


def _binary_to_text(value: Mapping[str, Any]) -> AttributeValue:
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(inner)).decode("ascii")}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(v)).decode("ascii") for v in inner]}
    if tag == "L":
        return {"L": [_binary_to_text(v) for v in inner]}
    if tag == "M":
        return {"M": {k: _binary_to_text(v) for k, v in inner.items()}}
    return {tag: inner}


def item_from_low_level(item: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return {name: _binary_to_text(value) for name, value in item.items()}


def _floats_to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _floats_to_decimal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_floats_to_decimal(v) for v in value]
    if isinstance(value, set | frozenset):
        return {_floats_to_decimal(v) for v in value}
    return value


# ---------------------------------------------------------------- sizes


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one value (AWS: "Item sizes and formats"), rounded up."""
    ((tag, inner),) = value.items()
    if tag == "S":
        return len(inner.encode("utf-8"))
    if tag == "N":
        return _number_size(inner)
    if tag == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(base64.b64decode(inner))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(len(v.encode("utf-8")) for v in inner)
    if tag == "NS":
        return sum(_number_size(v) for v in inner)
    if tag == "BS":
        return sum(len(v) if isinstance(v, bytes) else len(base64.b64decode(v)) for v in inner)
    if tag == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if tag == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in inner.items())
    raise InvalidInput(f"unknown DynamoDB type {tag!r}")


def _number_size(text: str) -> int:
    digits = len(text.lstrip("-").replace(".", "").lstrip("0").split("E")[0].split("e")[0])
    return min(21, (digits + 1) // 2 + 1)


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def check_item_size(size: int, what: str) -> None:
    if size > MAX_ITEM_BYTES:
        raise ItemTooLarge(
            f"{what} would be {size:,} bytes; DynamoDB allows {MAX_ITEM_BYTES:,} per item. "
            "Declare the biggest attributes as large attributes so they go to S3",
            size=size,
        )


# ---------------------------------------------------------------- bookkeeping


def meta_to_wire(meta: BlobMeta) -> AttributeValue:
    fields: dict[str, AttributeValue] = {
        "size": {"N": str(meta.size)},
        "sha256": {"S": meta.sha256},
        "content_type": {"S": meta.content_type},
    }
    if meta.content_encoding:
        fields["content_encoding"] = {"S": meta.content_encoding}
    return {"M": fields}


def meta_from_wire(value: Mapping[str, Any]) -> BlobMeta | None:
    fields = value.get("M")
    if not isinstance(fields, Mapping):
        return None
    try:
        return BlobMeta(
            size=int(fields["size"]["N"]),
            sha256=fields["sha256"]["S"],
            content_type=fields["content_type"]["S"],
            content_encoding=fields.get("content_encoding", {}).get("S"),
        )
    except (KeyError, TypeError, ValueError):
        return None


def item_state(spec: TableSpec, item: Mapping[str, Any] | None) -> ItemState:
    """What the saga needs to know of an item (low-level or wire form)."""
    if not item:
        return ItemState(exists=False)
    # An empty string is no blob (pynamodb_mate can write one): nothing to read or delete.
    refs = {
        name: item[name]["S"]
        for name in spec.large_attributes
        if name in item and isinstance(item[name], Mapping) and item[name].get("S")
    }
    meta: dict[str, BlobMeta] = {}
    raw_meta = item.get(META_ATTRIBUTE, {}).get("M", {})
    for name, value in raw_meta.items():
        parsed = meta_from_wire(value)
        if parsed is not None and name in refs:
            meta[name] = parsed
    version_value = item.get(spec.version_attribute, {}).get("N")
    return ItemState(
        exists=True,
        version=int(Decimal(version_value)) if version_value is not None else 0,
        saga_id=item.get(SAGA_ATTRIBUTE, {}).get("S", ""),
        refs=refs,
        meta=meta,
        size_bytes=item_size(item),
    )


def key_of(spec: TableSpec, item: Mapping[str, AttributeValue]) -> ItemKey:
    key = {spec.partition_key: item[spec.partition_key]}
    if spec.sort_key:
        key[spec.sort_key] = item[spec.sort_key]
    return key
