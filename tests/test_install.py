"""The wheel in a fresh venv, beside a user project with its own workflows.py, activities.py
and worker.py: nothing of largeattr may shadow them (it once installed top-level modules of
those names), and a saga runs from there against the session's Temporal and moto.

No network: the wheel is installed with ``--no-deps --no-index``, and the dependencies come
from this venv's site-packages through a ``.pth`` line. Python does not process the .pth
files of a directory added that way, so the editable largeattr of this venv stays out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import venv
import zipfile
from pathlib import Path

import pytest

from largeattr import AwsConfig

ROOT = Path(__file__).resolve().parent.parent
#: What the wheel is built from (pyproject.toml names the README).
SOURCES = ("pyproject.toml", "README.md", "largeattr", "workflows", "activities", "worker.py")

USER_WORKFLOWS = """
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import greet


@workflow.defn(name="user.Hello")
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=10)
        )
"""

USER_ACTIVITIES = """
from temporalio import activity


@activity.defn(name="user.greet")
async def greet(name: str) -> str:
    return f"hello {name}"
"""

USER_WORKER = """
OWNER = "the user's worker.py"
"""

#: Run with the fresh venv's python from the user project; prints one JSON line.
USER_SCRIPT = """
import asyncio, json, os, uuid

import activities, worker, workflows

from largeattr import LargeAttrClient, LargeAttrTable
from largeattr.config import exit_now
from largeattr.provision import ensure_bucket, ensure_table
from largeattr.worker import build_worker
from temporalio.worker import Worker


async def main():
    la = await LargeAttrClient.connect(task_queue=f"install-{uuid.uuid4().hex[:8]}")
    table = LargeAttrTable(
        table_name=os.environ["TEST_TABLE"],
        partition_key="pk",
        large_attributes=("html",),
        bucket=os.environ["TEST_BUCKET"],
        prefix="installed",
    )
    ensure_bucket(la.storage.s3, table.bucket)
    ensure_table(la.storage.dynamodb, table)
    # AWS settings from the environment, as a user's worker would take them.
    saga_worker, executor = build_worker(la.temporal, task_queue=la.task_queue, shutdown_grace=1.0)
    user_queue = f"user-{uuid.uuid4().hex[:8]}"
    user_worker = Worker(
        la.temporal, task_queue=user_queue, workflows=[workflows.Hello],
        activities=[activities.greet],
    )
    async with saga_worker, user_worker:
        result = await la.create(table, "doc", blobs={"html": b"<p>from a fresh venv</p>"})
        item = await la.get(table, "doc")
        html = await la.read_blob(item.blob("html"))
        hello = await la.temporal.execute_workflow(
            workflows.Hello.run, "user", id=f"hello-{uuid.uuid4()}", task_queue=user_queue
        )
        await la.close()
    executor.shutdown(wait=False)
    import largeattr, largeattr.activities, largeattr.workflows, largeattr.worker as la_worker

    print(json.dumps({
        "user_modules": {m.__name__: m.__file__ for m in (workflows, activities, worker)},
        "user_worker_owner": worker.OWNER,
        "largeattr_files": [
            m.__file__ for m in (largeattr, largeattr.workflows, largeattr.activities, la_worker)
        ],
        "version": result.version,
        "html": html.decode(),
        "hello": hello,
    }))


asyncio.run(main())
exit_now(0)
"""

#: Where the fresh venv finds things, run from a directory with nothing in it.
PROBE = """
import importlib.util, json, sys
import largeattr
print(json.dumps({
    "largeattr": largeattr.__file__,
    "path": sys.path,
    "editable_finder": any("editable" in name for name in sys.modules),
    "top_level": {
        name: importlib.util.find_spec(name) is not None
        for name in ("workflows", "activities", "worker")
    },
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the build leaves nothing in the worktree)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheels")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)])
    (built,) = out.glob("largeattr-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel; this venv's packages visible through one .pth line."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    # Installed before the .pth exists, so pip sees an environment without largeattr.
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)])
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    ours = sysconfig.get_path("purelib")
    (Path(purelib.strip()) / "dev_dependencies.pth").write_text(ours + "\n")
    return python


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{command[:4]} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def test_the_wheel_installs_nothing_with_a_generic_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"largeattr", f"{wheel.name.split('-py3')[0]}.dist-info"}
    for module in ("workflows/create.py", "activities/saga.py", "worker.py", "cli.py"):
        assert f"largeattr/{module}" in names


def test_the_fresh_venv_sees_the_wheel_and_not_the_dev_install(
    fresh_python: Path, tmp_path: Path
) -> None:
    probe = json.loads(run([str(fresh_python), "-c", PROBE], cwd=tmp_path))
    assert Path(probe["largeattr"]).is_relative_to(fresh_python.parent.parent)
    assert not probe["editable_finder"]
    assert str(ROOT) not in probe["path"]
    assert probe["top_level"] == {"workflows": False, "activities": False, "worker": False}


def test_a_user_project_keeps_its_own_modules_and_runs_a_saga(
    fresh_python: Path, tmp_path: Path, temporal_address: str, aws: AwsConfig
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "workflows.py").write_text(USER_WORKFLOWS)
    (project / "activities.py").write_text(USER_ACTIVITIES)
    (project / "worker.py").write_text(USER_WORKER)
    (project / "run.py").write_text(USER_SCRIPT)
    env = {
        **clean_env(),
        "TEMPORAL_ADDRESS": temporal_address,
        "AWS_ENDPOINT_URL": str(aws.endpoint_url),
        "AWS_REGION": str(aws.region_name),
        "AWS_ACCESS_KEY_ID": str(aws.aws_access_key_id),
        "AWS_SECRET_ACCESS_KEY": str(aws.aws_secret_access_key),
        "TEST_TABLE": f"installed-{uuid.uuid4().hex[:8]}",
        "TEST_BUCKET": "largeattr-install-test",
    }
    out = json.loads(run([str(fresh_python), "run.py"], cwd=project, env=env).splitlines()[-1])
    assert out["user_modules"] == {
        name: str(project / f"{name}.py") for name in ("workflows", "activities", "worker")
    }
    assert out["user_worker_owner"] == "the user's worker.py"
    venv_home = fresh_python.parent.parent
    assert all(Path(f).is_relative_to(venv_home) for f in out["largeattr_files"])
    assert out["version"] == 1
    assert out["html"] == "<p>from a fresh venv</p>"
    assert out["hello"] == "hello user"

    help_text = run([str(fresh_python), "-m", "largeattr.worker", "--help"], cwd=project, env=env)
    assert "--task-queue" in help_text
