"""Fault injection: make the sandbox fail the way Dataverse and its network do, on demand.

A `Fault` applies to the next `count` matching requests, or to a `fraction` of them (drawn from a seeded
generator, so a test run is repeatable). Kinds:
    status      answer `status` instead of running the request (429 carries Retry-After and the real
                service-protection error; 503 the gateway's)
    after       run the request (a write is committed), then answer `status` instead of its response
    delay       receive the request, wait `delay` seconds, then run it normally (even if the client gave up)
    drop        close the connection without a complete response, before running the request
    drop_after  run the request, then close the connection without a complete response
Tests set faults through `Sandbox.faults` or `POST /_sandbox/faults` with the same fields as JSON.
A fault matches the `$batch` request itself first; inside a batch, each request is matched again by its own
method and path, for the kinds `status` and `after` (see `_batch.py`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import SERVICE_UNAVAILABLE, THROTTLED

FaultKind = Literal["status", "after", "delay", "drop", "drop_after"]


class ConnectionDropped(Exception):
    """Raised after the response has started, so the server closes the connection mid-response."""


@dataclass
class Fault:
    kind: FaultKind = "status"
    status: int = 429
    retry_after: float | None = 1
    delay: float = 0.0
    count: int | None = 1
    fraction: float | None = None
    method: str | None = None
    path: str | None = None  # a regular expression searched in the request path

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return not (self.path and not re.search(self.path, path))


@dataclass
class FaultInjector:
    """The faults in force; `pick` decides, request by request, which one applies."""

    faults: list[Fault] = field(default_factory=list)
    seed: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(self, fault: Fault) -> Fault:
        if fault.count is None and fault.fraction is None:
            raise ValueError("a fault needs a count of requests or a fraction of them")
        if fault.fraction is not None and not 0 <= fault.fraction <= 1:
            raise ValueError("fraction is between 0 and 1")
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def pick(self, method: str, path: str, kinds: Collection[FaultKind] | None = None) -> Fault | None:
        """The fault that applies to this request, if any; only one of `kinds` when given."""
        for fault in self.faults:
            if not fault.matches(method, path) or (kinds is not None and fault.kind not in kinds):
                continue
            if fault.fraction is not None:
                if self._random.random() >= fault.fraction:
                    continue
                if fault.count is not None:
                    fault.count -= 1
            elif fault.count is not None:
                fault.count -= 1
            if fault.count is not None and fault.count <= 0:
                self.faults.remove(fault)
            self.injected += 1
            return fault
        return None


def fault_response(fault: Fault) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of an injected failure, as the real service sends it."""
    headers = [(b"content-type", b"application/json; odata.metadata=minimal")]
    if fault.status == 429:
        code, message = (
            THROTTLED,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        )
        if fault.retry_after is not None:
            headers.append((b"retry-after", str(fault.retry_after).encode()))
    elif fault.status == 503:
        code, message = SERVICE_UNAVAILABLE, "The service is temporarily unavailable. Please try again later."
        if fault.retry_after is not None:
            headers.append((b"retry-after", str(fault.retry_after).encode()))
    else:
        code, message = SERVICE_UNAVAILABLE, f"Injected failure with status {fault.status}."
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    return fault.status, headers, body


class FaultMiddleware:
    """Applies the injector's faults to requests under `/api/`."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        fault = self.injector.pick(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind == "delay":
            # The service holds the whole request before it is slow, so it runs it even if the client stops waiting.
            received = await _whole_request(receive)
            await anyio.sleep(fault.delay)
            await self.app(scope, _replay(received, receive), send)
            return
        if fault.kind in ("after", "drop_after"):
            await self.app(scope, receive, _discard)
        if fault.kind in ("drop", "drop_after"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"value": [', "more_body": True})
            raise ConnectionDropped("connection dropped by fault injection")
        status, headers, body = fault_response(fault)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _discard(message: Message) -> None:
    """Swallow the real response of a request whose answer the fault replaces."""


async def _whole_request(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands out `messages` again."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def fault_from_json(data: Any) -> Fault:
    """A fault from the control endpoint's JSON; raises ValueError on unknown fields."""
    if not isinstance(data, dict):
        raise ValueError("send a JSON object with the fault's fields")
    known = set(Fault.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return Fault(**data)
