"""Web API requests recorded as the product sends them, and replayed with a plain `httpx2.AsyncClient`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import httpx2


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    url: str
    headers: dict[str, str]


@contextlib.contextmanager
def recording_requests() -> Iterator[list[RecordedRequest]]:
    """Every request any `httpx2.AsyncClient` of this process sends meanwhile, as sent."""
    recorded: list[RecordedRequest] = []
    send = httpx2.AsyncClient.send

    async def recording_send(client: httpx2.AsyncClient, request: httpx2.Request, **options: Any) -> httpx2.Response:
        recorded.append(RecordedRequest(request.method, str(request.url), dict(request.headers)))
        return await send(client, request, **options)

    with mock.patch.object(httpx2.AsyncClient, "send", recording_send):
        yield recorded


async def replay(http: httpx2.AsyncClient, recorded: RecordedRequest) -> httpx2.Response:
    """The recorded request again, with its own request id, as a caller without the product would send it."""
    headers = recorded.headers | {"x-ms-client-request-id": str(uuid.uuid4())}
    response = await http.send(http.build_request(recorded.method, recorded.url, headers=headers))
    response.raise_for_status()
    return response


async def send_bare(http: httpx2.AsyncClient, requests: list[RecordedRequest]) -> None:
    """The recorded requests, one after the other, each answer decoded as a caller would."""
    for recorded in requests:
        (await replay(http, recorded)).json()
