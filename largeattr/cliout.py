"""What the ``largeattr`` command prints: exit codes, one-line errors, JSON, progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from largeattr.aws_errors import translate
from largeattr.errors import (
    AccessDenied,
    BucketNotFound,
    CorruptObject,
    DanglingReference,
    InvalidInput,
    ItemAlreadyExists,
    ItemBusy,
    ItemNotFound,
    LargeAttrError,
    TableNotFound,
    UndecryptablePayload,
    VersionConflict,
)
from largeattr.messages import ItemResult
from largeattr.provision import SearchAttributeConflict
from largeattr.transfer.config import human_size


class Unavailable(LargeAttrError):
    """Temporal or the AWS endpoint cannot be reached. Start it, or fix the address."""


class NamespaceNotFound(LargeAttrError):
    """The Temporal namespace does not exist. Create it, or fix --namespace."""


class Findings(LargeAttrError):
    """A check found problems (it printed them)."""


#: The exit codes, in one place (the README's table is this one). An error is given the
#: first code whose classes it is an instance of; argparse's own usage errors exit 2 too.
EXIT_CODES: tuple[tuple[int, str, tuple[type[LargeAttrError], ...]], ...] = (
    (0, "ok", ()),
    (
        1,
        "findings or conflict: check found problems; the item changed or exists; a search "
        "attribute is registered with another type",
        (
            Findings,
            VersionConflict,
            ItemAlreadyExists,
            ItemBusy,
            DanglingReference,
            CorruptObject,
            SearchAttributeConflict,
        ),
    ),
    (
        2,
        "usage: bad arguments, config or input (a codec key missing too); nothing was written",
        (InvalidInput, UndecryptablePayload),
    ),
    (
        3,
        "not found: item, table or bucket",
        (ItemNotFound, TableNotFound, BucketNotFound, NamespaceNotFound),
    ),
    (
        4,
        "unavailable: Temporal or AWS unreachable, credentials refused",
        (Unavailable, AccessDenied),
    ),
    (5, "other failure: the saga failed otherwise (it compensated)", (LargeAttrError,)),
)
OK, FINDINGS, USAGE, NOT_FOUND, UNAVAILABLE, FAILED = (code for code, _, _ in EXIT_CODES)


def exit_code(err: LargeAttrError) -> int:
    return next(code for code, _, classes in EXIT_CODES if isinstance(err, classes))


def expected_error(err: BaseException) -> LargeAttrError | None:
    """The error a user can act on, for an exception that an expected failure raises (a
    server down, credentials missing, an AWS refusal); None for anything else (a bug)."""
    if isinstance(err, LargeAttrError):
        return err
    if isinstance(err, RuntimeError) and str(err).startswith("Failed client connect"):
        return Unavailable(
            f"cannot reach Temporal ({err}); start it (`largeattr dev`) or point --address, "
            "TEMPORAL_ADDRESS or largeattr.toml's [temporal] address at it"
        )
    rpc = _rpc_error(err)
    if rpc is not None:
        return rpc
    if isinstance(err, NoCredentialsError | ClientError):
        translated = translate(err)
        if isinstance(translated, LargeAttrError):
            return translated
        return None
    if isinstance(
        err,
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError,
    ):
        return Unavailable(
            f"cannot reach AWS ({err}); start the endpoint or fix --aws-endpoint-url, "
            "AWS_ENDPOINT_URL or largeattr.toml's [aws] endpoint_url"
        )
    if isinstance(err, BotoCoreError):
        return Unavailable(f"AWS call failed: {err}")
    return None


def _rpc_error(err: BaseException) -> LargeAttrError | None:
    from temporalio.service import RPCError, RPCStatusCode

    if not isinstance(err, RPCError):
        return None
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"Temporal did not answer ({err.message}); is the server up?")
    if err.status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
        return AccessDenied(f"Temporal refused the call ({err.message}); check the API key / TLS")
    if err.status == RPCStatusCode.NOT_FOUND:
        return NamespaceNotFound(
            f"Temporal: {err.message}; create the namespace or fix --namespace"
        )
    return None


# ---------------------------------------------------------------- output


def plain(value: Any) -> Any:
    """A value JSON can hold: Decimal as int when whole, bytes as hex, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def emit(as_json: bool, data: Any, lines: Iterable[str]) -> None:
    """Print ``data`` as JSON, or the human lines."""
    if as_json:
        print(json.dumps(plain(data), indent=2, sort_keys=False))
    else:
        for line in lines:
            print(line)


def report_error(err: LargeAttrError, as_json: bool, stream: IO[str] | None = None) -> int:
    """One line on stderr (a JSON object with --json); returns the exit code."""
    stream = stream or sys.stderr
    code = exit_code(err)
    name = type(err).__name__
    if as_json:
        print(json.dumps({"error": name, "message": str(err), "exit_code": code}), file=stream)
    else:
        print(f"largeattr: {name}: {err}", file=stream)
    return code


@dataclass
class ProgressLine:
    """``on_progress`` that redraws one line on a terminal (at most ten times a second)."""

    label: str
    stream: IO[str]
    _last: float = 0.0
    _shown: bool = False

    @staticmethod
    def for_terminal(label: str, stream: IO[str] | None = None) -> ProgressLine | None:
        """A progress line when ``stream`` (stderr) is a terminal; None (quiet) otherwise."""
        stream = stream or sys.stderr
        return ProgressLine(label, stream) if stream.isatty() else None

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        text = human_size(done)
        if total is not None:
            text += f" / {human_size(total)} ({100 * done // max(total, 1)}%)"
        self.stream.write(f"\r{self.label}: {text}\x1b[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def result_lines(result: ItemResult, workflow_id: str, url: str | None) -> list[str]:
    """A committed saga, for people: its workflow, link, version and objects."""
    lines = [f"  workflow id : {workflow_id}"]
    if url:
        lines.append(f"  Web UI      : {url}")
    lines.append(f"  version     : {result.version}")
    for blob in result.blobs:
        made = "uploaded" if blob.created else "already stored, not uploaded again"
        lines.append(f"  {blob.attribute:<11} : {blob.uri} ({blob.meta.size:,} bytes, {made})")
    lines += [f"  deleted     : {uri}" for uri in result.deleted_objects]
    return lines
