"""Dropped connections, before the service ran a request or after it committed: nothing twice, nothing lost."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Fault, FaultKind, Sandbox

from ..tools.support import structured
from .support import answered, faulty_server, first_account, instant_retries, named, rows, user_message


async def test_reads_complete_through_dropped_connections(sandbox: Sandbox) -> None:
    retry, _ = instant_retries()
    seen: list[str] = []
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="drop", fraction=0.3, count=None, method="GET"))
        arguments: dict[str, Any] = {"table": "contact", "select": ["fullname"], "page_size": 40}
        while True:
            page = structured(await client.call_tool("query_records", arguments))
            seen += [row["contactid"] for row in page["rows"]]
            if not page.get("cursor"):
                break
            arguments = {"cursor": page["cursor"]}
    assert sandbox.faults.injected > 0
    assert len(seen) == len(set(seen)) == 120


@pytest.mark.parametrize("kind", ["drop", "drop_after"])
async def test_a_create_whose_connection_dropped_lands_once(
    sandbox: Sandbox, http: httpx2.AsyncClient, kind: FaultKind
) -> None:
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind=kind, count=2, method="POST"))
        created = structured(
            await client.call_tool("create_record", {"table": "account", "values": {"name": f"Dropped {kind}"}})
        )
    assert [row["accountid"] for row in await named(sandbox, http, f"Dropped {kind}")] == [created["id"]]


async def test_a_create_that_never_got_an_answer_names_the_row_to_check(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", count=20, method="POST"))
        result = await client.call_tool("create_record", {"table": "account", "values": {"name": "Never answered"}})
        landed = await named(sandbox, http, "Never answered")
        assert len(landed) == 1  # the first attempt committed; the repeats met their own key
        row_id = landed[0]["accountid"]
        user_message(
            result,
            "The connection to Dataverse failed",
            f"The account row may or may not have been created: read row {row_id} to check; a retry that sets "
            f"accountid to {row_id} cannot create a second row.",
        )
        # Doing what the message says: the retry with that id finds the row there and makes no second one.
        again = await client.call_tool(
            "create_record", {"table": "account", "values": {"accountid": row_id, "name": "Never answered"}}
        )
    user_message(again, "already exists", "Nothing was written.")
    assert len(await named(sandbox, http, "Never answered")) == 1


async def test_an_update_that_never_got_an_answer_says_it_may_have_been_applied(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", count=20, method="PATCH"))
        result = await client.call_tool(
            "update_record",
            {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0111"}},
        )
    user_message(
        result,
        "The connection to Dataverse failed",
        f"The update of account row {account['accountid']} may or may not have been applied: read the row to check.",
    )
    assert (await first_account(sandbox, http))["telephone1"] == "555-0111"


async def test_an_etag_update_whose_answer_was_lost_is_not_blamed_on_another_writer(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        etag = structured(await client.call_tool("get_record", {"table": "account", "id": account["accountid"]}))[
            "etag"
        ]
        sandbox.faults.add(Fault(kind="drop_after", count=1, method="PATCH"))
        result = await client.call_tool(
            "update_record",
            {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0123"}, "etag": etag},
        )
    # The repeat met the etag our own first attempt changed: only a read can tell whose change it was.
    user_message(result, "412", "may or may not have been applied: read the row to check")
    assert (await first_account(sandbox, http))["telephone1"] == "555-0123"


async def test_a_delete_whose_answer_was_lost_reports_the_row_deleted(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", count=1, method="DELETE"))
        deleted = structured(
            await client.call_tool("delete_record", {"table": "account", "id": account["accountid"], "confirm": True})
        )
    assert deleted["deleted"] is True
    assert await rows(sandbox, http, "accounts", f"$filter=accountid eq {account['accountid']}") == []


async def test_an_upsert_repeated_after_a_drop_does_not_claim_it_only_updated(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    row_id = str(uuid.uuid4())
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", count=1, method="PATCH"))
        upserted = structured(
            await client.call_tool("upsert_record", {"table": "account", "id": row_id, "values": {"name": "Upserted"}})
        )
    # The first attempt created the row; the repeat found it. Whether this call created it is unknowable.
    assert upserted["id"] == row_id and upserted["created"] is None
    assert [row["accountid"] for row in await named(sandbox, http, "Upserted")] == [row_id]


async def test_a_create_only_upsert_whose_read_back_fails_says_the_row_was_created(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    row_id = str(uuid.uuid4())
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        # Two steps: the create (its answer lost, the repeat meets the row) and the read that confirms it.
        sandbox.faults.add(Fault(kind="drop_after", count=1, method="PATCH"))
        sandbox.faults.add(Fault(status=503, count=20, method="GET", path=rf"accounts\({row_id}\)"))
        result = await client.call_tool(
            "upsert_record",
            {"table": "account", "id": row_id, "values": {"name": "Created, then unread"}, "mode": "create_only"},
        )
    user_message(result, f"The account row {row_id} was created; only reading it back failed.")
    assert answered(sandbox, "PATCH") == 2
    assert [row["accountid"] for row in await named(sandbox, http, "Created, then unread")] == [row_id]
