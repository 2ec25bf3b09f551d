"""Fault injection on boto3 clients through botocore's event hooks.

Used only by tests, on the clients an in-process worker's activities use. A rule fails the
matching AWS call before it is sent (nothing reaches the server), or after the server
answered (the write happened but the caller never hears of it: the ambiguous case), or
delays it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError


def client_error(code: str, status: int = 500, operation: str = "Call") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def connection_error() -> Exception:
    return EndpointConnectionError(endpoint_url="http://127.0.0.1 (injected)")


@dataclass
class Rule:
    operation: str  # e.g. "PutObject", "s3.PutObject", or "*"
    phase: str  # "before" | "after"
    times: int  # how many matching calls to hit (-1: all)
    error: Callable[[], Exception] | None = None
    delay: float = 0.0
    match: Callable[[dict[str, Any]], bool] | None = None
    action: Callable[[dict[str, Any]], None] | None = None
    hits: int = 0


@dataclass
class Faults:
    """Attach to clients with ``Faults().attach(s3, dynamodb)``."""

    rules: list[Rule] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _params: threading.local = field(default_factory=threading.local)

    def attach(self, *clients: Any) -> Faults:
        for client in clients:
            events = client.meta.events
            events.register("before-parameter-build.*.*", self._before)
            events.register("after-call.*.*", self._after)
        return self

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.calls.clear()
            self.injected.clear()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def fail(
        self,
        operation: str,
        times: int = 1,
        error: Callable[[], Exception] | None = None,
        *,
        phase: str = "before",
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Rule:
        return self.add(
            Rule(
                operation,
                phase,
                times,
                error or (lambda: client_error("InternalError")),
                match=match,
            )
        )

    def slow(self, operation: str, seconds: float, times: int = -1) -> Rule:
        return self.add(Rule(operation, "before", times, delay=seconds))

    def before(
        self, operation: str, action: Callable[[dict[str, Any]], None], times: int = 1
    ) -> Rule:
        """Run ``action(params)`` just before a matching call (e.g. a racing writer)."""
        return self.add(Rule(operation, "before", times, action=action))

    # -------------------------------------------------------------- hooks

    def _matching(self, phase: str, name: str, params: dict[str, Any]) -> list[Rule]:
        operation = name.partition(".")[2]
        hit = []
        with self._lock:
            for rule in self.rules:
                if rule.phase != phase or rule.times == 0:
                    continue
                if rule.operation not in ("*", operation, name):
                    continue
                if rule.match is not None and not rule.match(params):
                    continue
                if rule.times > 0:
                    rule.times -= 1
                rule.hits += 1
                self.injected[f"{phase}:{name}"] += 1
                hit.append(rule)
        return hit

    @staticmethod
    def _name(model: Any) -> str:
        return f"{model.service_model.endpoint_prefix}.{model.name}"

    def _before(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        name = self._name(model)
        with self._lock:
            self.calls[name] += 1
        self._params.value = dict(params)
        for rule in self._matching("before", name, params):
            if rule.action is not None:
                rule.action(params)
            if rule.delay:
                time.sleep(rule.delay)
            if rule.error is not None:
                raise rule.error()

    def _after(self, model: Any, **kwargs: Any) -> None:
        params = getattr(self._params, "value", {})
        for rule in self._matching("after", self._name(model), params):
            if rule.error is not None:
                raise rule.error()
