"""The S3 key scheme: where each large attribute's bytes live, and workflow ids.

Every value that goes into a key is escaped (UTF-8, percent-encoding of everything but
``A-Z a-z 0-9 - _ . ~``), so ``/``, ``=`` and ``%`` in a key value can never forge another
item's path: pk ``a/sk=b`` becomes ``pk=a%2Fsk%3Db`` while pk ``a`` with sk ``b`` becomes
``pk=a/sk=b``. The final segment is the SHA-256 of the content, so an object is never
overwritten by different bytes.

Each table has a namespace of its own, ``{prefix}/t={table}/``: every template starts with
it, and no prefix may hold a segment starting with ``t=``, so the first ``t=`` segment of a
key names the one (prefix, table) it belongs to. Two tables can share a bucket and a prefix
and never share an object; ``owned_by`` (what a saga may delete) accepts only a key this
table's template produces, checked by parsing the key back.

The key function is replaceable through ``TableSpec.key_template``. A template is data, so
the client, the worker and the workflow all derive the same key from it, and it is checked
for collision-freedom when the table is declared (see ``validate_template``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import re
import string
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, unquote

from largeattr.errors import InvalidInput, InvalidKey
from largeattr.messages import AttributeValue, ItemKey, TableSpec

#: S3's limit on a key, in UTF-8 bytes.
MAX_S3_KEY_BYTES = 1024
#: DynamoDB's limits on key attribute values, in bytes.
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
#: Temporal's default limit on a workflow id is 1,000 characters; stay well below it.
MAX_WORKFLOW_ID_CHARS = 400

#: Every template starts with the table's namespace: ``{prefix}/t={table}/``.
NAMESPACE = "{prefix}/t={table}/"
DEFAULT_TEMPLATE = NAMESPACE + "pk={pk}/attr={attr}/sha256={sha256}"
DEFAULT_TEMPLATE_WITH_SORT_KEY = NAMESPACE + "pk={pk}/sk={sk}/attr={attr}/sha256={sha256}"
PLACEHOLDERS = frozenset({"prefix", "table", "pk", "sk", "attr", "sha256", "shard"})
#: Staged uploads of one-pass streams live under ``{prefix}/_staging/t={table}/``.
STAGING_SEGMENT = "_staging"
#: The literal that opens a table's segment; no prefix segment may start with it.
TABLE_MARK = "t="

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-_.~")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: What each placeholder can put in a key: escaped text, base64url and canonical numbers
#: are all within the escaped alphabet; digests and shards are lowercase hex.
_VALUE_PATTERNS = {
    "pk": r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+",
    "sk": r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+",
    "attr": r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+",
    "sha256": r"[0-9a-f]{64}",
    "shard": r"[0-9a-f]{4}",
}


def escape(text: str) -> str:
    """Percent-encode a key segment; the result never contains ``/``, ``=`` or a bare ``%``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidKey(
            f"{text!r} is not valid Unicode text (it holds a lone surrogate); "
            "pass the value as bytes or fix its encoding"
        ) from err
    escaped = quote(text, safe="")
    if escaped and set(escaped) == {"."}:
        # "." and ".." are path steps to too many tools; keep them literal-free.
        escaped = escaped.replace(".", "%2E")
    return escaped


def unescape(text: str) -> str:
    return unquote(text)


def key_value_text(value: AttributeValue) -> str:
    """The escaped text of one key value, typed by the table's schema (S, N or B)."""
    if "S" in value:
        text = value["S"]
        if not isinstance(text, str) or text == "":
            raise InvalidKey("a string key value must be a non-empty string")
        return escape(text)
    if "N" in value:
        return canonical_number(value["N"])
    if "B" in value:
        raw = base64.b64decode(value["B"])
        if not raw:
            raise InvalidKey("a binary key value must not be empty")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    raise InvalidKey(f"a key value must be a string, a number or bytes, not {value!r}")


def canonical_number(text: str) -> str:
    """DynamoDB compares numbers by value: 1, 1.0 and 1E0 are one key, so one S3 path."""
    try:
        number = Decimal(text)
    except InvalidOperation as err:
        raise InvalidKey(f"{text!r} is not a number") from err
    if not number.is_finite():
        raise InvalidKey(f"{text!r} is not a finite number; DynamoDB stores finite numbers only")
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def check_prefix(prefix: str) -> None:
    """A prefix is plain folder names: it may be shared by tables, so it must never look
    like a table's segment, the staging folder, or a path step."""
    if not prefix:
        raise InvalidInput("give a prefix, so this table's objects have a folder of their own")
    segments = prefix.split("/")
    if "" in segments:
        raise InvalidInput(
            f"prefix {prefix!r} has an empty segment ('//' or a leading or trailing '/'); "
            "S3 keeps it literally but many tools collapse it, so write the prefix you mean, "
            "e.g. " + repr("/".join(s for s in segments if s) or "docs")
        )
    for segment in segments:
        if segment in {".", ".."}:
            raise InvalidInput(
                f"prefix {prefix!r} has a {segment!r} segment, which path tools read as a step; "
                "use folder names only"
            )
        if segment == STAGING_SEGMENT:
            raise InvalidInput(
                f"prefix {prefix!r} contains '{STAGING_SEGMENT}', where staged uploads live and "
                "expire after a day (largeattr setup); choose another prefix"
            )
        if segment.startswith(TABLE_MARK):
            raise InvalidInput(
                f"prefix {prefix!r} has a segment starting with '{TABLE_MARK}', which marks a "
                "table's own folder in object keys; rename that segment"
            )


@functools.lru_cache(maxsize=256)
def validate_template(spec: TableSpec) -> str:
    """Return the table's key template, after checking that it cannot produce collisions.
    Cached: reconcile parses every listed key with it (a spec is frozen, so hashable)."""
    template = spec.key_template or (
        DEFAULT_TEMPLATE_WITH_SORT_KEY if spec.sort_key else DEFAULT_TEMPLATE
    )
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    unknown = set(fields) - PLACEHOLDERS
    if unknown:
        raise InvalidInput(
            f"key template {template!r} uses unknown placeholders {sorted(unknown)}; "
            f"use only {sorted(PLACEHOLDERS)}"
        )
    required = {"prefix", "pk", "attr", "sha256"} | ({"sk"} if spec.sort_key else set())
    missing = required - set(fields)
    if missing:
        raise InvalidInput(
            f"key template {template!r} lacks {sorted(missing)}; without them two items "
            "or two contents could share one S3 key"
        )
    if not template.startswith(NAMESPACE):
        raise InvalidInput(
            f"key template {template!r} must start with {NAMESPACE!r}: each table keeps its "
            "objects in a folder of its own, so tables may share a bucket and a prefix "
            "without ever deleting each other's objects"
        )
    if "//" in template or template.endswith("/"):
        raise InvalidInput(f"key template {template!r} has an empty segment ('//' or a final '/')")
    parts = list(string.Formatter().parse(template))
    for (_, name, _, _), (literal, _next_name, _, _) in itertools.pairwise(parts):
        if name is None:
            continue
        if not literal or literal[0] in _UNRESERVED or literal[0] == "%":
            raise InvalidInput(
                f"key template {template!r}: after {{{name}}} put a separator such as '/' "
                "or '=' that escaped values never contain, or values could run together"
            )
    if any(spec_ or conv for _, name, spec_, conv in parts if name is not None):
        raise InvalidInput(f"key template {template!r}: placeholders take no format spec")
    check_prefix(spec.prefix)
    return template


def object_key(spec: TableSpec, item_key: ItemKey, attribute: str, sha256: str) -> str:
    """The S3 key of one large attribute's content. Pure: the workflow calls it too."""
    if not _SHA256_HEX.fullmatch(sha256):
        raise InvalidInput(f"{sha256!r} is not a lowercase hex SHA-256 digest")
    template = validate_template(spec)
    pk = key_value_text(item_key[spec.partition_key])
    sk = key_value_text(item_key[spec.sort_key]) if spec.sort_key else ""
    shard = hashlib.sha256(f"{pk}/{sk}".encode()).hexdigest()[:4]
    key = template.format(
        prefix=spec.prefix,
        table=escape(spec.table_name),
        pk=pk,
        sk=sk,
        attr=escape(attribute),
        sha256=sha256,
        shard=shard,
    )
    size = len(key.encode("utf-8"))
    if size > MAX_S3_KEY_BYTES:
        raise InvalidKey(
            f"the S3 key for attribute {attribute!r} would be {size} bytes once escaped; "
            f"S3 allows {MAX_S3_KEY_BYTES}. Use a shorter key value or a shorter prefix "
            "(characters outside A-Z a-z 0-9 - _ . ~ take 3 bytes per UTF-8 byte)"
        )
    return key


@dataclass(frozen=True)
class ParsedKey:
    """What an object key of this table says: the item (every typed key value that gives
    this key), the large attribute and the content's SHA-256."""

    item_keys: tuple[ItemKey, ...]
    attribute: str
    sha256: str


@functools.lru_cache(maxsize=256)
def _key_pattern(template: str, prefix: str, table: str) -> re.Pattern[str]:
    """A regex of every key the template can give for this prefix and table."""
    pattern = ""
    seen: set[str] = set()
    for literal, name, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if name is None:
            continue
        if name == "prefix":
            pattern += re.escape(prefix)
        elif name == "table":
            pattern += re.escape(table)
        elif name in seen:
            pattern += f"(?P={name})"
        else:
            pattern += f"(?P<{name}>{_VALUE_PATTERNS[name]})"
            seen.add(name)
    return re.compile(pattern)


def parse_object_key(spec: TableSpec, key: str) -> ParsedKey | None:
    """The item, attribute and digest of a key this table's template produces; None for
    any other key (another table's, the previous scheme's, a look-alike, a stray file).

    A key is this table's only if producing it again from what it says gives it back, so
    a non-canonical escape (``%41`` for ``A``), a wrong shard or another table's name
    never passes."""
    template = validate_template(spec)
    match = _key_pattern(template, spec.prefix, escape(spec.table_name)).fullmatch(key)
    if not match:
        return None
    attribute, sha256 = unescape(match["attr"]), match["sha256"]
    names = [spec.partition_key, *([spec.sort_key] if spec.sort_key else [])]
    texts = [match["pk"], *([match["sk"]] if spec.sort_key else [])]
    found: list[ItemKey] = []
    for values in itertools.product(*(_key_values_of(text) for text in texts)):
        candidate = dict(zip(names, values, strict=True))
        try:
            if object_key(spec, candidate, attribute, sha256) == key:
                found.append(candidate)
        except InvalidInput:  # InvalidKey too: e.g. an escape of invalid UTF-8
            continue
    return ParsedKey(tuple(found), attribute, sha256) if found else None


def item_keys_in(spec: TableSpec, key: str) -> list[ItemKey]:
    """The item keys that give ``key`` under this table's template: one for each
    key type (S, N, B) that escapes back to the same text; none for a key not ours."""
    parsed = parse_object_key(spec, key)
    return list(parsed.item_keys) if parsed else []


def is_object_of(spec: TableSpec, key: str, item_key: ItemKey) -> bool:
    """True when ``key`` is this table's key of one of ``item_key``'s attributes."""
    parsed = parse_object_key(spec, key)
    if parsed is None:
        return False
    try:
        return object_key(spec, item_key, parsed.attribute, parsed.sha256) == key
    except InvalidInput:
        return False


def _key_values_of(text: str) -> list[AttributeValue]:
    """The inverse of ``key_value_text``: every typed value that escapes to ``text``."""
    candidates: list[AttributeValue] = [{"S": unescape(text)}, {"N": text}]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        candidates.append({"B": base64.b64encode(raw).decode("ascii")})
    except ValueError:
        pass
    out = []
    for value in candidates:
        try:
            if key_value_text(value) == text:
                out.append(value)
        except ValueError:  # InvalidKey too: not a value of this type
            continue
    return out


def staging_prefix(spec: TableSpec) -> str:
    """The folder of this table's staged streams (the lifecycle rule of `largeattr setup`
    expires everything under ``{prefix}/_staging/``)."""
    return f"{spec.prefix}/{STAGING_SEGMENT}/{TABLE_MARK}{escape(spec.table_name)}/"


def staging_key(spec: TableSpec, saga_id: str, attribute: str) -> str:
    """Where a one-pass stream is written before its hash (and final key) is known."""
    return f"{staging_prefix(spec)}{escape(saga_id)}/{escape(attribute)}"


def is_staging_key(spec: TableSpec, key: str) -> bool:
    """True for a key ``staging_key`` gives for this table (any saga, any attribute)."""
    rest = key.removeprefix(staging_prefix(spec))
    if rest == key:
        return False
    parts = rest.split("/")
    return len(parts) == 2 and all(re.fullmatch(_VALUE_PATTERNS["attr"], p) for p in parts)


def owns_key(spec: TableSpec, key: str) -> bool:
    """True for an object key of this table or a staged stream of its sagas."""
    return is_staging_key(spec, key) or parse_object_key(spec, key) is not None


def in_a_table_folder(spec: TableSpec, key: str) -> bool:
    """True when a key under the prefix lies in some table's folder (a ``t=`` segment):
    this table's, or another table's sharing the prefix or a prefix inside it."""
    rest = key.removeprefix(f"{spec.prefix}/")
    return any(part.startswith(TABLE_MARK) for part in rest.split("/")[:-1])


def item_path(spec: TableSpec, item_key: ItemKey) -> str:
    """A readable, unambiguous name for an item: ``pk=a%2Fb`` or ``pk=a/sk=b``."""
    path = f"pk={key_value_text(item_key[spec.partition_key])}"
    if spec.sort_key:
        path += f"/sk={key_value_text(item_key[spec.sort_key])}"
    return path


def workflow_id(spec: TableSpec, item_key: ItemKey) -> str:
    """One workflow id per item: Temporal runs at most one open workflow per id, so
    operations on one item never overlap, and the id names the table and the item."""
    path = item_path(spec, item_key)
    wid = f"largeattr/{escape(spec.table_name)}/{path}"
    if len(wid) > MAX_WORKFLOW_ID_CHARS:
        digest = hashlib.sha256(path.encode()).hexdigest()
        wid = f"largeattr/{escape(spec.table_name)}/item-sha256={digest}"
    return wid


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI, as pynamodb_mate stores it."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise InvalidInput(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def under_prefix(spec: TableSpec, uri: str) -> bool:
    """True when a URI points under the table's bucket and prefix. The sagas choose what
    to clean up with this (a rule that no key scheme change moves, so histories replay);
    the activity that deletes keeps only what ``owned_by`` says is this table's."""
    try:
        bucket, key = parse_s3_uri(uri)
    except InvalidInput:
        return False
    return bucket == spec.bucket and key.startswith(f"{spec.prefix}/")


def owned_by(spec: TableSpec, uri: str) -> bool:
    """True when a URI names an object this table's template produces (ours to delete):
    in the table's bucket and parsed back by ``parse_object_key``. Another table's object,
    one of the previous key scheme (``{prefix}/pk=...``, which two tables on one prefix
    could share) and any other file are never ours."""
    try:
        bucket, key = parse_s3_uri(uri)
    except InvalidInput:
        return False
    return bucket == spec.bucket and parse_object_key(spec, key) is not None
