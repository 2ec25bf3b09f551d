"""Our errors across the Temporal wire, mapped in one place.

An activity or a saga that raises a ``LargeAttrError`` fails with an ``ApplicationError``
whose type is the error's class name and whose one detail is its ``details`` dict; whoever
reads that failure with this converter (the saga reading an activity's failure, the client
reading a saga's) gets the same class back. Plain Temporal clients see the
``ApplicationError``, as before. Our errors carry no stack trace: their message says what
happened and what to do, and the Web UI shows it first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import temporalio.api.failure.v1
from temporalio.client import Client
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    PayloadCodec,
    PayloadConverter,
)
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from largeattr.errors import BUSINESS_ERRORS, LargeAttrError, error_class


class LargeAttrFailureConverter(DefaultFailureConverter):
    """The default converter, plus ``LargeAttrError`` to and from ``ApplicationError``."""

    #: Move each failure's message and stack trace into its (codec-encoded) attributes.
    hide_messages = False

    def __init__(self) -> None:
        # Ours, not the SDK's flag: the stack trace is trimmed before it is hidden.
        super().__init__(encode_common_attributes=False)

    def to_failure(
        self,
        exception: BaseException,
        payload_converter: PayloadConverter,
        failure: temporalio.api.failure.v1.Failure,
    ) -> None:
        if isinstance(exception, LargeAttrError):
            exception = application_error(exception)
        super().to_failure(exception, payload_converter, failure)
        if isinstance(exception, ApplicationError) and error_class(exception.type):
            failure.stack_trace = ""
        _trim_stack_traces(failure)
        if self.hide_messages:
            _hide_messages(failure, payload_converter)

    def from_failure(
        self,
        failure: temporalio.api.failure.v1.Failure,
        payload_converter: PayloadConverter,
    ) -> BaseException:
        return our_error(super().from_failure(failure, payload_converter))


class LargeAttrEncryptedFailureConverter(LargeAttrFailureConverter):
    """With a payload codec (largeattr.codec): a message may quote input, so it travels
    encrypted like the payloads; the Web UI shows it through the codec server."""

    hide_messages = True


def _hide_messages(
    failure: temporalio.api.failure.v1.Failure, payload_converter: PayloadConverter
) -> None:
    """The SDK's ``encode_common_attributes``, over the whole cause chain: a re-raised error
    decoded earlier carries its message restored *and* its ``encoded_attributes`` (the SDK's
    ``from_failure`` keeps both), and a copied failure brings its causes as they were; so
    every level is blanked, and encoded where it is not yet. ``from_failure`` restores them."""
    for level in _cause_chain(failure):
        if not level.HasField("encoded_attributes"):
            hidden = {"message": level.message, "stack_trace": level.stack_trace}
            level.encoded_attributes.CopyFrom(payload_converter.to_payloads([hidden])[0])
        level.message = "Encoded failure"
        level.stack_trace = ""


#: The longest stack trace a failure keeps (its innermost frames). The server refuses a
#: failure over its size limit and shows "Failure exceeds size limit." instead of it (seen
#: in the Web UI's pending activity for an S3 call retried under a long install path), so the
#: reason an operator needs would be lost to the frames around it.
STACK_TRACE_LIMIT = 1500


def _trim_stack_traces(failure: temporalio.api.failure.v1.Failure) -> None:
    """Keep the message and the innermost frames of each failure in the cause chain."""
    for level in _cause_chain(failure):
        if len(level.stack_trace) > STACK_TRACE_LIMIT:
            level.stack_trace = "...\n" + level.stack_trace[-STACK_TRACE_LIMIT:]


def _cause_chain(
    failure: temporalio.api.failure.v1.Failure,
) -> Iterator[temporalio.api.failure.v1.Failure]:
    """``failure`` and each of its causes, outermost first (mutable in place)."""
    while True:
        yield failure
        if not failure.HasField("cause"):
            return
        failure = failure.cause


def application_error(error: LargeAttrError) -> ApplicationError:
    """The ``ApplicationError`` one of our errors travels as. A business verdict
    (``BUSINESS_ERRORS``) is category BENIGN: the SDK then logs its activity failure at
    DEBUG instead of a WARNING with a traceback, and leaves it out of the failure metrics
    (temporalio 1.35, ``temporalio/worker/_activity.py``; ``ApplicationErrorCategory``)."""
    details = (error.details,) if error.details else ()
    category = (
        ApplicationErrorCategory.BENIGN
        if isinstance(error, BUSINESS_ERRORS)
        else ApplicationErrorCategory.UNSPECIFIED
    )
    ours = ApplicationError(error.message, *details, type=error.type_name, category=category)
    ours.__cause__ = error.__cause__
    ours.__suppress_context__ = True
    return ours


def our_error(error: BaseException) -> BaseException:
    """Our error class for an ``ApplicationError`` that carries one's name, else ``error``.
    The sagas apply it too, so a worker built without this converter still decides right."""
    if not isinstance(error, ApplicationError):
        return error
    cls = error_class(error.type)
    if cls is None:
        return error
    first = error.details[0] if error.details else None
    ours = cls(error.message, **(first if isinstance(first, dict) else {}))
    ours.__cause__ = error.__cause__
    return ours


def data_converter(
    base: DataConverter = DataConverter.default, codec: PayloadCodec | None = None
) -> DataConverter:
    """``base`` (keeping its payload converter, and its codec unless ``codec`` is given)
    with our failure mapping; failure messages are encoded too when there is a codec."""
    codec = codec or base.payload_codec
    failures = LargeAttrEncryptedFailureConverter if codec else LargeAttrFailureConverter
    return dataclasses.replace(base, payload_codec=codec, failure_converter_class=failures)


def with_our_failures(temporal: Client) -> Client:
    """The same connection, with our failure mapping (unchanged if it already has it)."""
    if issubclass(temporal.data_converter.failure_converter_class, LargeAttrFailureConverter):
        return temporal
    config: dict[str, Any] = dict(temporal.config())
    config["data_converter"] = data_converter(temporal.data_converter)
    return Client(**config)
