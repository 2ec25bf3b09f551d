"""AWS errors, read once: the error a user can act on, and the codes the steps test for."""

from __future__ import annotations

from typing import NoReturn

from botocore.exceptions import ClientError, NoCredentialsError

from largeattr.errors import AccessDenied, BucketNotFound, InvalidInput, ItemTooLarge, TableNotFound

_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        # DynamoDB's answers to a wrong secret key or a missing signature
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "RequestTimeTooSkewed",
    }
)


def translate(err: Exception, *, table: str = "", bucket: str = "") -> Exception:
    """The error a user can act on, for an AWS error that no retry will fix.

    Transient errors (throttling, 5xx, timeouts, resets) come back unchanged: they are
    retried, by botocore first and then by the activity's retry policy.
    """
    if isinstance(err, NoCredentialsError):
        return AccessDenied(
            "no AWS credentials were found; configure the standard credential chain "
            "(environment, ~/.aws, instance role) or pass an endpoint with test credentials"
        )
    if not isinstance(err, ClientError):
        return err
    code = error_code(err)
    message = err.response.get("Error", {}).get("Message", "")
    if code == "ResourceNotFoundException":
        return TableNotFound(
            f"DynamoDB table {table!r} does not exist in this account and region; "
            "create it (`largeattr setup`) or fix the table name",
            table=table,
        )
    if code == "NoSuchBucket":
        return BucketNotFound(
            f"S3 bucket {bucket!r} does not exist; create it (`largeattr setup`) "
            "or fix the bucket name",
            bucket=bucket,
        )
    if code in _ACCESS_CODES or _status(err) == 403 or code == "403":
        # A HEAD request's 403 has no body, so no code: botocore reports it as "403".
        # Name only what the call used: an S3-only call has no table.
        used = " and ".join(
            f"{kind} {name!r}" for kind, name in (("table", table), ("bucket", bucket)) if name
        )
        return AccessDenied(
            f"AWS refused the request ({code}: {message}); check the credentials and that "
            f"they may use {used or 'this resource'}"
        )
    if code == "ValidationException":
        if "size" in message.lower() and "exceed" in message.lower():
            return ItemTooLarge(
                f"DynamoDB rejected the item as too large ({message}); declare the biggest "
                "attributes as large attributes so they go to S3"
            )
        return InvalidInput(f"DynamoDB rejected the request: {message}")
    return err


def reraise(err: Exception, *, table: str = "", bucket: str = "") -> NoReturn:
    """Raise the error a user can act on for ``err``. An error ``translate`` leaves alone
    is raised as it is: ``raise err from err`` would make it its own cause, a cycle that
    Temporal cannot serialise (the activity then fails with a RecursionError instead)."""
    translated = translate(err, table=table, bucket=bucket)
    if translated is err:
        raise err
    raise translated from err


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> object:
    return err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_not_found(err: ClientError) -> bool:
    return error_code(err) in {"404", "NoSuchKey", "NotFound"}


def is_conditional_failure(err: ClientError) -> bool:
    """DynamoDB refused a write because its condition did not hold."""
    return error_code(err) == "ConditionalCheckFailedException"


def is_precondition_failed(err: ClientError) -> bool:
    """S3 refused a conditional write (If-None-Match: the key already holds an object)."""
    return error_code(err) == "PreconditionFailed" or _status(err) == 412
