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
from typing import Any

import temporalio.api.failure.v1
from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from largeattr.errors import BUSINESS_ERRORS, LargeAttrError, error_class


class LargeAttrFailureConverter(DefaultFailureConverter):
    """The default converter, plus ``LargeAttrError`` to and from ``ApplicationError``."""

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

    def from_failure(
        self,
        failure: temporalio.api.failure.v1.Failure,
        payload_converter: PayloadConverter,
    ) -> BaseException:
        return our_error(super().from_failure(failure, payload_converter))


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


def data_converter(base: DataConverter = DataConverter.default) -> DataConverter:
    """``base`` (keeping its payload converter and codec) with our failure mapping."""
    return dataclasses.replace(base, failure_converter_class=LargeAttrFailureConverter)


def with_our_failures(temporal: Client) -> Client:
    """The same connection, with our failure mapping (unchanged if it already has it)."""
    if temporal.data_converter.failure_converter_class is LargeAttrFailureConverter:
        return temporal
    config: dict[str, Any] = dict(temporal.config())
    config["data_converter"] = data_converter(temporal.data_converter)
    return Client(**config)
