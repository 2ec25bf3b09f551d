"""The Python side of the Web UI tests: run ``browse.mjs`` (Debian's headless Chromium through
npm ``playwright-core``) on a list of steps and read back what the pages showed.

Steps are plain dicts (see browse.mjs); the builders below write the ones the Temporal Web UI
(2.54, the dev server's) needs, with the selectors that page carries for its own tests
(``data-testid``), and parse what they read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

UI_DIR = Path(__file__).resolve().parent
ROOT = UI_DIR.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = ROOT / ".ci" / "install-browser"
#: Screenshots are kept here (gitignored) for a person, or CI, to look at.
ARTIFACTS = ROOT / "test-artifacts" / "ui"

Step = dict[str, Any]

EVENT_ROW = "[data-testid=event-summary-row]"
PENDING_ROW = "[data-testid=pending-activity-summary-row]"
#: The Search Attributes tab shows them as one JSON document (a CodeMirror view).
SEARCH_ATTRIBUTES_JSON = '.cm-content:has-text("LaTable")'
LIST_ROW = "[data-testid=workflows-summary-configurable-table-row]"
LIST_HEADER = "[data-testid^=workflows-summary-table-header-cell-]"


class BrowserFailed(AssertionError):
    """A step failed in the browser: the message names it and the screenshot of the page."""


def _installed() -> bool:
    return CHROMIUM.exists() and (UI_DIR / "node_modules" / "playwright-core").is_dir()


def unavailable() -> str | None:
    """Why no browser can run here (the reason to skip), or None once one is installed.
    Installs Chromium and playwright-core (.ci/install-browser) where this machine can."""
    if shutil.which("node") is None:
        return "node is not installed: the Web UI tests drive Chromium through playwright-core"
    if _installed():
        return None
    can_apt = shutil.which("apt-get") is not None and os.geteuid() == 0
    if not CHROMIUM.exists() and not can_apt:
        return (
            f"no Chromium at {CHROMIUM} and no apt-get as root to install it: "
            "run .ci/install-browser as root (Debian's chromium package)"
        )
    if shutil.which("npm") is None:
        return "npm is not installed: it installs playwright-core (npm ci --prefix tests/ui)"
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not _installed():
        raise RuntimeError(f".ci/install-browser failed ({done.returncode}):\n{done.stderr}")
    return None


@dataclass
class Browser:
    """Runs step lists in a fresh headless Chromium; screenshots go to ``screenshots``."""

    screenshots: Path
    timeout_ms: int = 20_000
    #: (step, milliseconds) of the last run, launch first.
    timings: list[tuple[str, int]] = field(default_factory=list)

    def run(self, steps: list[Step]) -> dict[str, list[dict[str, Any]]]:
        """Run ``steps``; returns what each ``read`` step read, by its name."""
        request = {
            "chromium": str(CHROMIUM),
            "screenshots": str(self.screenshots),
            "timeout_ms": self.timeout_ms,
            "steps": steps,
        }
        done = subprocess.run(
            ["node", str(UI_DIR / "browse.mjs")],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=120 + len(steps) * self.timeout_ms / 1000,
        )
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise BrowserFailed(
                f"browse.mjs exited {done.returncode} without an answer:\n{done.stderr}"
            ) from None
        if not answer["ok"]:
            raise BrowserFailed(
                f"step {answer['step']} {steps[answer['step']]} failed on {answer['url']}: "
                f"{answer['error']}\nscreenshots: {answer['screenshots']}"
            )
        self.timings = [("launch", answer["launch_ms"])]
        done_steps = zip(steps, answer["ms"], strict=True)
        self.timings += [(json.dumps(step)[:90], ms) for step, ms in done_steps]
        reads: dict[str, list[dict[str, Any]]] = answer["read"]
        return reads


# ---------------------------------------------------------------- steps for the Web UI


def workflow_steps(url: str, name: str, last_event_id: int) -> list[Step]:
    """A workflow's page (``url``: its history, as ``Stack.workflow_url`` gives it): the
    status, every event row and the pending activities' rows, then the User Metadata tab
    (summary, details, current details), then the Search Attributes tab. Reads
    ``{name}-status``, ``{name}-events``, ``{name}-pending`` (the tab),
    ``{name}-pending-rows``, ``{name}-summary``, ``{name}-details``,
    ``{name}-current-details``, ``{name}-search-attributes``."""
    return [
        {"goto": url},
        # Every event the server had when the test looked is on the page.
        {"wait": f'{EVENT_ROW}[data-eventid="{last_event_id}"]'},
        {"read": "[data-testid=execution-status]", "as": f"{name}-status"},
        {"read": EVENT_ROW, "as": f"{name}-events", "cells": ":scope > td"},
        {"read": "[data-testid=pending-activities-tab]", "as": f"{name}-pending"},
        {"read": PENDING_ROW, "as": f"{name}-pending-rows", "cells": ":scope > td"},
        {"screenshot": f"{name}-history"},
        {"click": "[data-testid=user-metadata-tab]"},
        *(
            {"read": "body", "frame": f"#user-metadata-{part}", "as": f"{name}-{part}"}
            for part in ("summary", "details", "current-details")
        ),
        {"screenshot": f"{name}-user-metadata"},
        {"click": "[data-testid=search-attributes-tab]"},
        {"wait": SEARCH_ATTRIBUTES_JSON},
        {"read": SEARCH_ATTRIBUTES_JSON, "as": f"{name}-search-attributes"},
        {"screenshot": f"{name}-search-attributes"},
    ]


def list_url(ui_url: str, namespace: str, query: str) -> str:
    return f"{ui_url}/namespaces/{namespace}/workflows?query={quote(query, safe='')}"


def list_steps(url: str, name: str, run_ids: list[str]) -> list[Step]:
    """The workflow list at ``url`` once it shows every run of ``run_ids``. Reads
    ``{name}-header`` and ``{name}-rows``."""
    return [
        {"goto": url},
        *({"wait": LIST_ROW, "text": run_id} for run_id in run_ids),
        {"read": LIST_HEADER, "as": f"{name}-header"},
        {"read": LIST_ROW, "as": f"{name}-rows", "cells": ":scope > td"},
        {"screenshot": f"{name}-list"},
    ]


# ---------------------------------------------------------------- what the pages showed


@dataclass(frozen=True)
class EventRow:
    event_id: int
    event_type: str  # as the UI names it: "Activity Task Scheduled"
    details: dict[str, str]  # the row's label -> value pairs: "Summary" -> "read pk=doc"


def event_rows(read: dict[str, list[dict[str, Any]]], name: str) -> list[EventRow]:
    """The event rows of a workflow page, oldest first (the UI lists newest first)."""
    rows = []
    for row in read[f"{name}-events"]:
        cells = row["cells"]
        # The last cell holds "Label\n\nValue" pairs, one blank line apart.
        parts = [part.strip() for part in cells[-1].split("\n\n")]
        details = dict(zip(parts[0::2], parts[1::2], strict=False))
        rows.append(EventRow(int(row["data"]["eventid"]), cells[-2].strip(), details))
    return sorted(rows, key=lambda row: row.event_id)


@dataclass(frozen=True)
class PendingRow:
    event_id: int  # the Activity Task Scheduled event of the pending activity
    attempt: str  # "ATTEMPT 1 / 10"
    details: dict[str, str]


def pending_rows(read: dict[str, list[dict[str, Any]]], name: str) -> list[PendingRow]:
    """The rows the history shows above its events for activities still pending."""
    rows = []
    for row in read[f"{name}-pending-rows"]:
        cells = row["cells"]
        attempt, *parts = [part.strip() for part in cells[-1].split("\n\n")]
        details = dict(zip(parts[0::2], parts[1::2], strict=False))
        rows.append(PendingRow(int(cells[0].strip()), attempt, details))
    return rows


def activity_summaries(rows: list[EventRow]) -> list[tuple[str, str, str]]:
    """(row type, activity type, summary) of each step, in history order: each scheduled
    activity ("Activity Task Scheduled") and each local activity (a marker, which the UI
    shows as "Local Activity")."""
    return [
        (row.event_type, row.details["Activity Type"], row.details.get("Summary", ""))
        for row in rows
        if row.event_type in ("Activity Task Scheduled", "Local Activity")
    ]


def text(read: dict[str, list[dict[str, Any]]], name: str) -> str:
    """The text of the one element read as ``name``, blank lines squeezed."""
    (element,) = read[name]
    return "\n".join(line.strip() for line in element["text"].splitlines() if line.strip())


def search_attributes(read: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """The search attributes the workflow page's Search Attributes tab shows."""
    shown: dict[str, Any] = json.loads(text(read, f"{name}-search-attributes"))
    return shown


def list_rows(read: dict[str, list[dict[str, Any]]], name: str) -> list[dict[str, str]]:
    """The workflow list's rows as column name -> text."""
    columns = [header["text"].strip() for header in read[f"{name}-header"]]
    offset = None
    rows = []
    for row in read[f"{name}-rows"]:
        cells = [cell.strip() for cell in row["cells"]]
        # Leading cells (a checkbox, an icon) have no named header cell.
        offset = len(cells) - len(columns) if offset is None else offset
        rows.append(dict(zip(columns, cells[offset:], strict=True)))
    return rows
