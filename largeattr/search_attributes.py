"""The custom search attributes of the sagas: defined here once, used by the workflows (typed
keys), and registered by every stack that runs them (dev server, docker-compose, real
clusters), so filtering the Web UI's workflow list by table, item or outcome works.

Temporal refuses an upsert of an attribute the namespace does not know, so the names and
types below must match what the stack registered; tests/test_packaging.py checks
docker-compose.yml against ``SEARCH_ATTRIBUTES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

LA_TABLE = SearchAttributeKey.for_keyword("LaTable")
LA_ITEM = SearchAttributeKey.for_keyword("LaItem")
LA_OPERATION = SearchAttributeKey.for_keyword("LaOperation")
LA_OUTCOME = SearchAttributeKey.for_keyword("LaOutcome")
LA_BYTES_WRITTEN = SearchAttributeKey.for_int("LaBytesWritten")

ALL_KEYS: tuple[SearchAttributeKey[Any], ...] = (
    LA_TABLE,
    LA_ITEM,
    LA_OPERATION,
    LA_OUTCOME,
    LA_BYTES_WRITTEN,
)

# The spelling `temporal operator search-attribute create --type` and the dev server's
# `--search-attribute Name=Type` accept (Temporal's IndexedValueType names).
_TYPE_NAMES: Mapping[SearchAttributeIndexedValueType, str] = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}

#: Name -> Temporal IndexedValueType name, e.g. ``{"LaTable": "Keyword", ...}``.
SEARCH_ATTRIBUTES: Mapping[str, str] = MappingProxyType(
    {key.name: _TYPE_NAMES[key.indexed_value_type] for key in ALL_KEYS}
)
