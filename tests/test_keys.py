"""The S3 key scheme and table declarations: pure logic, no servers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from largeattr import InvalidInput, InvalidKey, LargeAttrTable, UnknownAttribute, keys
from largeattr.messages import TableSpec

pytestmark = pytest.mark.unit

SHA = "ab" * 32


def spec(sort_key: str | None = None, template: str | None = None) -> TableSpec:
    return TableSpec(
        table_name="docs",
        partition_key="pk",
        sort_key=sort_key,
        bucket="bkt",
        prefix="pre",
        large_attributes=("html",),
        key_template=template,
    )


def test_default_key_layout() -> None:
    assert keys.object_key(spec(), {"pk": {"S": "id-1"}}, "html", SHA) == (
        f"pre/pk=id-1/attr=html/sha256={SHA}"
    )
    assert keys.object_key(spec("sk"), {"pk": {"S": "a"}, "sk": {"N": "2"}}, "html", SHA) == (
        f"pre/pk=a/sk=2/attr=html/sha256={SHA}"
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
        ("{prefix}/{pk}{sk}/{attr}/{sha256}", "separator"),
        ("{prefix}/pk={pk}/{sha256}", "attr"),
        ("{prefix}/pk={pk}/attr={attr}", "sha256"),
        ("x/{prefix}/pk={pk}/attr={attr}/{sha256}", "start"),
        ("{prefix}/pk={pk}/a={attr}/{sha256}/{owner}", "unknown"),
        ("{prefix}/{pk}/attr={attr}/{sha256}", "literal"),
        ("{prefix}/pk={pk}_{attr}/{sha256}", "separator"),
        ("{prefix}/_staging/pk={pk}/attr={attr}/sha256={sha256}", "_staging"),
        ("{prefix}/_stag{pk}/attr={attr}/sha256={sha256}", "_staging"),
    ],
)
def test_bad_templates_are_refused(template: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        keys.validate_template(spec(template=template))


def test_template_may_name_a_first_segment_like_staging() -> None:
    custom = spec(template="{prefix}/_stagingx/pk={pk}/attr={attr}/sha256={sha256}")
    assert keys.object_key(custom, {"pk": {"S": "a"}}, "html", SHA).startswith("pre/_stagingx/")


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
    assert keys.item_keys_in(spec(), "pre/_staging/saga/html") == []
    assert keys.item_keys_in(spec(), f"other/pk=a/attr=html/sha256={SHA}") == []
    custom = spec(template="{prefix}/x={pk}/attr={attr}/sha256={sha256}")
    assert keys.item_keys_in(custom, f"pre/x=a/attr=html/sha256={SHA}") == []


def test_custom_template_replaces_the_key_function() -> None:
    custom = spec(template="{prefix}/{shard}/pk={pk}/{attr}/{sha256}")
    key = keys.object_key(custom, {"pk": {"S": "x"}}, "html", SHA)
    shard = key.split("/")[1]
    assert len(shard) == 4
    assert key == f"pre/{shard}/pk=x/html/{SHA}"


def test_workflow_id_names_table_and_item_and_stays_short() -> None:
    assert keys.workflow_id(spec(), {"pk": {"S": "id-1"}}) == "largeattr/docs/pk=id-1"
    long = keys.workflow_id(spec(), {"pk": {"S": "x" * 1000}})
    assert long.startswith("largeattr/docs/item-sha256=")
    assert len(long) < 120


def test_uri_round_trip_and_ownership() -> None:
    uri = keys.s3_uri("bkt", "pre/pk=a/attr=html/sha256=00")
    assert keys.parse_s3_uri(uri) == ("bkt", "pre/pk=a/attr=html/sha256=00")
    assert keys.owned_by(spec(), uri)
    assert not keys.owned_by(spec(), "s3://other/pre/x")
    assert not keys.owned_by(spec(), "s3://bkt/prefix-elsewhere/x")
    assert not keys.owned_by(spec(), "not a uri")


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
