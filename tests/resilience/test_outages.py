"""503 bursts: the gateway answers "unavailable", before the service ran a request or after it committed."""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client

from sandbox import Fault, FaultKind, Sandbox

from ..tools.support import structured
from .support import answered, faulty_server, first_account, instant_retries, named, rows, user_message


async def test_reads_in_a_503_burst_are_retried_and_complete(sandbox: Sandbox) -> None:
    retry, sleep = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(status=503, count=4, method="GET"))
        page = structured(await client.call_tool("query_records", {"table": "account", "select": ["name"]}))
    assert len(page["rows"]) == 50 and page["cursor"]
    assert len(sleep.waits) == 4


async def test_a_create_answered_503_after_commit_reports_success_and_one_row(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="after", status=503, count=2, method="POST"))
        created = structured(
            await client.call_tool("create_record", {"table": "account", "values": {"name": "Committed in a burst"}})
        )
    assert created["created"] is True
    assert [row["accountid"] for row in await named(sandbox, http, "Committed in a burst")] == [created["id"]]
    assert answered(sandbox, "POST") == 3  # committed, then two repeats that met their own row


@pytest.mark.parametrize("kind", ["status", "after"])
async def test_an_update_in_a_503_burst_is_applied(sandbox: Sandbox, http: httpx2.AsyncClient, kind: FaultKind) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind=kind, status=503, count=3, method="PATCH"))
        updated = structured(
            await client.call_tool(
                "update_record",
                {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0142"}},
            )
        )
    assert updated == {"table": "account", "id": account["accountid"], "created": False}
    assert (await first_account(sandbox, http))["telephone1"] == "555-0142"


@pytest.mark.parametrize("kind", ["status", "after"])
async def test_a_delete_in_a_503_burst_deletes_and_says_so(
    sandbox: Sandbox, http: httpx2.AsyncClient, kind: FaultKind
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind=kind, status=503, count=2, method="DELETE"))
        deleted = structured(
            await client.call_tool("delete_record", {"table": "account", "id": account["accountid"], "confirm": True})
        )
    # After a commit answered 503, the repeat finds the row gone: that is this delete's own success.
    assert deleted == {"table": "account", "id": account["accountid"], "deleted": True}
    assert await rows(sandbox, http, "accounts", f"$filter=accountid eq {account['accountid']}") == []


async def test_an_update_outlasting_the_retries_says_it_may_have_been_applied(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="after", status=503, count=20, method="PATCH"))
        result = await client.call_tool(
            "update_record", {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0199"}}
        )
    user_message(
        result,
        "503",
        f"The update of account row {account['accountid']} may or may not have been applied: read the row to check.",
    )
    assert (await first_account(sandbox, http))["telephone1"] == "555-0199"  # it was, once the gateway lied


async def test_a_read_outlasting_the_retries_fails_clearly(sandbox: Sandbox) -> None:
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(status=503, count=20, method="GET"))
        result = await client.call_tool("get_record", {"table": "account", "key": {"accountnumber": "A-1001"}})
    message = user_message(result, "Dataverse answered 503", "temporarily unavailable", "try again in a moment")
    assert "written" not in message  # a read has nothing to report about writes
