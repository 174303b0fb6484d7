"""Read timeouts: the service answers later than DATAVERSE_READ_TIMEOUT, and still runs what it was sent."""

from __future__ import annotations

import httpx2
from mcp import Client

from sandbox import Fault, Sandbox

from ..tools.support import structured
from .support import faulty_server, first_account, instant_retries, named, settled, user_message

READ_TIMEOUT = 0.5  # ample for an unhurried request even on a loaded machine; each test warms the metadata first
SLOW = 1.2  # longer than the read timeout: the client gives up, the service carries on


async def test_a_read_that_times_out_fails_clearly(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries(max_attempts=2)
    async with Client(faulty_server(sandbox, retry, read_timeout=READ_TIMEOUT)) as client:
        arguments = {"table": "account", "id": account["accountid"]}
        structured(await client.call_tool("get_record", arguments))
        sandbox.faults.add(Fault(kind="delay", delay=SLOW, count=2, method="GET", path=account["accountid"]))
        result = await client.call_tool("get_record", arguments)
        message = user_message(result, "Timed out waiting for the answer", "raise the timeout")
        assert "written" not in message
        await settled(sandbox, "GET", 4)


async def test_a_create_slower_than_the_timeout_lands_once_after_the_retry(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, sleep = instant_retries()
    async with Client(faulty_server(sandbox, retry, read_timeout=READ_TIMEOUT)) as client:
        structured(await client.call_tool("describe_table", {"table": "account"}))  # only the write is slow
        sandbox.faults.add(Fault(kind="delay", delay=SLOW, count=1, method="POST"))
        created = structured(
            await client.call_tool("create_record", {"table": "account", "values": {"name": "Slow then quick"}})
        )
        assert len(sleep.waits) == 1
        await settled(sandbox, "POST", 2)  # the first attempt ran after the repeat: it met the repeat's row
    assert [row["accountid"] for row in await named(sandbox, http, "Slow then quick")] == [created["id"]]


async def test_a_create_that_always_times_out_says_it_may_have_landed_and_lands_whole_once(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries(max_attempts=2)
    async with Client(faulty_server(sandbox, retry, read_timeout=READ_TIMEOUT)) as client:
        structured(await client.call_tool("describe_table", {"table": "account"}))  # only the write is slow
        sandbox.faults.add(Fault(kind="delay", delay=SLOW, count=2, method="POST"))
        result = await client.call_tool(
            "create_record", {"table": "account", "values": {"name": "Timed out", "telephone1": "555-0177"}}
        )
        message = user_message(result, "Timed out waiting for the answer", "may or may not have been created")
        await settled(sandbox, "POST", 2)
    landed = await named(sandbox, http, "Timed out")
    assert [(row["name"], row["telephone1"]) for row in landed] == [("Timed out", "555-0177")]
    assert f"read row {landed[0]['accountid']} to check" in message


async def test_an_update_that_times_out_says_it_may_have_been_applied_and_applies_whole(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries(max_attempts=2)
    async with Client(faulty_server(sandbox, retry, read_timeout=READ_TIMEOUT)) as client:
        structured(await client.call_tool("describe_table", {"table": "account"}))  # only the write is slow
        sandbox.faults.add(Fault(kind="delay", delay=SLOW, count=2, method="PATCH"))
        result = await client.call_tool(
            "update_record",
            {
                "table": "account",
                "id": account["accountid"],
                "values": {"name": "Renamed slowly", "telephone1": "555-0188"},
            },
        )
        user_message(result, "Timed out", "may or may not have been applied: read the row to check")
        await settled(sandbox, "PATCH", 2)
    assert [row["telephone1"] for row in await named(sandbox, http, "Renamed slowly")] == ["555-0188"]
