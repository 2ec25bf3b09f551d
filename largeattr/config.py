"""Where things run: AWS clients and the Temporal connection, from flags or environment.

AWS follows boto3's own conventions: leave the endpoint unset for real AWS and the normal
credential chain; set ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) for an emulator. Temporal
follows the SDK's environment configuration (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, TLS settings, profiles in ``temporal.toml``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import boto3
from botocore.config import Config

from largeattr.errors import InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from temporalio.converter import PayloadCodec
    from temporalio.runtime import Runtime

DEFAULT_TASK_QUEUE = "largeattr"
#: The region given to an emulator endpoint when none is configured (emulators ignore it).
EMULATOR_DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class AwsConfig:
    """How to reach S3 and DynamoDB. All None: boto3's defaults (real AWS)."""

    endpoint_url: str | None = None
    region_name: str | None = None
    profile_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    #: Parallel connections per client (>= the transfer concurrency).
    max_pool_connections: int = 32
    connect_timeout: float = 5.0
    #: S3 reads wait for whole parts; DynamoDB answers in milliseconds or not at all.
    read_timeout: float = 60.0
    dynamodb_read_timeout: float = 5.0
    dynamodb_connect_timeout: float = 2.0
    max_attempts: int = 4
    #: DynamoDB: attempts in all (botocore's ``total_max_attempts``). Few, because the
    #: sagas retry too and a pivot's call must end within its attempt (see
    #: ``dynamodb_call_bound``).
    dynamodb_max_attempts: int = 2

    @staticmethod
    def from_env(**overrides: Any) -> AwsConfig:
        values: dict[str, Any] = {
            "endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
            "region_name": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return AwsConfig(**values)

    def session(self) -> boto3.session.Session:
        """A boto3 session; the region is ours, else the profile's, else an error for AWS."""
        session = self._session(self.region_name)
        if session.region_name:
            return session
        if not self.endpoint_url:
            raise InvalidInput(
                "no AWS region is set; pass --region or set AWS_REGION "
                "(or give the AWS profile a region: aws configure)"
            )
        # Emulators ignore the region, but botocore cannot sign a request without one.
        return self._session(EMULATOR_DEFAULT_REGION)

    def _session(self, region_name: str | None) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            region_name=region_name,
            profile_name=self.profile_name,
        )

    def botocore_config(self, read_timeout: float | None = None, s3: bool = False) -> Config:
        extra: dict[str, Any] = {}
        if s3:
            # Presigned URLs too use SigV4 (SigV2 query auth is deprecated by AWS).
            extra["signature_version"] = "s3v4"
        if self.endpoint_url and s3:
            # Emulators on an IP or localhost have no per-bucket host names.
            extra["s3"] = {"addressing_style": "path"}
            if self.endpoint_url.startswith("http://"):
                # Without TLS botocore SHA-256s every body to sign it, an extra pass over
                # each upload; our checksums (CRC32, SHA-256) still cover the bytes.
                extra["s3"]["payload_signing_enabled"] = False
        return Config(
            max_pool_connections=self.max_pool_connections,
            connect_timeout=self.connect_timeout,
            read_timeout=read_timeout or self.read_timeout,
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            **extra,
        )

    def dynamodb_call_bound(self) -> float:
        """The longest one DynamoDB call can last, retries included: every attempt connects
        and waits for its answer; botocore's standard mode sleeps at most min(2^(n-1), 20) s
        before retry n, or 5 s more when the service sends x-amz-retry-after
        (botocore/retries/standard.py, ExponentialBackoff.delay_amount)."""
        attempts = self.dynamodb_max_attempts
        sleeps = sum(min(2.0 ** (n - 1), 20.0) + 5.0 for n in range(1, attempts))
        return attempts * (self.dynamodb_connect_timeout + self.dynamodb_read_timeout) + sleeps

    def clients(self) -> tuple[S3Client, DynamoDBClient]:
        session = self.session()
        s3 = session.client(
            "s3", endpoint_url=self.endpoint_url, config=self.botocore_config(s3=True)
        )
        dynamodb = session.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            config=self.botocore_config(self.dynamodb_read_timeout).merge(
                Config(
                    connect_timeout=self.dynamodb_connect_timeout,
                    retries={
                        "mode": "standard",
                        "total_max_attempts": self.dynamodb_max_attempts,
                    },
                )
            ),
        )
        return s3, dynamodb


async def connect_temporal(
    address: str | None = None,
    namespace: str | None = None,
    *,
    runtime: Runtime | None = None,
    codec: PayloadCodec | Literal["env"] | None = "env",
    tracing: str | None = None,
    **kwargs: Any,
) -> Any:
    """A Temporal client from the SDK's env/profile configuration, overridden by arguments.
    ``runtime``: the SDK runtime its workers report metrics through (the default: none).
    ``codec``: the payload codec; by default the encryption keyring the environment names
    (largeattr.codec), if any, so the client, worker and CLI agree without extra flags.
    ``tracing``: OpenTelemetry mode (largeattr.tracing; default ``$LARGEATTR_TRACING``)."""
    from temporalio.client import Client
    from temporalio.envconfig import ClientConfig

    from largeattr import tracing as otel
    from largeattr.codec import codec_from_env
    from largeattr.failures import data_converter

    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    config.setdefault("target_host", "127.0.0.1:7233")
    config.setdefault(
        "data_converter", data_converter(codec=codec_from_env() if codec == "env" else codec)
    )
    config.update(kwargs)
    config["interceptors"] = [*config.get("interceptors", ()), *otel.interceptors(tracing)]
    if runtime is not None:
        config["runtime"] = runtime
    return await Client.connect(**config)


def exit_now(code: int) -> NoReturn:
    """Flush and leave without interpreter finalisation: the Temporal SDK's native threads
    can crash it after all work is done (temporalio/sdk-python issue 300, "Fatal Python
    error: PyGILState_Release"), which would turn a clean stop into exit code 139."""
    from largeattr import tracing

    tracing.flush()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
