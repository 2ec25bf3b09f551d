"""Custom search attributes: what the Web UI lists and filters sagas by.

Registered by the embedded stack (``temporal server start-dev --search-attribute``), by
``docker-compose.yml`` (admin-tools) and, on a real cluster, by ``largeattr setup
--search-attributes``; upserting an unregistered one fails the workflow task.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TABLE = SearchAttributeKey.for_keyword("LaTable")
ITEM = SearchAttributeKey.for_keyword("LaItem")
OPERATION = SearchAttributeKey.for_keyword("LaOperation")
#: committed / compensated / refused / failed (running while the saga runs).
OUTCOME = SearchAttributeKey.for_keyword("LaOutcome")
BYTES_WRITTEN = SearchAttributeKey.for_int("LaBytesWritten")

#: Name -> type, as ``--search-attribute NAME=TYPE`` and the operator API take them.
SEARCH_ATTRIBUTES: dict[str, str] = {
    key.name: {"KEYWORD": "Keyword", "INT": "Int"}[key.indexed_value_type.name.split("_")[-1]]
    for key in (TABLE, ITEM, OPERATION, OUTCOME, BYTES_WRITTEN)
}
