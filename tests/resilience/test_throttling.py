"""429 storms: Dataverse's service protection throttles half the requests; reads complete, writes land once."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp import Client

from sandbox import Fault, Sandbox

from ..tools.support import structured
from .support import answered, faulty_server, first_account, instant_retries, named, rows, user_message

# Half of all requests throttled: one request in 64 would meet six 429s in a row, the default attempt budget.
STORM = Fault(status=429, retry_after=1, fraction=0.5, count=None)
STORM_ATTEMPTS = 16


async def test_a_paged_query_in_a_429_storm_returns_every_row_exactly_once(sandbox: Sandbox) -> None:
    retry, sleep = instant_retries(STORM_ATTEMPTS)
    sandbox.faults.add(Fault(**STORM.__dict__))
    seen: list[str] = []
    async with Client(faulty_server(sandbox, retry)) as client:
        arguments: dict[str, Any] = {"table": "account", "select": ["name"], "orderby": "name", "page_size": 7}
        while True:
            page = structured(await client.call_tool("query_records", arguments))
            seen += [row["accountid"] for row in page["rows"]]
            if not page.get("cursor"):
                break
            arguments = {"cursor": page["cursor"]}
    assert len(seen) == len(set(seen)) == 60
    assert sleep.waits and set(sleep.waits) == {1.0}  # each retry waited what Retry-After said
    assert len(sleep.waits) == sandbox.faults.injected


async def test_creates_in_a_429_storm_land_exactly_once(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    retry, sleep = instant_retries(STORM_ATTEMPTS)
    names = [f"Storm account {number}" for number in range(6)]
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(**STORM.__dict__))
        created = [
            structured(await client.call_tool("create_record", {"table": "account", "values": {"name": name}}))
            for name in names
        ]
    assert sleep.waits, "the storm throttled some requests"
    for name, result in zip(names, created, strict=True):
        assert [row["accountid"] for row in await named(sandbox, http, name)] == [result["id"]]


async def test_a_duplicate_create_after_a_429_is_refused_not_reported_as_landed(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    existing = await first_account(sandbox, http)
    retry, _ = instant_retries()
    sandbox.faults.add(Fault(status=429, retry_after=1, count=1, method="POST"))
    async with Client(faulty_server(sandbox, retry)) as client:
        result = await client.call_tool(
            "create_record",
            {"table": "account", "values": {"accountid": existing["accountid"], "name": "Impostor"}},
        )
    # The throttled attempt certainly did not run, so the duplicate is the caller's, not an earlier success.
    user_message(result, "0x80040237", "Nothing was written.")
    assert await named(sandbox, http, "Impostor") == []
    assert (await first_account(sandbox, http))["name"] == existing["name"]


async def test_a_write_throttled_past_the_budget_says_nothing_was_written(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, sleep = instant_retries()
    sandbox.faults.add(Fault(status=429, retry_after=1, count=20, method="PATCH"))
    async with Client(faulty_server(sandbox, retry)) as client:
        result = await client.call_tool(
            "update_record", {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0100"}}
        )
    user_message(result, "429", "Nothing was written.", "wait a minute")
    assert len(sleep.waits) == 5 and answered(sandbox, "PATCH") == 6
    assert (await rows(sandbox, http, "accounts", f"$filter=accountid eq {account['accountid']}"))[0][
        "telephone1"
    ] == account["telephone1"]
