"""link_records through the real MCP client: lookups, 1:N and N:N links made and removed, and what is refused."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Fault, Sandbox
from server import build_server
from tools import effective_hints

from ..resilience.support import instant_retries
from .support import error_text, server_for, settings_for, structured
from .test_attacks import DENIED, touching_contacts


def api(sandbox: Sandbox) -> str:
    return f"{sandbox.environments['contoso'].url}/api/data/v9.2"


async def read(sandbox: Sandbox, http: httpx2.AsyncClient, path: str) -> Any:
    response = await http.get(api(sandbox) + path, headers={"Authorization": f"Bearer {sandbox.token()}"})
    assert response.status_code == 200, response.text
    return response.json()


async def first(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, primary_id: str) -> str:
    body = await read(sandbox, http, f"/{entity_set}?$select={primary_id}&$top=1")
    return str(body["value"][0][primary_id])


async def linked_leads(sandbox: Sandbox, http: httpx2.AsyncClient, account: str) -> list[str]:
    body = await read(sandbox, http, f"/accounts({account})/accountleads_association?$select=leadid")
    return [row["leadid"] for row in body["value"]]


async def parent_of(sandbox: Sandbox, http: httpx2.AsyncClient, contact: str) -> str | None:
    body = await read(sandbox, http, f"/contacts({contact})?$select=_parentcustomerid_value")
    value: str | None = body["_parentcustomerid_value"]
    return value


def problem(result: Any) -> str:
    """The tool error's own words, after the SDK's 'Error executing tool ...' prefix."""
    return error_text(result).removeprefix("Error executing tool link_records: ")


def audited(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "dynamics_mcp.audit"]


async def test_an_account_and_a_lead_are_linked_by_schema_name_and_unlinked_by_navigation_name(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    account, lead = await first(sandbox, http, "accounts", "accountid"), await first(sandbox, http, "leads", "leadid")
    async with Client(server_for(sandbox)) as client:
        linked = structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "Account",
                    "id": account,
                    "relationship": "accountleads_association",
                    "target_table": "leads",
                    "target_id": lead,
                },
            )
        )
        assert linked == {
            "table": "account",
            "id": account,
            "relationship": "accountleads_association",
            "target_table": "lead",
            "target_id": lead,
            "linked": True,
        }
        assert await linked_leads(sandbox, http, account) == [lead]
        # From the other end, by its navigation property, in any case.
        unlinked = structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "lead",
                    "id": lead,
                    "relationship": "AccountLeads_Association",
                    "target_table": "account",
                    "target_id": account,
                    "unlink": True,
                },
            )
        )
    assert unlinked["linked"] is False
    assert await linked_leads(sandbox, http, account) == []
    assert audited(caplog) == [
        f"link_records outcome=written table=account id={account} environment=contoso user=token",
        f"link_records outcome=written table=lead id={lead} environment=contoso user=token",
    ]


async def test_a_contact_joins_an_account_through_the_one_to_many_and_leaves_through_its_lookup(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first(sandbox, http, "accounts", "accountid")
    others = await read(sandbox, http, f"/contacts?$select=fullname&$filter=_parentcustomerid_value ne {account}")
    contact = others["value"][0]["contactid"]
    async with Client(server_for(sandbox)) as client:
        structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "account",
                    "id": account,
                    "relationship": "contact_customer_accounts",
                    "target_table": "contact",
                    "target_id": contact,
                },
            )
        )
        assert await parent_of(sandbox, http, contact) == account
        structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "contact",
                    "id": contact,
                    "relationship": "parentcustomerid_account",
                    "target_table": "Account",
                    "target_id": account,
                    "unlink": True,
                },
            )
        )
    assert await parent_of(sandbox, http, contact) is None


async def test_a_lookup_is_set_through_its_single_valued_navigation_property(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, contact = (
        await first(sandbox, http, "accounts", "accountid"),
        await first(sandbox, http, "contacts", "contactid"),
    )
    async with Client(server_for(sandbox)) as client:
        result = structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "account",
                    "id": account,
                    "relationship": "primarycontactid",
                    "target_table": "contact",
                    "target_id": contact,
                },
            )
        )
    assert result["relationship"] == "account_primary_contact"
    body = await read(sandbox, http, f"/accounts({account})?$select=_primarycontactid_value")
    assert body["_primarycontactid_value"] == contact


async def test_an_unknown_relationship_or_another_table_lists_the_real_ones_and_sends_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    account, lead = await first(sandbox, http, "accounts", "accountid"), await first(sandbox, http, "leads", "leadid")
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox)) as client:
        unknown = problem(
            await client.call_tool(
                "link_records",
                {"table": "account", "id": account, "relationship": "leads", "target_table": "lead", "target_id": lead},
            )
        )
        mismatch = problem(
            await client.call_tool(
                "link_records",
                {
                    "table": "account",
                    "id": account,
                    "relationship": "accountleads_association",
                    "target_table": "contact",
                    "target_id": lead,
                },
            )
        )
    assert unknown.startswith("account has no relationship 'leads'. Relationships of account with lead: ")
    assert "accountleads_association (N:N→lead)" in unknown
    assert "account_originating_leads (1:N→lead)" in unknown and "originatingleadid (lookup→lead)" in unknown
    assert unknown.endswith("Nothing was written.")
    assert mismatch.startswith("accountleads_association links account to lead, not contact. ")
    assert "Relationships of account with contact: " in mismatch and "primarycontactid (lookup→contact)" in mismatch
    assert [record.method for record in sandbox.request_log.records if record.method != "GET"] == []
    assert [line.split(" table=")[0] for line in audited(caplog)] == [
        'link_records outcome="not written" reason=invalid'
    ] * 2


async def test_linking_twice_and_unlinking_what_is_not_linked_say_so(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, lead = await first(sandbox, http, "accounts", "accountid"), await first(sandbox, http, "leads", "leadid")
    arguments = {
        "table": "account",
        "id": account,
        "relationship": "accountleads_association",
        "target_table": "lead",
        "target_id": lead,
    }
    async with Client(server_for(sandbox)) as client:
        not_linked = problem(await client.call_tool("link_records", {**arguments, "unlink": True}))
        structured(await client.call_tool("link_records", arguments))
        twice = problem(await client.call_tool("link_records", arguments))
    assert not_linked == (
        f"account row {account} and lead row {lead} are not linked through accountleads_association. "
        "Nothing was written."
    )
    assert "(0x80040237)" in twice and "exists already: there is nothing to do" in twice
    assert "Nothing was written." in twice
    assert await linked_leads(sandbox, http, account) == [lead]


async def test_a_link_whose_answer_was_lost_is_made_once_by_the_retry(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The repeat of an N:N link meets the duplicate-key error: the earlier attempt landed, so it is a success."""
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    account, lead = await first(sandbox, http, "accounts", "accountid"), await first(sandbox, http, "leads", "leadid")
    retry, _ = instant_retries()
    async with Client(build_server(settings_for(sandbox), retry=retry)) as client:
        sandbox.faults.add(Fault(kind="drop_after", count=1, method="POST", path=r"/\$ref$"))  # made, never answered
        result = structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "account",
                    "id": account,
                    "relationship": "accountleads_association",
                    "target_table": "lead",
                    "target_id": lead,
                },
            )
        )
    assert result["linked"] is True
    assert len([r for r in sandbox.request_log.records if r.method == "POST" and r.path.endswith("/$ref")]) == 2
    assert await linked_leads(sandbox, http, account) == [lead]
    assert audited(caplog) == [
        f"link_records outcome=written table=account id={account} environment=contoso user=token"
    ]


async def test_a_denied_table_on_either_end_is_refused_before_anything_is_sent(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    account, lead = await first(sandbox, http, "accounts", "accountid"), await first(sandbox, http, "leads", "leadid")
    contact = await first(sandbox, http, "contacts", "contactid")
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, **DENIED)) as client:
        to_contact = problem(
            await client.call_tool(
                "link_records",
                {
                    "table": "account",
                    "id": account,
                    "relationship": "contact_customer_accounts",
                    "target_table": "contacts",
                    "target_id": contact,
                },
            )
        )
        from_contact = problem(
            await client.call_tool(
                "link_records",
                {
                    "table": "Contact",
                    "id": contact,
                    "relationship": "parentcustomerid_account",
                    "target_table": "account",
                    "target_id": account,
                },
            )
        )
        listing = problem(
            await client.call_tool(
                "link_records",
                {"table": "account", "id": account, "relationship": "x", "target_table": "lead", "target_id": lead},
            )
        )
    for message in (to_contact, from_contact):
        assert "The table 'contact' is not available through this server" in message
        assert message.endswith("Nothing was written.")
    assert "contact" not in listing.lower()
    assert touching_contacts(sandbox) == []
    assert [record.method for record in sandbox.request_log.records if record.method != "GET"] == []
    refused = [line for line in audited(caplog) if "reason=refused" in line]
    assert len(refused) == 2


async def test_read_only_mode_has_no_link_records(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, read_only=True)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool(
            "link_records",
            {
                "table": "account",
                "id": "00000000-0000-4000-8000-000000000001",
                "relationship": "accountleads_association",
                "target_table": "lead",
                "target_id": "00000000-0000-4000-8000-000000000002",
            },
        )
    assert "link_records" not in names and "query_records" in names
    assert "link_records" in error_text(result)
    assert [record.method for record in sandbox.request_log.records if record.method != "GET"] == []


async def test_link_records_belongs_to_the_bulk_toolset(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, toolsets="records")) as client:
        records = {tool.name for tool in (await client.list_tools()).tools}
    async with Client(server_for(sandbox, toolsets="bulk")) as client:
        bulk = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert "link_records" not in records and "link_records" in bulk
    hints = effective_hints(bulk["link_records"].annotations)
    assert (hints["read_only_hint"], hints["destructive_hint"]) == (False, True)


async def test_linked_rows_are_read_back_through_the_n_to_n_navigation_property(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account, lead = await first(sandbox, http, "accounts", "accountid"), await first(sandbox, http, "leads", "leadid")
    async with Client(server_for(sandbox)) as client:
        structured(
            await client.call_tool(
                "link_records",
                {
                    "table": "lead",
                    "id": lead,
                    "relationship": "accountleads_association",
                    "target_table": "account",
                    "target_id": account,
                },
            )
        )
        expanded = structured(
            await client.call_tool(
                "query_records",
                {
                    "table": "account",
                    "select": ["name"],
                    "filter": f"accountleads_association/any(l: l/leadid eq {lead})",
                    "expand": ["accountleads_association(leadid,subject)"],
                },
            )
        )
        described = structured(
            await client.call_tool("describe_table", {"table": "account", "include_relationships": True})
        )
    [row] = expanded["rows"]
    assert row["accountid"] == account
    assert [linked["leadid"] for linked in row["accountleads_association"]] == [lead]
    assert described["relationships"]["accountleads_association"] == "lead rows, N:N"


async def test_an_n_to_n_navigation_to_a_denied_table_is_refused_in_queries(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, **DENIED)) as client:
        for arguments in (
            {"table": "cr8a1_project", "expand": ["cr8a1_project_stakeholders"]},
            {"table": "cr8a1_project", "filter": "cr8a1_project_stakeholders/any(c: c/fullname eq 'x')"},
        ):
            assert "'contact' is not available" in problem(await client.call_tool("query_records", arguments))
        described = structured(
            await client.call_tool("describe_table", {"table": "cr8a1_project", "include_relationships": True})
        )
    assert "cr8a1_project_stakeholders" not in described["relationships"]
    assert not any("cr8a1_project_stakeholders" in f"{r.path}?{r.query}" for r in sandbox.request_log.records)
