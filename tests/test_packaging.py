"""The files around the code: docker-compose.yml, the CLI, the worker entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from largeattr import worker
from largeattr.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_publishes_ports_on_loopback_only() -> None:
    services = compose()["services"]
    published = [port for svc in services.values() for port in svc.get("ports", [])]
    assert published, "the stack should publish Temporal, the UI and the AWS endpoint"
    for port in published:
        assert str(port).startswith("127.0.0.1:"), port


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    assert {"postgresql", "temporal", "temporal-ui", "aws", "setup", "worker"} <= set(services)
    assert services["temporal"]["environment"]["DB"] == "postgres12"


def test_compose_commands_parse_with_our_cli() -> None:
    services = compose()["services"]
    setup = services["setup"]["command"]
    assert setup[0] == "largeattr"
    args = build_parser().parse_args(setup[1:])
    assert args.table == "largeattr-demo"
    assert args.large == "html,image"
    command = services["worker"]["command"]
    assert command[:3] == ["python", "-m", "largeattr.worker"]
    parser = __import__("argparse").ArgumentParser()
    worker.add_arguments(parser)
    assert parser.parse_args(command[3:]).task_queue == "largeattr"


def test_dockerfile_installs_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for part in ("largeattr", "workflows", "activities", "worker.py"):
        assert part in dockerfile


@pytest.mark.parametrize("command", ["demo", "dev", "worker", "setup", "get"])
def test_cli_commands_exist(command: str) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([command, "--help"])
    assert exit_.value.code == 0
