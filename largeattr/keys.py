"""The S3 key scheme: where each large attribute's bytes live, and workflow ids.

Every value that goes into a key is escaped (UTF-8, percent-encoding of everything but
``A-Z a-z 0-9 - _ . ~``), so ``/``, ``=`` and ``%`` in a key value can never forge another
item's path: pk ``a/sk=b`` becomes ``pk=a%2Fsk%3Db`` while pk ``a`` with sk ``b`` becomes
``pk=a/sk=b``. The final segment is the SHA-256 of the content, so an object is never
overwritten by different bytes.

The key function is replaceable through ``TableSpec.key_template``. A template is data, so
the client, the worker and the workflow all derive the same key from it, and it is checked
for collision-freedom when the table is declared (see ``validate_template``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import string
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

DEFAULT_TEMPLATE = "{prefix}/pk={pk}/attr={attr}/sha256={sha256}"
DEFAULT_TEMPLATE_WITH_SORT_KEY = "{prefix}/pk={pk}/sk={sk}/attr={attr}/sha256={sha256}"
PLACEHOLDERS = frozenset({"prefix", "table", "pk", "sk", "attr", "sha256", "shard"})
#: Staged uploads of one-pass streams live here, beside the items' objects.
STAGING_SEGMENT = "_staging"

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-_.~")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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


def validate_template(spec: TableSpec) -> str:
    """Return the table's key template, after checking that it cannot produce collisions."""
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
    if not template.startswith("{prefix}/"):
        raise InvalidInput(f"key template {template!r} must start with '{{prefix}}/'")
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
    first_literal, first_name = parts[1][0], parts[1][1]
    if first_literal == "/" and first_name not in {"shard", "sha256"}:
        raise InvalidInput(
            f"key template {template!r}: the first segment after '{{prefix}}/' must start "
            f"with literal text (like 'pk='), so no value can reach '{STAGING_SEGMENT}/'"
        )
    first_segment, slash, _ = first_literal[1:].partition("/")
    if slash:  # the first segment is literal text only
        reaches_staging = first_segment == STAGING_SEGMENT
    else:  # a value follows the text and could complete it (hex values cannot: no '_')
        reaches_staging = bool(first_segment) and STAGING_SEGMENT.startswith(first_segment)
    if reaches_staging:
        raise InvalidInput(
            f"key template {template!r} could put objects under '{{prefix}}/{STAGING_SEGMENT}/', "
            "where staged uploads live and the lifecycle rule of `largeattr setup` expires "
            "every object after a day; start the first segment with other text (like 'pk=')"
        )
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


def item_keys_in(spec: TableSpec, object_key: str) -> list[ItemKey]:
    """The item keys that give ``object_key`` under the default template: one for each key
    type (S, N, B) that escapes back to the same text. Custom templates: none."""
    default = DEFAULT_TEMPLATE_WITH_SORT_KEY if spec.sort_key else DEFAULT_TEMPLATE
    if validate_template(spec) != default:
        return []
    pattern = re.escape(f"{spec.prefix}/") + r"pk=([^/=]+)/"
    pattern += r"sk=([^/=]+)/" if spec.sort_key else ""
    match = re.fullmatch(pattern + r"attr=[^/=]+/sha256=[0-9a-f]{64}", object_key)
    if not match:
        return []
    names = [spec.partition_key, *([spec.sort_key] if spec.sort_key else [])]
    choices = [_key_values_of(text) for text in match.groups()]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*choices)]


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


def staging_key(spec: TableSpec, saga_id: str, attribute: str) -> str:
    """Where a one-pass stream is written before its hash (and final key) is known."""
    return f"{spec.prefix}/{STAGING_SEGMENT}/{escape(saga_id)}/{escape(attribute)}"


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


def owned_by(spec: TableSpec, uri: str) -> bool:
    """True when a URI points under this table's bucket and prefix (ours to delete)."""
    try:
        bucket, key = parse_s3_uri(uri)
    except InvalidInput:
        return False
    return bucket == spec.bucket and key.startswith(f"{spec.prefix}/")
