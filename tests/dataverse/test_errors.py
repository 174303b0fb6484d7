"""Every error class of the client, produced by a real sandbox response, with a message a person can act on."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import httpx2
import pytest

from dataverse import (
    AuthenticationFailed,
    DataverseClient,
    DataverseError,
    DuplicateRecord,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RequestTimeout,
    ServiceUnavailable,
    StaticTokenProvider,
    Throttled,
    TransportError,
    ValidationFailed,
)
from dataverse._errors import normalize_code
from sandbox import Fault, Sandbox

from .support import instant_retries


def client(sandbox: Sandbox, http: httpx2.AsyncClient, user: str = "admin", **options: Any) -> DataverseClient:
    retry, _ = instant_retries(max_attempts=3)
    options.setdefault("retry", retry)
    return DataverseClient(
        http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token(user)), **options
    )


def assert_reads_well(error: DataverseError, *parts: str) -> None:
    text = str(error)
    for part in parts:
        assert part in text, text
    assert "Bearer" not in text and "eyJ" not in text  # never a token
    assert text.endswith(".")


@pytest.mark.parametrize("code", ["0x80040217", "-2147220969", "0X80040217"])
def test_both_forms_of_a_dataverse_code_are_understood(code: str) -> None:
    assert normalize_code(code) == 0x80040217


async def test_not_found(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    row_id = uuid.uuid4()
    with pytest.raises(NotFound) as raised:
        await client(sandbox, http).get("account", row_id)
    assert raised.value.status == 404
    assert raised.value.code_text == "0x80040217"
    assert raised.value.request_id
    assert_reads_well(raised.value, "404", "0x80040217", f"account With Id = {row_id} Does Not Exist", "Check the id")


async def test_precondition_failed(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    row = await dataverse.get("account", {"accountnumber": "A-1002"}, select=["name"])
    await dataverse.update("account", row["accountid"], {"name": "Changed"}, etag=row["@odata.etag"])
    with pytest.raises(PreconditionFailed) as raised:
        await dataverse.update("account", row["accountid"], {"name": "Stale"}, etag=row["@odata.etag"])
    assert_reads_well(raised.value, "412", "read it again")
    with pytest.raises(PreconditionFailed):
        await dataverse.delete("account", row["accountid"], etag=row["@odata.etag"])


async def test_duplicate_record_on_a_first_attempt_is_reported(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    existing = await dataverse.get("account", {"accountnumber": "A-1003"}, select=["name"])
    with pytest.raises(DuplicateRecord) as raised:
        await dataverse.create("account", {"accountid": existing["accountid"], "name": "Copy"})
    assert_reads_well(raised.value, "0x80040237", "already exists")


async def test_permission_denied(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    with pytest.raises(PermissionDenied) as raised:
        await client(sandbox, http, "carol").create("account", {"name": "Reader tries"})
    assert_reads_well(raised.value, "403", "prvCreateAccount", "security role")


async def test_validation_failed(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await client(sandbox, http).create("account", {"revnue": 5})
    assert_reads_well(raised.value, "400", "'revnue'")


async def test_authentication_failed_after_one_refresh(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    expired = sandbox.token("admin", lifetime=-60)
    dataverse = DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(expired))
    with pytest.raises(AuthenticationFailed) as raised:
        await dataverse.whoami()
    assert_reads_well(raised.value, "401", "expired", "sign in again")
    assert expired not in str(raised.value)


async def test_throttled_when_retry_after_exceeds_the_bound(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, sleep = instant_retries(max_retry_after=30)
    sandbox.faults.add(Fault(status=429, retry_after=120, count=1))
    with pytest.raises(Throttled) as raised:
        await client(sandbox, http, retry=retry).whoami()
    assert raised.value.retry_after == 120
    assert sleep.waits == []
    assert_reads_well(raised.value, "429", "Number of requests exceeded the limit", "wait")


async def test_service_unavailable_after_the_retries(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.faults.add(Fault(status=503, count=3))
    with pytest.raises(ServiceUnavailable) as raised:
        await client(sandbox, http).whoami()
    assert_reads_well(raised.value, "503", "temporarily unavailable")


async def test_a_create_is_not_retried_after_a_503_before_it_ran(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, sleep = instant_retries()
    sandbox.faults.add(Fault(status=503, count=1, method="POST"))
    written = await client(sandbox, http, retry=retry).create("account", {"name": "Second try lands"})
    assert len(sleep.waits) == 1
    assert (await client(sandbox, http).get("account", written.id, select=["name"]))["name"] == "Second try lands"


async def test_request_timeout(sandbox: Sandbox) -> None:
    sandbox.faults.add(Fault(kind="delay", delay=1.0, count=3))
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5, read=0.1)) as http:
        with pytest.raises(RequestTimeout) as raised:
            await client(sandbox, http).whoami()
    assert_reads_well(raised.value, "Timed out", "raise the timeout")


async def test_transport_error_when_nothing_listens(http: httpx2.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retry, _ = instant_retries(max_attempts=2)
    dataverse = DataverseClient(http, f"http://127.0.0.1:{port}", StaticTokenProvider("token"), retry=retry)
    with pytest.raises(TransportError) as raised:
        await dataverse.whoami()
    assert_reads_well(raised.value, "Could not connect", "reachable")


async def test_an_update_whose_connection_dropped_is_retried(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    sandbox.faults.add(Fault(kind="drop", count=1, method="PATCH"))
    row = await dataverse.get("account", {"accountnumber": "A-1004"}, select=["name"])
    await dataverse.update("account", row["accountid"], {"name": "After a drop"})
    assert (await dataverse.get("account", row["accountid"], select=["name"]))["name"] == "After a drop"


@pytest.mark.parametrize(
    "url",
    ["http://contoso.crm.dynamics.com", "ftp://127.0.0.1", "https://contoso.crm.dynamics.com/?x=1", "not a url"],
)
async def test_environment_urls_must_be_https_unless_loopback(http: httpx2.AsyncClient, url: str) -> None:
    with pytest.raises(ValueError, match=r"https://|service URL|query"):
        DataverseClient(http, url, StaticTokenProvider("token"))
