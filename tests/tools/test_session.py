"""A new user's session through the real MCP client, in memory, in both protocol modes."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
from mcp import Client, types
from mcp.client.context import ClientRequestContext

from sandbox import Sandbox
from server import ConfigurationError
from tools import effective_hints

from .support import error_text, server_for, settings_for, structured

MODES = ["2026-07-28", "legacy"]


def answering(action: str, confirm: bool = True) -> Any:
    """An elicitation callback that answers every question with `action`, recording the questions."""
    asked: list[str] = []

    async def callback(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        content = {"confirm": confirm} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


async def row_exists(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, row_id: str) -> bool:
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/{entity_set}({row_id})?$select=createdon",
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    return response.status_code == 200


@pytest.mark.parametrize("mode", MODES)
async def test_a_new_users_session_from_account_to_deleted_lead(
    sandbox: Sandbox, http: httpx2.AsyncClient, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    elicitation = answering("accept")
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    async with Client(server_for(sandbox), mode=mode, elicitation_callback=elicitation) as client:
        found = structured(
            await client.call_tool(
                "query_records",
                {"table": "Account", "select": ["name", "accountid"], "filter": "name eq 'City Power & Light'"},
            )
        )
        assert [row["name"] for row in found["rows"]] == ["City Power & Light"]
        account_id = found["rows"][0]["accountid"]

        contacts = structured(
            await client.call_tool(
                "query_records",
                {
                    "table": "contacts",
                    "select": "fullname,parentcustomerid",
                    "filter": f"_parentcustomerid_value eq {account_id}",
                },
            )
        )
        assert len(contacts["rows"]) == 2
        assert all(row["parentcustomerid"]["name"] == "City Power & Light" for row in contacts["rows"])

        created = structured(
            await client.call_tool(
                "create_record",
                {
                    "table": "lead",
                    "values": {
                        "subject": "Smart meters for 40 sites",
                        "lastname": "Higa",
                        "leadqualitycode": "Hot",
                        "parentaccountid": {"table": "account", "id": account_id},
                    },
                },
            )
        )
        lead_id = created["id"]
        lead = structured(await client.call_tool("get_record", {"table": "lead", "id": lead_id}))
        assert lead["row"]["parentaccountid"] == {"id": account_id, "name": "City Power & Light"}
        assert lead["row"]["leadqualitycode"] == [1, "Hot"]

        updated = structured(
            await client.call_tool(
                "update_record",
                {
                    "table": "leads",
                    "id": lead_id,
                    "values": {"subject": "Smart meters for 45 sites"},
                    "etag": lead["etag"],
                },
            )
        )
        assert updated["created"] is False
        assert structured(
            await client.call_tool("get_record", {"table": "lead", "id": lead_id, "select": ["subject"]})
        )["row"] == {
            "subject": "Smart meters for 45 sites",
            "leadid": lead_id,
        }

        deleted = structured(await client.call_tool("delete_record", {"table": "lead", "id": lead_id}))
        assert deleted == {"table": "lead", "id": lead_id, "deleted": True}
    assert len(elicitation.asked) == 1 and lead_id in elicitation.asked[0]
    assert not await row_exists(sandbox, http, "leads", lead_id)
    audit = [record.getMessage() for record in caplog.records if record.name == "dynamics_mcp.audit"]
    assert [line.split()[0] for line in audit] == ["create_record", "update_record", "delete_record"]
    assert all(f"id={lead_id}" in line and "environment=contoso" in line for line in audit)
    assert not any("Smart meters" in line for line in audit)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declined_delete_deletes_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, mode: str, action: str
) -> None:
    elicitation = answering(action)
    row_id = (await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/leads?$select=subject&$top=1",
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )).json()["value"][0]["leadid"]  # fmt: skip
    async with Client(server_for(sandbox), mode=mode, elicitation_callback=elicitation) as client:
        result = structured(await client.call_tool("delete_record", {"table": "lead", "id": row_id}))
    assert result["deleted"] is False
    assert elicitation.asked
    assert await row_exists(sandbox, http, "leads", row_id)


@pytest.mark.parametrize("mode", MODES)
async def test_without_elicitation_delete_needs_confirm(sandbox: Sandbox, http: httpx2.AsyncClient, mode: str) -> None:
    created = await http.post(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/leads",
        json={"subject": "To delete", "lastname": "X"},
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    row_id = created.headers["odata-entityid"].rsplit("(", 1)[1].rstrip(")")
    async with Client(server_for(sandbox), mode=mode) as client:
        refused = error_text(await client.call_tool("delete_record", {"table": "lead", "id": row_id}))
        assert "confirm: true" in refused
        assert await row_exists(sandbox, http, "leads", row_id)
        deleted = structured(await client.call_tool("delete_record", {"table": "lead", "id": row_id, "confirm": True}))
    assert deleted["deleted"] is True
    assert not await row_exists(sandbox, http, "leads", row_id)


async def test_paging_with_the_cursor_returns_every_row_once_and_reports_progress(sandbox: Sandbox) -> None:
    seen: list[str] = []
    progress: list[float] = []
    async with Client(server_for(sandbox)) as client:
        arguments: dict[str, Any] = {"table": "contact", "select": ["fullname"], "page_size": 25}
        while True:
            page = structured(
                await client.call_tool("query_records", arguments, progress_callback=lambda p, t, m: progress.append(p))  # type: ignore[arg-type,misc]
            )
            seen += [row["contactid"] for row in page["rows"]]
            if not page.get("cursor"):
                break
            arguments = {"cursor": page["cursor"]}
    assert len(seen) == len(set(seen)) == 120
    assert progress and max(progress) == 25


async def test_fetchxml_pages_with_the_same_cursor(sandbox: Sandbox) -> None:
    fetchxml = "<fetch><entity name='account'><attribute name='name'/><order attribute='name'/></entity></fetch>"
    names: list[str] = []
    async with Client(server_for(sandbox)) as client:
        arguments: dict[str, Any] = {"fetchxml": fetchxml, "page_size": 22}
        while True:
            page = structured(await client.call_tool("query_records", arguments))
            names += [row["name"] for row in page["rows"]]
            if not page.get("cursor"):
                break
            arguments = {"cursor": page["cursor"]}
    assert len(names) == 60
    assert names == sorted(names, key=str.lower)


async def test_describe_table_is_compact_for_the_real_account(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        result = await client.call_tool("describe_table", {"table": "account"})
        one = structured(await client.call_tool("describe_table", {"table": "account", "columns": ["industrycode"]}))
        related = structured(
            await client.call_tool(
                "describe_table", {"table": "account", "include_relationships": True, "include_keys": True}
            )
        )
    described = structured(result)
    assert len(result.content[0].text.encode()) <= 12 * 1024  # type: ignore[union-attr]
    assert described["columns"]["name"] == "text(160), primary name, recommended (forms only), 'Account Name'"
    assert described["columns"]["primarycontactid"].startswith("lookup→contact")
    assert "Accounting" in one["columns"]["industrycode"] and "Transportation" in one["columns"]["industrycode"]
    assert related["keys"] == {"account_accountnumber_key": ["accountnumber"]}
    assert related["relationships"]["primarycontactid"] == "primarycontactid → contact"


async def test_list_tables_searches_and_hides_what_the_policy_denies(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, denied_tables="contact")) as client:
        found = structured(await client.call_tool("list_tables", {"search": "pro"}))
        denied = error_text(await client.call_tool("query_records", {"table": "contacts"}))
        expand = error_text(
            await client.call_tool("query_records", {"table": "account", "expand": ["primarycontactid"]})
        )
    assert {table["name"] for table in found["tables"]} == {"cr8a1_project", "product"}
    assert "not available through this server" in denied
    assert "'contact'" in expand


async def test_list_tables_hides_private_tables_unless_system_ones_are_asked_for(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        plain = structured(await client.call_tool("list_tables", {"search": "data source"}))
        everything = structured(
            await client.call_tool("list_tables", {"search": "data source", "include_system": True})
        )
    assert plain["tables"] == []
    assert [table["name"] for table in everything["tables"]] == ["entitydatasource"]


async def test_read_only_mode_lists_no_write_tools(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, read_only=True)) as client:
        tools = (await client.list_tools()).tools
    # run_action stays, as a read: in read-only mode it runs functions and refuses actions.
    assert {tool.name for tool in tools} == {
        "list_environments", "list_tables", "describe_table", "query_records", "get_record", "list_actions",
        "run_action", "search_records", "list_changes",
    }  # fmt: skip
    assert all(tool.annotations is not None and tool.annotations.read_only_hint for tool in tools)


async def test_every_tool_has_annotations_and_schemas(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == [
        "list_environments", "list_tables", "describe_table", "query_records", "get_record",
        "create_record", "update_record", "upsert_record", "delete_record", "write_records", "link_records",
        "list_actions", "run_action", "search_records", "list_changes",
    ]  # fmt: skip
    for tool in tools:
        assert tool.output_schema is not None and tool.description
    # Hints the specification's defaults already say are left out; what a client reads is the same.
    hints = {tool.name: effective_hints(tool.annotations) for tool in tools}
    reads = {"list_environments", "list_tables", "describe_table", "query_records", "get_record", "list_actions",
             "search_records", "list_changes"}  # fmt: skip
    assert {name for name, hint in hints.items() if hint["read_only_hint"]} == reads
    assert all(hint["open_world_hint"] for hint in hints.values())
    writes = {name: (hint["destructive_hint"], hint["idempotent_hint"]) for name, hint in hints.items()}
    assert writes["create_record"] == (False, False)  # a second create makes a second row
    assert writes["update_record"] == writes["upsert_record"] == writes["delete_record"] == (True, True)
    assert writes["write_records"] == writes["run_action"] == (True, False)
    assert writes["link_records"] == (True, True)


async def test_upsert_by_alternate_key_reports_created_then_updated(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        first = structured(
            await client.call_tool(
                "upsert_record",
                {"table": "cr8a1_project", "key": {"cr8a1_code": "PRJ-NEW"}, "values": {"cr8a1_name": "New"}},
            )
        )
        second = structured(
            await client.call_tool(
                "upsert_record",
                {"table": "cr8a1_project", "key": {"cr8a1_code": "PRJ-NEW"}, "values": {"cr8a1_phase": "Build"}},
            )
        )
    assert first["created"] is True and second["created"] is False and first["id"] == second["id"]


async def test_list_environments_with_the_sandbox_default(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("list_environments", {}))
    assert result["environments"] == [
        {"name": "contoso", "url": sandbox.environments["contoso"].url, "friendly_name": "contoso"}
    ]


async def test_the_session_against_the_zero_setup_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATAVERSE_URL", "DATAVERSE_ACCESS_TOKEN", "DYNAMICS_MCP_CONFIG", "DYNAMICS_MCP_READ_ONLY"):
        monkeypatch.delenv(name, raising=False)
    from server import build_server, load_settings

    async with Client(build_server(load_settings()), elicitation_callback=answering("accept")) as client:
        environments = structured(await client.call_tool("list_environments", {}))
        account = structured(
            await client.call_tool(
                "query_records", {"table": "Account", "filter": "name eq 'Contoso Ltd'", "select": "name"}
            )
        )["rows"][0]
        lead = structured(
            await client.call_tool(
                "create_record",
                {
                    "table": "lead",
                    "values": {
                        "subject": "Zero setup",
                        "lastname": "Demo",
                        "parentaccountid": {"table": "account", "id": account["accountid"]},
                    },
                },
            )
        )
        structured(
            await client.call_tool(
                "update_record", {"table": "lead", "id": lead["id"], "values": {"subject": "Zero setup 2"}}
            )
        )
        deleted = structured(await client.call_tool("delete_record", {"table": "lead", "id": lead["id"]}))
        gone = await client.call_tool("get_record", {"table": "lead", "id": lead["id"]})
    assert [environment["name"] for environment in environments["environments"]] == ["contoso", "fabrikam"]
    assert deleted["deleted"] is True
    assert gone.is_error


async def test_the_tool_list_stays_small(sandbox: Sandbox) -> None:
    """Every conversation pays for tools/list before any work: names, descriptions, both schemas."""
    async with Client(server_for(sandbox)) as client:
        everything = await client.list_tools()
    async with Client(server_for(sandbox, toolsets="records")) as client:
        records = await client.list_tools()
    assert len(everything.model_dump_json(by_alias=True, exclude_none=True).encode()) <= 12 * 1024
    assert len(records.model_dump_json(by_alias=True, exclude_none=True).encode()) <= 8 * 1024
    assert (len(everything.tools), len(records.tools)) == (15, 9)


def test_an_unknown_toolset_is_a_configuration_error(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigurationError, match="no toolset named recrods; the toolsets are records"):
        settings_for(sandbox, toolsets="recrods")


async def test_the_instructions_name_only_the_tools_offered(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        everything = client.instructions or ""
    async with Client(server_for(sandbox, toolsets="records")) as client:
        records = client.instructions or ""
    assert "search_records" in everything and "list_changes" in everything
    assert "search_records" not in records and "list_changes" not in records and "query_records" in records
