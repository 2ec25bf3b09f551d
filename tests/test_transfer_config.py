"""TransferConfig refuses values that could not move a byte, and says what to use
(no servers needed)."""

from __future__ import annotations

from typing import Any

import pytest

from largeattr import InvalidInput
from largeattr.transfer import GiB, MiB, TransferConfig


@pytest.mark.parametrize(
    ("field", "value", "advice"),
    [
        ("max_concurrency", 0, "max_concurrency is 0; use a whole number of at least 1"),
        ("max_concurrency", -3, "of at least 1 (parts in flight at once)"),
        ("max_concurrency", 2.5, "max_concurrency is 2.5; use a whole number"),
        ("max_concurrency", True, "max_concurrency is True; use a whole number"),
        ("inline_threshold", -1, "inline_threshold is -1; use a whole number of at least 0"),
        ("inline_total", -1, "inline_total is -1; use a whole number of at least 0"),
        ("multipart_threshold", 0, "multipart_threshold is 0; use a whole number of at least 1"),
        ("part_size", 0, "part_size is 0; use a whole number from 1 to 5,368,709,120"),
        ("part_size", 5 * GiB + 1, "S3 takes parts of up to 5 GiB"),
        ("copy_threshold", 6 * GiB, "S3's CopyObject takes up to 5 GiB"),
        ("copy_part_size", -1, "copy_part_size is -1; use a whole number from 1"),
        ("part_size", "8MiB", "part_size is '8MiB'; use a whole number"),
    ],
)
def test_a_field_that_cannot_work_is_refused_with_what_to_use(
    field: str, value: Any, advice: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        TransferConfig(**{field: value})
    assert advice in str(raised.value)
    assert f"TransferConfig.{field}" in str(raised.value)


@pytest.mark.parametrize(
    "values",
    [
        {"inline_threshold": 0, "inline_total": 0},  # every blob by reference
        {"max_concurrency": 1, "part_size": 1},  # parts grow to S3's 5 MiB minimum
        {"multipart_threshold": 1, "copy_threshold": 1, "copy_part_size": 5 * GiB},
        {"part_size": 5 * GiB, "copy_threshold": 5 * GiB},
    ],
)
def test_the_limits_themselves_are_accepted(values: dict[str, Any]) -> None:
    config = TransferConfig(**values)
    assert all(getattr(config, name) == value for name, value in values.items())


def test_a_small_part_size_still_grows_to_the_s3_minimum() -> None:
    assert TransferConfig(part_size=1).part_size_for(10 * MiB) == 5 * MiB
