"""The S3 key scheme and table declarations: pure logic, no servers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from largeattr import InvalidInput, InvalidKey, LargeAttrTable, UnknownAttribute, keys
from largeattr.messages import TableSpec

pytestmark = pytest.mark.unit

SHA = "ab" * 32


def spec(
    sort_key: str | None = None,
    template: str | None = None,
    table_name: str = "docs",
    prefix: str = "pre",
) -> TableSpec:
    return TableSpec(
        table_name=table_name,
        partition_key="pk",
        sort_key=sort_key,
        bucket="bkt",
        prefix=prefix,
        large_attributes=("html",),
        key_template=template,
    )


def test_default_key_layout() -> None:
    assert keys.object_key(spec(), {"pk": {"S": "id-1"}}, "html", SHA) == (
        f"pre/t=docs/pk=id-1/attr=html/sha256={SHA}"
    )
    assert keys.object_key(spec("sk"), {"pk": {"S": "a"}, "sk": {"N": "2"}}, "html", SHA) == (
        f"pre/t=docs/pk=a/sk=2/attr=html/sha256={SHA}"
    )


@pytest.mark.parametrize(
    "value",
    ["a/sk=b", "a%2Fb", "..", ".", "a\nb", "a b", "x=y", "%", "/", "é", "日本", "🎉", "a/../b"],
)
def test_escaped_segments_hold_no_separator(value: str) -> None:
    escaped = keys.escape(value)
    assert "/" not in escaped
    assert "=" not in escaped
    assert escaped not in {".", ".."}
    assert escaped.isascii()
    assert keys.unescape(escaped) == value


def test_lookalike_keys_never_collide() -> None:
    """pk 'a/sk=b' vs (pk 'a', sk 'b'), and every split of one string into pk + sk."""
    flat = keys.object_key(spec(), {"pk": {"S": "a/sk=b"}}, "html", SHA)
    nested = keys.object_key(spec("sk"), {"pk": {"S": "a"}, "sk": {"S": "b"}}, "html", SHA)
    assert flat != nested
    text = "a/sk=b/c=d"
    seen = set()
    for cut in range(1, len(text)):
        pk, sk = text[:cut], text[cut:]
        key = keys.object_key(spec("sk"), {"pk": {"S": pk}, "sk": {"S": sk}}, "html", SHA)
        assert key not in seen
        seen.add(key)


def test_numbers_are_canonical() -> None:
    one = [keys.key_value_text({"N": text}) for text in ("7", "7.0", "7E0", "0.7e1", "007")]
    assert set(one) == {"7"}
    assert keys.key_value_text({"N": "-1.50"}) == "-1.5"
    assert keys.key_value_text({"N": "1E+3"}) == "1000"
    with pytest.raises(InvalidKey):
        keys.key_value_text({"N": "NaN"})


def test_binary_keys_are_url_safe() -> None:
    text = keys.key_value_text({"B": "//79/A=="})
    assert "/" not in text
    assert "=" not in text


def test_key_too_long_for_s3_is_rejected() -> None:
    with pytest.raises(InvalidKey, match="1024"):
        keys.object_key(spec(), {"pk": {"S": "é" * 200}}, "html", SHA)


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(InvalidKey, match="surrogate"):
        keys.escape("a\ud800b")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{prefix}/t={table}/{pk}{sk}/{attr}/{sha256}", "separator"),
        ("{prefix}/t={table}/pk={pk}/{sha256}", "attr"),
        ("{prefix}/t={table}/pk={pk}/attr={attr}", "sha256"),
        ("x/{prefix}/t={table}/pk={pk}/attr={attr}/{sha256}", "start"),
        ("{prefix}/pk={pk}/attr={attr}/sha256={sha256}", "start"),  # the previous default
        ("{prefix}/{table}/pk={pk}/attr={attr}/sha256={sha256}", "start"),
        ("{prefix}/pk={pk}/t={table}/attr={attr}/sha256={sha256}", "start"),
        ("{prefix}/t={table}/pk={pk}/a={attr}/{sha256}/{owner}", "unknown"),
        ("{prefix}/t={table}/pk={pk}_{attr}/{sha256}", "separator"),
        ("{prefix}/t={table}//pk={pk}/attr={attr}/{sha256}", "empty segment"),
        ("{prefix}/_staging/t={table}/pk={pk}/attr={attr}/sha256={sha256}", "start"),
    ],
)
def test_bad_templates_are_refused(template: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        keys.validate_template(spec(template=template))


def test_a_template_cannot_reach_the_staging_folder() -> None:
    """Staged streams expire under ``{prefix}/_staging/``; an object key always starts with
    the table's folder, so even a '_staging' segment in a template lands elsewhere."""
    custom = spec(template="{prefix}/t={table}/_staging/pk={pk}/attr={attr}/sha256={sha256}")
    key = keys.object_key(custom, {"pk": {"S": "a"}}, "html", SHA)
    assert key.startswith("pre/t=docs/_staging/")
    assert not key.startswith("pre/_staging/")


@pytest.mark.parametrize(
    "key",
    [
        {"pk": {"S": "é" * 150}},
        {"pk": {"S": "a/sk=b%2F.."}},
        {"pk": {"S": ".."}},
        {"pk": {"N": "-12.5"}},
        {"pk": {"B": "AP8="}},
        {"pk": {"S": "a"}, "sk": {"N": "3"}},
        {"pk": {"B": "AAEC"}, "sk": {"S": "🎉/x"}},
    ],
)
def test_item_key_is_read_back_from_a_default_object_key(key: dict[str, Any]) -> None:
    table = spec("sk" if "sk" in key else None)
    object_key = keys.object_key(table, key, "html", SHA)
    candidates = keys.item_keys_in(table, object_key)
    assert key in candidates
    assert all(keys.object_key(table, c, "html", SHA) == object_key for c in candidates)


def test_item_key_is_not_guessed_from_other_keys() -> None:
    assert keys.item_keys_in(spec(), "pre/_staging/t=docs/saga/html") == []
    assert keys.item_keys_in(spec(), f"other/t=docs/pk=a/attr=html/sha256={SHA}") == []
    assert keys.item_keys_in(spec(), f"pre/t=other/pk=a/attr=html/sha256={SHA}") == []
    assert keys.item_keys_in(spec(), f"pre/pk=a/attr=html/sha256={SHA}") == []  # previous scheme


def test_item_key_is_read_back_from_a_custom_template() -> None:
    custom = spec(template="{prefix}/t={table}/{shard}/x={pk}/{attr}/{sha256}")
    key = keys.object_key(custom, {"pk": {"S": "a/b"}}, "html", SHA)
    assert {"pk": {"S": "a/b"}} in keys.item_keys_in(custom, key)
    assert keys.parse_object_key(custom, key) is not None
    shard = key.split("/")[2]
    wrong = key.replace(f"/{shard}/", "/0000/" if shard != "0000" else "/0001/")
    assert keys.parse_object_key(custom, wrong) is None  # the template cannot give it


def test_custom_template_replaces_the_key_function() -> None:
    custom = spec(template="{prefix}/t={table}/{shard}/pk={pk}/{attr}/{sha256}")
    key = keys.object_key(custom, {"pk": {"S": "x"}}, "html", SHA)
    shard = key.split("/")[2]
    assert len(shard) == 4
    assert key == f"pre/t=docs/{shard}/pk=x/html/{SHA}"


def test_workflow_id_names_table_and_item_and_stays_short() -> None:
    assert keys.workflow_id(spec(), {"pk": {"S": "id-1"}}) == "largeattr/docs/pk=id-1"
    long = keys.workflow_id(spec(), {"pk": {"S": "x" * 1000}})
    assert long.startswith("largeattr/docs/item-sha256=")
    assert len(long) < 120


def test_uri_round_trip_and_ownership() -> None:
    key = keys.object_key(spec(), {"pk": {"S": "a"}}, "html", SHA)
    uri = keys.s3_uri("bkt", key)
    assert keys.parse_s3_uri(uri) == ("bkt", key)
    assert keys.owned_by(spec(), uri)
    assert not keys.owned_by(spec(), keys.s3_uri("other", key))
    assert not keys.owned_by(spec(), "s3://bkt/prefix-elsewhere/x")
    assert not keys.owned_by(spec(), "s3://bkt/pre/x")  # under the prefix, but no key of ours
    assert not keys.owned_by(spec(), "not a uri")


# ---------------------------------------------------------------- ownership: the parser


def test_one_table_never_owns_another_tables_objects() -> None:
    """Tables 'docs' and 'docs2' on one bucket and prefix: same item, same bytes, two keys,
    each owned by its own table only."""
    one, two = spec(), spec(table_name="docs2")
    item = {"pk": {"S": "id-1"}}
    key_one = keys.object_key(one, item, "html", SHA)
    key_two = keys.object_key(two, item, "html", SHA)
    assert key_one != key_two
    assert keys.owned_by(one, f"s3://bkt/{key_one}")
    assert not keys.owned_by(one, f"s3://bkt/{key_two}")
    assert keys.owned_by(two, f"s3://bkt/{key_two}")
    assert not keys.owned_by(two, f"s3://bkt/{key_one}")


@pytest.mark.parametrize(
    "key",
    [
        f"pre/pk=a/attr=html/sha256={SHA}",  # the previous scheme: no table folder
        f"pre/t=docs/pk=a/attr=html/sha256={SHA[:-1]}",  # a short digest
        f"pre/t=docs/pk=a/attr=html/sha256={SHA.upper()}",
        f"pre/t=docs/pk=a/attr=html/sha256={SHA}/x",
        f"pre/t=docs/pk=a/attr=html/sha256={SHA}.bak",
        f"pre/t=docs/pk=a/sk=b/attr=html/sha256={SHA}",  # no sort key in this table
        f"pre/t=docs/pk=/attr=html/sha256={SHA}",
        f"pre/t=docs/pk=%41/attr=html/sha256={SHA}",  # 'A' escaped: not how we write it
        f"pre/t=docs/pk=%2f/attr=html/sha256={SHA}",  # lowercase escape
        f"pre/t=docs/pk=%FF/attr=html/sha256={SHA}",  # not UTF-8
        f"pre/t=docs/pk=a b/attr=html/sha256={SHA}",
        f"pre/t=docs/pk=a/attr=%68tml/sha256={SHA}",
        f"pre/t=Docs/pk=a/attr=html/sha256={SHA}",
        f"pre/t=docs/t=docs/pk=a/attr=html/sha256={SHA}",
        f"pre/sub/t=docs/pk=a/attr=html/sha256={SHA}",  # a table under prefix 'pre/sub'
        f"PRE/t=docs/pk=a/attr=html/sha256={SHA}",
        "pre/_staging/t=docs/saga/html",
        "pre/t=docs/stray/file.txt",
    ],
)
def test_lookalike_keys_are_not_ours(key: str) -> None:
    assert keys.parse_object_key(spec(), key) is None
    assert not keys.owned_by(spec(), f"s3://bkt/{key}")


@pytest.mark.parametrize(
    "value",
    [{"S": "a/sk=b"}, {"S": "100%"}, {"S": "é 日本"}, {"S": "..."}, {"N": "-1.5"}, {"B": "AP8="}],
)
def test_escaped_values_parse_back(value: dict[str, str]) -> None:
    key = keys.object_key(spec(), {"pk": value}, "html", SHA)
    parsed = keys.parse_object_key(spec(), key)
    assert parsed is not None
    assert {"pk": value} in parsed.item_keys
    assert (parsed.attribute, parsed.sha256) == ("html", SHA)
    assert keys.is_object_of(spec(), key, {"pk": value})
    assert not keys.is_object_of(spec(), key, {"pk": {"S": "other"}})


def test_table_folders_are_disjoint_across_prefixes_and_tables() -> None:
    """No key of one (prefix, table) is owned by another, even when prefixes nest or
    look like table folders and item values look like paths."""
    prefixes = ["pre", "pre/sub", "pre/docs", "pre/pk=a", "pre/attr=html"]
    tables = ["docs", "docs2", "sub", "pka"]
    values = ["a", "t=docs", "pre", "sub/t=docs", "docs"]
    specs = [
        spec(sort_key=sk, table_name=t, prefix=p)
        for p in prefixes
        for t in tables
        for sk in (None, "sk")
    ]
    made: dict[str, TableSpec] = {}
    for table in specs:
        for value in values:
            item = {"pk": {"S": value}, **({"sk": {"S": value}} if table.sort_key else {})}
            made[keys.object_key(table, item, "html", SHA)] = table
            made[keys.staging_key(table, "saga-1", "html")] = table
    for key, writer in made.items():
        owners = {(t.prefix, t.table_name) for t in specs if keys.owns_key(t, key)}
        assert owners == {(writer.prefix, writer.table_name)}, key
        if "/_staging/" not in key:  # a staged stream is the table's, whatever its key shape
            assert [t for t in specs if keys.parse_object_key(t, key)] == [writer], key


def test_staging_is_per_table() -> None:
    staged = keys.staging_key(spec(), "saga/1", "html")
    assert staged == "pre/_staging/t=docs/saga%2F1/html"
    assert keys.is_staging_key(spec(), staged)
    assert not keys.is_staging_key(spec(table_name="docs2"), staged)
    assert not keys.is_staging_key(spec(), "pre/_staging/saga/html")  # the previous scheme
    assert keys.in_a_table_folder(spec(table_name="docs2"), staged)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("a//b", "empty segment"),
        ("/a", "empty segment"),
        ("a/", "empty segment"),
        ("", "give a prefix"),
        ("a/../b", "step"),
        ("a/./b", "step"),
        ("a/_staging", "_staging"),
        ("a/t=docs", "t="),
        ("t=x", "t="),
    ],
)
def test_bad_prefixes_are_refused_on_the_wire_too(prefix: str, problem: str) -> None:
    """A saga started with a plain Temporal client checks the prefix when it derives a key."""
    with pytest.raises(InvalidInput, match=problem):
        keys.object_key(spec(prefix=prefix), {"pk": {"S": "a"}}, "html", SHA)


# ---------------------------------------------------------------- table declarations


def table(**overrides: object) -> LargeAttrTable:
    args: dict[str, object] = {
        "table_name": "docs",
        "partition_key": "pk",
        "large_attributes": ("html", "image"),
        "bucket": "my-bucket",
        "prefix": "/docs/",
    }
    args.update(overrides)
    return LargeAttrTable(**args)  # type: ignore[arg-type]


def test_table_normalises_prefix() -> None:
    assert table().prefix == "docs"


@pytest.mark.parametrize(
    "overrides",
    [
        {"large_attributes": ("pk",)},
        {"large_attributes": ("html", "html")},
        {"large_attributes": ()},
        {"large_attributes": ("la_meta",)},
        {"bucket": "Bad_Bucket"},
        {"table_name": "x"},
        {"prefix": "/"},
        {"prefix": "docs/_staging"},
        {"prefix": "docs//html"},
        {"prefix": "docs/t=other"},
        {"key_template": "{prefix}/pk={pk}/attr={attr}/sha256={sha256}"},
        {"sort_key": "sk", "large_attributes": ("sk",)},
        {"key_template": "{prefix}/{attr}/{sha256}"},
    ],
)
def test_bad_declarations_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        table(**overrides)


@pytest.mark.parametrize(
    "key",
    ["", b"", None, 1.5, True, ("a", "b"), {"other": "x"}, "x" * 2049, "a\udc80"],
)
def test_bad_keys_are_refused(key: object) -> None:
    with pytest.raises(InvalidKey):
        table().key(key)  # type: ignore[arg-type]


def test_key_forms() -> None:
    with_sort = table(sort_key="sk")
    assert with_sort.key(("a", 2)) == with_sort.key({"pk": "a", "sk": 2})
    assert with_sort.key(("a", 2)) == {"pk": {"S": "a"}, "sk": {"N": "2"}}
    with pytest.raises(InvalidKey):
        with_sort.key("a")
    assert table().key(b"\x00\x01") == {"pk": {"B": "AAE="}}


def test_attributes_are_checked() -> None:
    docs = table()
    with pytest.raises(UnknownAttribute):
        docs.check_blob_names(["pdf"])
    for bad in ({"pk": "x"}, {"html": "x"}, {"la_version": 3}, {"": 1}):
        with pytest.raises(InvalidInput):
            docs.attributes(bad, "create")
    with pytest.raises(InvalidInput, match="cannot store"):
        docs.attributes({"when": object()}, "create")
    assert docs.attributes({"n": 1.25, "tags": {"a"}}, "create") == {
        "n": {"N": "1.25"},
        "tags": {"SS": ["a"]},
    }


def test_every_lookalike_pair_of_short_keys_is_distinct() -> None:
    alphabet = ["a", "/", "=", "%", "2F", "sk"]
    made: dict[str, str] = {}
    for parts in itertools.product(alphabet, repeat=3):
        text = "".join(parts)
        key = keys.object_key(spec(), {"pk": {"S": text}}, "html", SHA)
        assert made.setdefault(key, text) == text
