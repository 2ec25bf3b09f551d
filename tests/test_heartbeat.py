"""Heartbeats keep coming while a transfer waits on a slow part (no servers needed)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from largeattr.activities.heartbeat import Beating

pytestmark = pytest.mark.unit


def run_slow_step(env: ActivityEnvironment, report: dict[str, Any] | None) -> None:
    def slow_step() -> None:
        with Beating(every=0.05) as beat:
            if report is not None:
                beat(report)
            time.sleep(0.4)  # a part that takes long to send

    env.run(slow_step)


def test_the_last_progress_is_repeated_while_a_step_is_slow() -> None:
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    run_slow_step(env, {"upload_id": "u-1", "parts_done": 3})
    assert len(beats) >= 4  # the report itself, then repeats
    assert set(map(repr, beats)) == {repr(({"upload_id": "u-1", "parts_done": 3},))}


def test_before_its_first_report_an_attempt_repeats_the_last_attempts_resume_point() -> None:
    env = ActivityEnvironment()
    earlier = {"upload_id": "u-0", "part_size": 8388608, "parts_done": 5}
    env.info = dataclasses.replace(env.info, heartbeat_details=[earlier], attempt=2)
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    run_slow_step(env, None)
    assert len(beats) >= 3
    assert all(details == (earlier,) for details in beats)  # never an empty heartbeat


def test_the_repeats_stop_with_the_step() -> None:
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    run_slow_step(env, {"n": 1})
    count = len(beats)
    time.sleep(0.2)
    assert len(beats) == count
