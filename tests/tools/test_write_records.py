"""write_records end to end: an MCP client, the real server and the sandbox over HTTP, with its request log."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Fault, Sandbox
from server import ConfigurationError, build_server

from ..resilience.support import API, instant_retries, rows
from .support import error_text, server_for, settings_for, structured
from .test_audit import audited
from .test_session import answering, row_exists


def writes_sent(sandbox: Sandbox) -> list[str]:
    return [f"{record.method} {record.path}" for record in sandbox.request_log.records if record.method != "GET"]


async def leads(sandbox: Sandbox, http: httpx2.AsyncClient, count: int) -> list[str]:
    return [row["leadid"] for row in await rows(sandbox, http, "leads", f"$select=subject&$top={count}")]


def account_and_contacts(account: str) -> list[dict[str, Any]]:
    """An account, then three contacts whose company is that account, referred to by the caller's own id."""
    writes: list[dict[str, Any]] = [
        {"action": "create", "table": "account", "id": account, "values": {"name": "Batch Coffee"}}
    ]
    writes += [
        {
            "action": "create",
            "table": "contacts",
            "values": {"lastname": name, "parentcustomerid": {"table": "account", "id": account}},
        }
        for name in ("Ito", "Okafor", "Silva")
    ]
    return writes


async def test_an_account_and_its_contacts_are_created_together_by_the_callers_ids(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = str(uuid.uuid4())
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("write_records", {"writes": account_and_contacts(account)}))
    assert (result["written"], result["not_written"], result["unknown"]) == (4, 0, 0)
    assert result["created"][0] == account and len(set(result["created"])) == 4
    assert "failures" not in result and "note" not in result
    assert writes_sent(sandbox) == [f"POST {API}/$batch"]  # one change set
    contacts = await rows(sandbox, http, "contacts", f"$select=lastname&$filter=_parentcustomerid_value eq {account}")
    assert sorted(row["contactid"] for row in contacts) == sorted(result["created"][1:])


async def test_a_set_with_one_invalid_write_sends_nothing_and_names_it(sandbox: Sandbox) -> None:
    writes = account_and_contacts(str(uuid.uuid4()))
    writes[2]["values"]["lastnme"] = "typo"
    writes.append({"action": "update", "table": "account", "values": {"name": "x"}})  # neither id nor key
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox)) as client:
        message = error_text(await client.call_tool("write_records", {"writes": writes}))
    assert "2 of 5 writes are refused, so none was sent." in message
    assert "writes[2]: No column 'lastnme' on contact; did you mean 'lastname'" in message
    assert "writes[4]: give the row's id, or its alternate key as key" in message
    assert "writes[0]" not in message and "Nothing was written." in message
    assert writes_sent(sandbox) == []


async def test_a_write_that_refers_to_a_row_created_later_is_refused(sandbox: Sandbox) -> None:
    writes = list(reversed(account_and_contacts(str(uuid.uuid4()))))
    async with Client(server_for(sandbox)) as client:
        message = error_text(await client.call_tool("write_records", {"writes": writes}))
    assert "writes[0]: it refers to the row writes[3] creates, which comes later: create it first." in message


def with_duplicate_third(atomic: bool) -> dict[str, Any]:
    """Four writes on two tables whose third repeats a seeded account's alternate key (accountnumber A-1001)."""
    return {
        "atomic": atomic,
        "writes": [
            {"action": "create", "table": "account", "id": str(uuid.uuid4()), "values": {"name": "First"}},
            {"action": "create", "table": "contact", "id": str(uuid.uuid4()), "values": {"lastname": "Second"}},
            {"action": "create", "table": "account", "values": {"name": "Third", "accountnumber": "A-1001"}},
            {"action": "create", "table": "account", "id": str(uuid.uuid4()), "values": {"name": "Fourth"}},
        ],
    }


async def test_a_write_the_service_refuses_leaves_nothing_written_when_atomic(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    arguments = with_duplicate_third(atomic=True)
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("write_records", arguments))
    assert (result["written"], result["not_written"], result["unknown"], result["created"]) == (0, 4, 0, [])
    assert result["note"].startswith("The change set of 4 writes failed at writes[2] (create of account)")
    assert [(failure["index"], failure["outcome"]) for failure in result["failures"]] == [(2, "not written")]
    assert "A record with matching key values already exists." in result["note"]
    assert "Nothing was written. The change set was rolled back." in result["note"]
    for write in arguments["writes"]:
        if "id" in write:
            assert not await row_exists(sandbox, http, f"{write['table']}s", write["id"])


async def test_each_write_on_its_own_leaves_exactly_the_others_written(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    arguments = with_duplicate_third(atomic=False)
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("write_records", arguments))
    writes = arguments["writes"]
    assert (result["written"], result["not_written"], result["unknown"]) == (3, 1, 0)
    assert result["created"] == [writes[0]["id"], writes[1]["id"], writes[3]["id"]]
    [failure] = result["failures"]
    assert (failure["index"], failure["table"], failure["outcome"]) == (2, "account", "not written")
    assert failure["error"].startswith("0x80040237: ") and failure["error"].count(". ") <= 1
    for write in (writes[0], writes[1], writes[3]):
        assert await row_exists(sandbox, http, f"{write['table']}s", write["id"])
    assert len(await rows(sandbox, http, "accounts", "$select=name&$filter=name eq 'Third'")) == 0


async def test_a_lost_answer_is_read_back_and_nothing_is_written_twice(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries()
    account = str(uuid.uuid4())
    async with Client(build_server(settings_for(sandbox), retry=retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", path=r"\$batch"))  # committed, never answered
        sandbox.request_log.records.clear()
        result = structured(await client.call_tool("write_records", {"writes": account_and_contacts(account)}))
    assert (result["written"], result["unknown"]) == (4, 0)
    assert writes_sent(sandbox) == [f"POST {API}/$batch"]
    read_back = [record for record in sandbox.request_log.records if "Microsoft.Dynamics.CRM.In" in record.query]
    assert len(read_back) == 1  # one table's created ids tell whether the change set landed
    assert len(await rows(sandbox, http, "accounts", "$select=name&$filter=name eq 'Batch Coffee'")) == 1
    assert (
        len(await rows(sandbox, http, "contacts", f"$select=lastname&$filter=_parentcustomerid_value eq {account}"))
        == 3
    )


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_deletes_are_confirmed_naming_the_count_and_the_tables(
    sandbox: Sandbox, http: httpx2.AsyncClient, mode: str
) -> None:
    doomed = await leads(sandbox, http, 3)
    writes = [{"action": "delete", "table": "lead", "id": row_id} for row_id in doomed]
    writes.append({"action": "create", "table": "account", "values": {"name": "Kept"}})
    elicitation = answering("accept")
    async with Client(server_for(sandbox), mode=mode, elicitation_callback=elicitation) as client:
        result = structured(await client.call_tool("write_records", {"writes": writes}))
    assert elicitation.asked == ["Delete 3 lead rows in contoso, with 1 other write? This cannot be undone."]
    assert result["written"] == 4
    assert not any([await row_exists(sandbox, http, "leads", row_id) for row_id in doomed])


@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_declined_deletes_write_nothing(sandbox: Sandbox, http: httpx2.AsyncClient, action: str) -> None:
    doomed = await leads(sandbox, http, 2)
    writes = [{"action": "delete", "table": "lead", "id": row_id} for row_id in doomed]
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox), elicitation_callback=answering(action)) as client:
        result = structured(await client.call_tool("write_records", {"writes": writes}))
    assert (result["written"], result["not_written"]) == (0, 2) and "declined" in result["note"]
    assert writes_sent(sandbox) == []
    assert all([await row_exists(sandbox, http, "leads", row_id) for row_id in doomed])


async def test_deletes_without_a_way_to_ask_need_confirm(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    [doomed] = await leads(sandbox, http, 1)
    writes = [{"action": "delete", "table": "lead", "id": doomed}]
    async with Client(server_for(sandbox), mode="legacy") as client:
        refused = error_text(await client.call_tool("write_records", {"writes": writes}))
        assert await row_exists(sandbox, http, "leads", doomed)
        confirmed = structured(await client.call_tool("write_records", {"writes": writes, "confirm": True}))
    assert "confirm: true" in refused
    assert confirmed["written"] == 1 and not await row_exists(sandbox, http, "leads", doomed)


async def test_a_denied_table_anywhere_refuses_the_set_before_anything_is_sent_or_asked(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    [lead] = await leads(sandbox, http, 1)
    contact = (await rows(sandbox, http, "contacts", "$select=lastname&$top=1"))[0]["contactid"]
    writes: list[dict[str, Any]] = [
        {"action": "delete", "table": "lead", "id": lead},
        {"action": "create", "table": "account", "values": {"name": "x", "primarycontactid": contact}},
        {"action": "update", "table": "Contacts", "id": contact, "values": {"lastname": "x"}},
    ]
    elicitation = answering("accept")
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, denied_tables="contact"), elicitation_callback=elicitation) as client:
        message = error_text(await client.call_tool("write_records", {"writes": writes, "atomic": False}))
    assert "2 of 3 writes are refused, so none was sent." in message
    assert "writes[1]: The table 'contact' is not available" in message
    assert "writes[2]: The table 'contact' is not available" in message
    assert elicitation.asked == [] and writes_sent(sandbox) == []
    assert await row_exists(sandbox, http, "leads", lead)
    lines = audited(caplog)
    assert len(lines) == 3 and all(
        line.startswith('write_records outcome="not written" reason=refused ') for line in lines
    )


async def test_read_only_mode_has_no_write_records(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, read_only=True)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        unknown = await client.call_tool("write_records", {"writes": [{"action": "delete", "table": "lead"}]})
    assert "write_records" not in names and unknown.is_error


async def test_the_bulk_toolset_holds_write_records(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, toolsets="bulk")) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
    assert "write_records" in names and "create_record" not in names


async def test_more_writes_than_the_server_takes_are_refused(sandbox: Sandbox) -> None:
    writes = [{"action": "create", "table": "account", "values": {"name": f"A{n}"}} for n in range(3)]
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, max_writes=2)) as client:
        message = error_text(await client.call_tool("write_records", {"writes": writes}))
    assert "at most 2 in one call" in message and writes_sent(sandbox) == []


async def test_each_write_is_its_own_audit_line(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    arguments = with_duplicate_third(atomic=False)
    async with Client(server_for(sandbox)) as client:
        structured(await client.call_tool("write_records", arguments))
        error_text(await client.call_tool("write_records", {"writes": [{"action": "delete", "table": "lead\nx"}]}))
    lines = audited(caplog)
    ids = [write.get("id") for write in arguments["writes"]]
    assert lines[:2] + lines[3:4] == [
        f"write_records outcome=written table={table} id={row_id} environment=contoso user=token"
        for table, row_id in (("account", ids[0]), ("contact", ids[1]), ("account", ids[3]))
    ]
    assert lines[2].startswith('write_records outcome="not written" reason=failed table=account id=')
    assert lines[4] == (
        "write_records outcome=\"not written\" reason=invalid table='lead\\nx' id=- environment=- user=token"
    )
    assert "First" not in "".join(lines)


async def test_progress_is_reported_as_the_writes_settle(sandbox: Sandbox) -> None:
    writes = [{"action": "create", "table": "account", "values": {"name": f"P{n}"}} for n in range(150)]
    heard: list[tuple[float, float | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        heard.append((done, total))

    async with Client(server_for(sandbox)) as client:
        result = await client.call_tool(
            "write_records", {"writes": writes, "atomic": False}, progress_callback=progress
        )
    assert structured(result)["written"] == 150
    assert heard == [(100, 150), (150, 150)]


@pytest.mark.parametrize("value", ["0", "1001", "many"])
def test_max_writes_outside_1_to_1000_is_a_configuration_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DYNAMICS_MCP_MAX_WRITES", value)
    with pytest.raises(
        ConfigurationError, match=r"DYNAMICS_MCP_MAX_WRITES \(max_writes\).*DYNAMICS_MCP_MAX_WRITES=200"
    ):
        settings_for(sandbox)
