"""The README's first command ends in `largeattr demo`: it must run on its own and exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_three_sagas_on_its_own_stack(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TEMPORAL_"))}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from largeattr.cli import main; main()",
            "demo",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "demo OK" in out
    # Each saga printed its workflow id and a Web UI link to its history.
    links = re.findall(r"Web UI +: http://127\.0\.0\.1:\d+/namespaces/default/workflows/", out)
    assert len(links) == 3
    assert "equal to what was written: True" in out
    assert re.search(r"objects left under s3://\S+: 0\b", out)
