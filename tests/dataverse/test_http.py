"""The process's HTTP client: timeouts, proxy and CA bundle as configured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dataverse import ConnectionSettings, DataverseClient, RequestTimeout, StaticTokenProvider, build_http_client
from sandbox import Fault, Sandbox


class RecordingProxy:
    """A forward proxy on loopback that answers WhoAmI itself and remembers each request line it saw."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.request_lines.append(head.split(b"\r\n", 1)[0].decode())
        body = json.dumps({"UserId": "u", "BusinessUnitId": "b", "OrganizationId": "o"}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def proxy() -> AsyncIterator[RecordingProxy]:
    recorder = RecordingProxy()
    recorder.server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    async with recorder.server:
        yield recorder


@pytest.mark.parametrize(
    ("settings", "connect", "read"),
    [
        (ConnectionSettings(), 10.0, 120.0),
        (ConnectionSettings(connect_timeout=0, read_timeout=0), None, None),
        (ConnectionSettings(connect_timeout=3, read_timeout=45), 3, 45),
    ],
)
def test_timeouts_unset_default_and_zero_means_no_limit(
    settings: ConnectionSettings, connect: float | None, read: float | None
) -> None:
    timeout = settings.timeout()
    assert (timeout.connect, timeout.read) == (connect, read)


def test_a_negative_timeout_and_a_missing_ca_bundle_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ConnectionSettings(read_timeout=-1).timeout()
    with pytest.raises(ValueError, match="CA bundle"):
        build_http_client(ConnectionSettings(ca_bundle=tmp_path / "missing.pem"))


async def test_the_read_timeout_applies(sandbox: Sandbox) -> None:
    sandbox.faults.add(Fault(kind="delay", delay=1.0, count=10))
    async with build_http_client(ConnectionSettings(read_timeout=0.1)) as http:
        dataverse = DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token()))
        dataverse.transport.retry.max_attempts = 1
        with pytest.raises(RequestTimeout):
            await dataverse.whoami()


async def test_requests_go_through_the_configured_proxy(proxy: RecordingProxy) -> None:
    async with build_http_client(ConnectionSettings(proxy=proxy.url)) as http:
        dataverse = DataverseClient(http, "http://127.0.0.1:9", StaticTokenProvider("token"))
        assert (await dataverse.whoami()).user_id == "u"
    assert proxy.request_lines == ["GET http://127.0.0.1:9/api/data/v9.2/WhoAmI HTTP/1.1"]


async def test_the_standard_proxy_variable_is_honoured(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with build_http_client() as http:
        dataverse = DataverseClient(http, "http://127.0.0.1:9", StaticTokenProvider("token"))
        await dataverse.whoami()
    assert len(proxy.request_lines) == 1
