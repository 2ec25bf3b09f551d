"""``largeattr.toml``: tables declared once, and where Temporal and AWS are, for the CLI.

    [temporal]
    address = "127.0.0.1:7233"
    namespace = "default"
    task_queue = "largeattr"
    ui_url = "http://127.0.0.1:8233"      # Web UI links (history, put)

    [aws]
    endpoint_url = "http://127.0.0.1:5000"  # leave out for real AWS
    region = "us-east-1"

    [tables.docs]                          # the name commands take
    table_name = "documents"               # the DynamoDB table (default: the name above)
    partition_key = "pk"
    sort_key = "sk"                        # optional
    partition_key_type = "S"               # optional (S, N, B): else read from DynamoDB
    bucket = "my-bucket"
    prefix = "documents"
    large = ["html", "image"]

The file is ``--config PATH``, else ``$LARGEATTR_CONFIG``, else ``./largeattr.toml`` if it
exists. Flags override the environment, which overrides the file.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from largeattr.config import DEFAULT_TASK_QUEUE, AwsConfig
from largeattr.errors import InvalidInput
from largeattr.messages import SagaOptions
from largeattr.table import LargeAttrTable

CONFIG_FILE = "largeattr.toml"
CONFIG_ENV = "LARGEATTR_CONFIG"

_SECTIONS: dict[str, set[str]] = {
    "temporal": {"address", "namespace", "task_queue", "ui_url"},
    "aws": {"endpoint_url", "region", "profile"},
}
_TABLE_FIELDS = {
    "table_name",
    "partition_key",
    "sort_key",
    "partition_key_type",
    "sort_key_type",
    "bucket",
    "prefix",
    "large",
    "version_attribute",
    "key_template",
    "keep_old_versions",
}


@dataclass(frozen=True)
class TableDecl:
    """A table as the command line knows it: from the file, flags, or DynamoDB itself."""

    name: str
    table_name: str
    partition_key: str | None = None
    sort_key: str | None = None
    #: Attribute name -> S / N / B, when declared (else DescribeTable says).
    key_types: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    prefix: str | None = None
    large: tuple[str, ...] = ()
    version_attribute: str = "la_version"
    key_template: str | None = None
    keep_old_versions: bool = False

    def missing(self) -> list[str]:
        """What a write needs and this declaration lacks, as flags."""
        wanted = {"--bucket": self.bucket, "--prefix": self.prefix, "--large": self.large}
        return [flag for flag, value in wanted.items() if not value]

    def table(self, *, keep_old_versions: bool | None = None) -> LargeAttrTable:
        missing = self.missing()
        if missing or not self.partition_key:
            raise InvalidInput(
                f"table {self.name!r} needs {', '.join(missing or ['--partition-key'])}: "
                f"declare it in {CONFIG_FILE} ([tables.{self.name}] with bucket, prefix, "
                "large) or pass the flags"
            )
        keep = self.keep_old_versions if keep_old_versions is None else keep_old_versions
        return LargeAttrTable(
            table_name=self.table_name,
            partition_key=self.partition_key,
            sort_key=self.sort_key,
            bucket=self.bucket or "",
            prefix=self.prefix or "",
            large_attributes=self.large,
            version_attribute=self.version_attribute,
            key_template=self.key_template,
            options=SagaOptions(delete_old_objects=not keep),
        )


@dataclass(frozen=True)
class CliConfig:
    """The parsed file (empty when there is none)."""

    path: Path | None = None
    temporal: dict[str, str] = field(default_factory=dict)
    aws: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableDecl] = field(default_factory=dict)


def find_config(explicit: str | None) -> Path | None:
    """``--config``, else ``$LARGEATTR_CONFIG``, else ``./largeattr.toml`` if present."""
    given = explicit or os.environ.get(CONFIG_ENV)
    if given:
        path = Path(given)
        if not path.is_file():
            source = "--config" if explicit else f"${CONFIG_ENV}"
            raise InvalidInput(f"{source} {given}: no such file; give the path of a {CONFIG_FILE}")
        return path
    here = Path.cwd() / CONFIG_FILE
    return here if here.is_file() else None


def load_config(explicit: str | None = None) -> CliConfig:
    path = find_config(explicit)
    if path is None:
        return CliConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{path}: not valid TOML ({err}); fix the file") from None
    where = str(path)
    unknown = set(data) - {*_SECTIONS, "tables"}
    if unknown:
        raise InvalidInput(
            f"{where}: unknown section(s) {sorted(unknown)}; known: temporal, aws, tables"
        )
    sections: dict[str, dict[str, str]] = {}
    for section, known in _SECTIONS.items():
        values = _table_of(data.get(section, {}), f"[{section}]", where)
        _known_keys(values, known, f"[{section}]", where)
        for name, value in values.items():
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"{where}: [{section}] {name} must be a non-empty string")
        sections[section] = dict(values)
    tables = {
        name: _table_decl(name, _table_of(values, f"[tables.{name}]", where), where)
        for name, values in _table_of(data.get("tables", {}), "[tables]", where).items()
    }
    return CliConfig(path, sections["temporal"], sections["aws"], tables)


def _table_of(value: Any, what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: {what} must be a table (a [section])")
    return value


def _known_keys(values: dict[str, Any], known: set[str], what: str, where: str) -> None:
    unknown = set(values) - known
    if unknown:
        raise InvalidInput(
            f"{where}: {what} has unknown key(s) {sorted(unknown)}; known: "
            f"{', '.join(sorted(known))}"
        )


def _table_decl(name: str, values: dict[str, Any], where: str) -> TableDecl:
    what = f"[tables.{name}]"
    _known_keys(values, _TABLE_FIELDS, what, where)

    def text(key: str) -> str | None:
        value = values.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidInput(f"{where}: {what} {key} must be a non-empty string")
        return value

    large = values.get("large", ())
    if isinstance(large, str):
        large = [part for part in large.split(",") if part]
    if not isinstance(large, list | tuple) or not all(isinstance(a, str) and a for a in large):
        raise InvalidInput(f'{where}: {what} large must be a list of names, e.g. ["html"]')
    keep = values.get("keep_old_versions", False)
    if not isinstance(keep, bool):
        raise InvalidInput(f"{where}: {what} keep_old_versions must be true or false")
    partition_key = text("partition_key") or "pk"
    sort_key = text("sort_key")
    types: dict[str, str] = {}
    for attribute, key in ((partition_key, "partition_key_type"), (sort_key, "sort_key_type")):
        kind = text(key)
        if kind is None:
            continue
        if kind not in ("S", "N", "B") or attribute is None:
            raise InvalidInput(f"{where}: {what} {key} must be S, N or B (with its key declared)")
        types[attribute] = kind
    return TableDecl(
        name=name,
        table_name=text("table_name") or name,
        partition_key=partition_key,
        sort_key=sort_key,
        key_types=types,
        bucket=text("bucket"),
        prefix=text("prefix"),
        large=tuple(large),
        version_attribute=text("version_attribute") or "la_version",
        key_template=text("key_template"),
        keep_old_versions=keep,
    )


# ---------------------------------------------------------------- resolution: flags > env > file


def _first(*values: str | None) -> str | None:
    return next((value for value in values if value), None)


def table_decl(name: str, config: CliConfig, args: argparse.Namespace) -> TableDecl:
    """The table called ``name``: its declaration in the file (if any), with any table flag
    given on the command line taking its place field by field."""
    declared = config.tables.get(name) or TableDecl(name=name, table_name=name)
    large = getattr(args, "large", None)
    partition_key = _first(getattr(args, "partition_key", None), declared.partition_key)
    if (
        name not in config.tables
        and partition_key is None
        and (large or getattr(args, "bucket", None))
    ):
        partition_key = "pk"  # the old flags' default, when the flags declare the table
    return TableDecl(
        name=name,
        table_name=declared.table_name,
        partition_key=partition_key,
        sort_key=_first(getattr(args, "sort_key", None), declared.sort_key),
        key_types=declared.key_types,
        bucket=_first(getattr(args, "bucket", None), declared.bucket),
        prefix=_first(getattr(args, "prefix", None), declared.prefix),
        large=tuple(a for a in large.split(",") if a) if large else declared.large,
        version_attribute=declared.version_attribute,
        key_template=declared.key_template,
        keep_old_versions=declared.keep_old_versions,
    )


def aws_config(args: argparse.Namespace, config: CliConfig) -> AwsConfig:
    return AwsConfig(
        endpoint_url=_first(
            getattr(args, "aws_endpoint_url", None),
            os.environ.get("AWS_ENDPOINT_URL"),
            config.aws.get("endpoint_url"),
        ),
        region_name=_first(
            getattr(args, "region", None),
            os.environ.get("AWS_REGION"),
            os.environ.get("AWS_DEFAULT_REGION"),
            config.aws.get("region"),
        ),
        # AWS_PROFILE is boto3's own: it applies when no profile is named here.
        profile_name=None if os.environ.get("AWS_PROFILE") else config.aws.get("profile"),
    )


@dataclass(frozen=True)
class TemporalTarget:
    address: str | None
    namespace: str | None
    task_queue: str
    ui_url: str | None

    async def connect(self) -> Any:
        """A Temporal client for this target, with our failure mapping and the payload codec
        the environment names (the same for every command, the workers and the client: the
        keyring is deliberately not a config-file setting, which a worker does not read)."""
        from largeattr.config import connect_temporal

        return await connect_temporal(self.address, self.namespace)


def temporal_target(args: argparse.Namespace, config: CliConfig) -> TemporalTarget:
    """None for address/namespace leaves them to the SDK's configuration (temporal.toml
    profiles), then 127.0.0.1:7233 / default."""
    address = _first(
        getattr(args, "address", None),
        os.environ.get("TEMPORAL_ADDRESS"),
        config.temporal.get("address"),
    )
    namespace = _first(
        getattr(args, "namespace", None),
        os.environ.get("TEMPORAL_NAMESPACE"),
        config.temporal.get("namespace"),
    )
    task_queue = _first(
        getattr(args, "task_queue", None),
        os.environ.get("LARGEATTR_TASK_QUEUE"),
        config.temporal.get("task_queue"),
    )
    ui_url = _first(
        getattr(args, "ui_url", None),
        os.environ.get("LARGEATTR_UI_URL"),
        config.temporal.get("ui_url"),
    )
    return TemporalTarget(
        address, namespace, task_queue or DEFAULT_TASK_QUEUE, ui_url or _dev_ui_url(address)
    )


def _dev_ui_url(address: str | None) -> str | None:
    """A local dev server serves its Web UI on its port + 1000 (``temporal server
    start-dev``'s default); anywhere else the UI is unknown until configured."""
    host, _, port = (address or "127.0.0.1:7233").rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        return f"http://{host}:{int(port) + 1000}"
    return None
