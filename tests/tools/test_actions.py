"""The actions toolset end to end: list_actions and run_action through a real MCP client against the sandbox."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Fault, Sandbox
from server import ConfigurationError, build_server

from ..resilience.support import instant_retries
from .support import error_text, server_for, settings_for, structured
from .test_audit import audited
from .test_session import answering

API = "/api/data/v9.2"


async def first_id(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, query: str) -> str:
    response = await http.get(
        f"{sandbox.environments['contoso'].url}{API}/{entity_set}?{query}&$top=1",
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    row = response.json()["value"][0]
    return str(next(value for key, value in row.items() if key.endswith("id") and not key.startswith("_")))


async def read(sandbox: Sandbox, http: httpx2.AsyncClient, path: str) -> dict[str, Any]:
    response = await http.get(
        f"{sandbox.environments['contoso'].url}{API}/{path}", headers={"Authorization": f"Bearer {sandbox.token()}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operation_requests(sandbox: Sandbox) -> list[str]:
    """Requests that ran an operation (anything but metadata and table reads)."""
    return [
        f"{record.method} {record.path}"
        for record in sandbox.request_log.records
        if "Microsoft.Dynamics.CRM." in record.path or record.method == "POST" or "(" in record.path.rpartition("/")[2]
    ]


async def test_list_actions_finds_operations_by_name_and_table(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        everything = structured(await client.call_tool("list_actions", {}))
        for_leads = structured(await client.call_tool("list_actions", {"table": "leads"}))
        found = structured(await client.call_tool("list_actions", {"search": "opportunity"}))
    names = [item["name"] for item in everything["actions"]]
    assert {"QualifyLead", "WinOpportunity", "CloseIncident", "RetrieveTotalRecordCount", "cr8a1_ScoreAccounts"} <= set(
        names
    )
    qualify = next(item for item in for_leads["actions"] if item["name"] == "QualifyLead")
    assert qualify["kind"] == "action" and qualify["bound"] == "lead row"
    assert qualify["parameters"]["CreateAccount"] == "Edm.Boolean"
    assert qualify["parameters"]["OpportunityCurrencyId"] == "transactioncurrency (optional)"
    assert [item["name"] for item in found["actions"]] == ["LoseOpportunity", "WinOpportunity"]


async def test_a_lead_is_qualified_into_an_account_a_contact_and_an_opportunity(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    lead = await first_id(sandbox, http, "leads", "$select=subject&$filter=statecode eq 0")
    elicitation = answering("accept")
    async with Client(server_for(sandbox), elicitation_callback=elicitation) as client:
        result = structured(
            await client.call_tool(
                "run_action",
                {
                    "name": "qualifylead",
                    "table": "Lead",
                    "id": lead,
                    "parameters": {
                        "CreateAccount": True,
                        "CreateContact": True,
                        "CreateOpportunity": True,
                        "Status": 3,
                    },
                },
            )
        )
    assert result["ran"] is True
    assert [row["table"] for row in result["rows"]] == ["account", "contact", "opportunity"]
    account, contact, opportunity = result["rows"]
    assert elicitation.asked == [
        f"Run the action QualifyLead on the lead row {lead} in contoso? It may not be undoable."
    ]
    qualified = await read(sandbox, http, f"leads({lead})?$select=statecode,_parentaccountid_value")
    assert qualified["statecode"] == 1 and qualified["_parentaccountid_value"] == account["accountid"]
    assert (await read(sandbox, http, f"contacts({contact['contactid']})?$select=fullname"))["fullname"]
    assert (await read(sandbox, http, f"opportunities({opportunity['opportunityid']})?$select=name"))["name"]
    assert audited(caplog) == [
        f"run_action outcome=written action=QualifyLead table=lead id={lead} environment=contoso user=token"
    ]


async def test_an_opportunity_is_won_with_its_close_given_as_row_values(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    opportunity = await first_id(sandbox, http, "opportunities", "$select=name&$filter=statecode eq 0")
    elicitation = answering("accept")
    async with Client(server_for(sandbox), elicitation_callback=elicitation) as client:
        result = structured(
            await client.call_tool(
                "run_action",
                {
                    "name": "WinOpportunity",
                    "parameters": {
                        "OpportunityClose": {"subject": "Won at last", "opportunityid": opportunity},
                        "Status": 3,
                    },
                },
            )
        )
    assert result == {"name": "WinOpportunity", "ran": True}
    assert (await read(sandbox, http, f"opportunities({opportunity})?$select=statecode"))["statecode"] == 1
    assert elicitation.asked == [
        "Run the action WinOpportunity in contoso (OpportunityClose: a new opportunityclose row linked to "
        f"/opportunities({opportunity}))? It may not be undoable."
    ]


async def test_a_case_is_closed_with_a_trusted_action_without_asking(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    case = await first_id(sandbox, http, "incidents", "$select=title&$filter=statecode eq 0")
    elicitation = answering("accept")
    arguments = {
        "name": "CloseIncident",
        "parameters": {
            "IncidentResolution": {"subject": "Fixed", "incidentid": {"table": "incident", "id": case}},
            "Status": 5,
        },
    }
    async with Client(server_for(sandbox, trusted_actions="closeincident"), elicitation_callback=elicitation) as client:
        assert structured(await client.call_tool("run_action", arguments))["ran"] is True
    assert elicitation.asked == []
    assert (await read(sandbox, http, f"incidents({case})?$select=statecode"))["statecode"] == 1


async def test_a_function_takes_a_collection_and_is_never_confirmed_nor_audited(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    elicitation = answering("decline")
    async with Client(server_for(sandbox), elicitation_callback=elicitation) as client:
        result = structured(
            await client.call_tool(
                "run_action",
                {"name": "RetrieveTotalRecordCount", "parameters": {"EntityNames": ["Account", "contacts"]}},
            )
        )
    counts = result["value"]["EntityRecordCountCollection"]
    assert counts["Keys"] == ["account", "contact"] and all(value > 0 for value in counts["Values"])
    assert elicitation.asked == [] and audited(caplog) == []
    (sent,) = [record for record in sandbox.request_log.records if "RetrieveTotalRecordCount" in record.path]
    assert sent.method == "GET" and '["account","contact"]' in sent.query


async def test_the_custom_api_takes_each_type_of_parameter(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account = await first_id(sandbox, http, "accounts", "$select=name&$filter=statecode eq 0")
    run_id = "7b0c9a3e-1f2d-4c5b-8a6e-9d8c7b6a5f40"
    async with Client(server_for(sandbox)) as client:
        result = structured(
            await client.call_tool(
                "run_action",
                {
                    "name": "cr8a1_ScoreAccounts",
                    "parameters": {
                        "Segment": "Key 'accounts' & co",
                        "Weight": 2.5,
                        "MinimumEmployees": 0,
                        "IncludeInactive": True,
                        "RunId": run_id,
                        "Regions": [],
                        "Account": {"table": "account", "id": account},
                    },
                    "confirm": True,
                },
            )
        )
    assert result["value"] == {
        "Score": 2.5,
        "ScoredAccounts": 1,
        "Summary": "Key 'accounts' & co: 1 of 1 accounts",
        "RunId": run_id,
    }


async def test_bad_parameters_get_one_error_listing_the_declared_ones_and_send_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    lead = await first_id(sandbox, http, "leads", "$select=subject&$filter=statecode eq 0")
    async with Client(server_for(sandbox)) as client:
        await client.call_tool("list_actions", {})  # the metadata is read
        sandbox.request_log.records.clear()
        result = await client.call_tool(
            "run_action",
            {
                "name": "QualifyLead",
                "table": "lead",
                "id": lead,
                "parameters": {"CreateAcount": True, "CreateContact": "yes", "Status": 3},
                "confirm": True,
            },
        )
        unknown = error_text(await client.call_tool("run_action", {"name": "QualifyLaed", "table": "lead"}))
    message = error_text(result)
    assert message.startswith(
        "Error executing tool run_action: QualifyLead: no parameter 'CreateAcount'; CreateAccount is required; "
        'CreateContact expects true or false, not "yes"; CreateOpportunity is required. '
        "Its parameters: CreateAccount: Edm.Boolean, CreateContact: Edm.Boolean, CreateOpportunity: Edm.Boolean, "
    )
    assert "Nothing was written." in message
    assert "Did you mean 'QualifyLead'?" in unknown
    assert [record for record in sandbox.request_log.records if record.method != "GET"] == []


async def test_a_denied_action_is_not_listed_and_is_refused(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    opportunity = await first_id(sandbox, http, "opportunities", "$select=name&$filter=statecode eq 0")
    async with Client(server_for(sandbox, denied_actions="WinOpportunity")) as client:
        listed = structured(await client.call_tool("list_actions", {"search": "opportunity"}))
        refused = error_text(
            await client.call_tool(
                "run_action",
                {
                    "name": "winopportunity",
                    "parameters": {"OpportunityClose": {"subject": "x", "opportunityid": opportunity}, "Status": 3},
                    "confirm": True,
                },
            )
        )
    assert [item["name"] for item in listed["actions"]] == ["LoseOpportunity"]
    assert "WinOpportunity is not available through this server" in refused
    assert not [record for record in sandbox.request_log.records if record.method == "POST"]
    assert audited(caplog) == [
        'run_action outcome="not written" reason=refused action=WinOpportunity table=- id=- environment=contoso '
        "user=token"
    ]


async def test_an_action_list_naming_no_operation_stops_the_server_naming_the_closest(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigurationError) as raised:
        async with Client(build_server(settings_for(sandbox, allowed_actions="QualifyLaed,WhoAmI"))):
            pass
    assert "names 'qualifylaed', which is no action or function of contoso; the closest is 'QualifyLead'" in str(
        raised.value
    )


async def test_read_only_mode_runs_functions_and_refuses_actions(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    lead = await first_id(sandbox, http, "leads", "$select=subject&$filter=statecode eq 0")
    async with Client(server_for(sandbox, read_only=True)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        listed = structured(await client.call_tool("list_actions", {}))
        who = structured(await client.call_tool("run_action", {"name": "WhoAmI"}))
        refused = error_text(
            await client.call_tool(
                "run_action",
                {
                    "name": "QualifyLead",
                    "table": "lead",
                    "id": lead,
                    "parameters": {
                        "CreateAccount": True,
                        "CreateContact": False,
                        "CreateOpportunity": False,
                        "Status": 3,
                    },
                    "confirm": True,
                },
            )
        )
    assert tools["run_action"].annotations is not None and tools["run_action"].annotations.read_only_hint is True
    assert {item["kind"] for item in listed["actions"]} == {"function"}
    assert who["value"]["UserId"]
    assert "read-only" in refused and "Nothing was written." in refused
    assert not [record for record in sandbox.request_log.records if record.method == "POST"]


@pytest.mark.parametrize("answer", ["accept", "decline", "cancel"])
async def test_an_action_runs_only_when_the_user_agrees(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    case = await first_id(sandbox, http, "incidents", "$select=title&$filter=statecode eq 0")
    arguments = {
        "name": "CloseIncident",
        "parameters": {"IncidentResolution": {"subject": "Fixed", "incidentid": case}, "Status": 5},
    }
    async with Client(server_for(sandbox), elicitation_callback=answering(answer)) as client:
        result = structured(await client.call_tool("run_action", arguments))
    closed = (await read(sandbox, http, f"incidents({case})?$select=statecode"))["statecode"] == 1
    assert result["ran"] is closed is (answer == "accept")
    outcome = "written" if answer == "accept" else '"not written" reason=declined'
    assert audited(caplog) == [
        f"run_action outcome={outcome} action=CloseIncident table=- id=- environment=contoso user=token"
    ]


async def test_an_action_without_a_way_to_ask_needs_confirm(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    case = await first_id(sandbox, http, "incidents", "$select=title&$filter=statecode eq 0")
    arguments: dict[str, Any] = {
        "name": "CloseIncident",
        "parameters": {"IncidentResolution": {"subject": "Fixed", "incidentid": case}, "Status": 5},
    }
    async with Client(server_for(sandbox)) as client:
        unconfirmed = error_text(await client.call_tool("run_action", arguments))
        confirmed = structured(await client.call_tool("run_action", {**arguments, "confirm": True}))
    assert "call run_action again with confirm: true" in unconfirmed
    assert confirmed["ran"] is True


def ids_of(sandbox: Sandbox, http: httpx2.AsyncClient) -> Any:
    async def found() -> dict[str, str]:
        return {
            "account": await first_id(sandbox, http, "accounts", "$select=name"),
            "case": await first_id(sandbox, http, "incidents", "$select=title"),
            "lead": await first_id(sandbox, http, "leads", "$select=subject"),
        }

    return found()


REFUSED_CALLS: list[tuple[str, Callable[[dict[str, str]], dict[str, Any]]]] = [
    ("lead", lambda ids: {"name": "QualifyLead", "table": "leads", "id": ids["lead"], "parameters": {}}),
    ("account", lambda ids: {"name": "cr8a1_ScoreAccounts", "parameters": {"Segment": "x", "Account": ids["account"]}}),
    (
        "account",
        lambda ids: {
            "name": "cr8a1_ScoreAccounts",
            "parameters": {"Segment": "x", "Account": {"table": "accounts", "id": ids["account"]}},
        },
    ),
    (
        "contact",
        lambda ids: {"name": "RetrieveTotalRecordCount", "parameters": {"EntityNames": ["account", "Contact"]}},
    ),
    (
        "account",
        lambda ids: {
            "name": "InitializeFrom",
            "parameters": {
                "EntityMoniker": {"table": "Account", "id": ids["account"]},
                "TargetEntityName": "contact",
                "TargetFieldType": "All",
            },
        },
    ),
    (
        "incident",
        lambda ids: {
            "name": "CloseIncident",
            "parameters": {"IncidentResolution": {"subject": "x", "incidentid": ids["case"]}, "Status": 5},
        },
    ),
]


@pytest.mark.parametrize(("denied", "call"), REFUSED_CALLS)
async def test_a_denied_table_as_bound_table_or_parameter_sends_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, denied: str, call: Callable[[dict[str, str]], dict[str, Any]]
) -> None:
    arguments = call(await ids_of(sandbox, http))
    elicitation = answering("accept")
    async with Client(server_for(sandbox, denied_tables=denied), elicitation_callback=elicitation) as client:
        await client.call_tool("list_actions", {})
        sandbox.request_log.records.clear()
        refused = error_text(await client.call_tool("run_action", {**arguments, "confirm": True}))
    assert "is not available through this server" in refused
    assert elicitation.asked == []
    # Only metadata reads of allowed tables: nothing ran, nothing of the denied table was read.
    entity_set = {"lead": "leads", "account": "accounts", "contact": "contacts", "incident": "incidents"}[denied]
    sent = [f"{record.method} {record.path}?{record.query}" for record in sandbox.request_log.records]
    assert not [
        line
        for line in sent
        if not line.startswith("GET ") or arguments["name"] in line or f"'{denied}'" in line or f"/{entity_set}" in line
    ]


async def test_an_action_whose_answer_was_lost_says_to_check_its_effect(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    case = await first_id(sandbox, http, "incidents", "$select=title&$filter=statecode eq 0")
    sandbox.faults.add(Fault(kind="drop_after", count=1, method="POST", path="CloseIncident"))
    arguments = {
        "name": "CloseIncident",
        "parameters": {"IncidentResolution": {"subject": "Fixed", "incidentid": case}, "Status": 5},
        "confirm": True,
    }
    async with Client(build_server(settings_for(sandbox), retry=instant_retries()[0])) as client:
        message = error_text(await client.call_tool("run_action", arguments))
    assert "CloseIncident may or may not have run: check its effect before running it again" in message
    assert [record.method for record in sandbox.request_log.records if "CloseIncident" in record.path] == ["POST"]
    assert audited(caplog) == [
        "run_action outcome=unknown reason=failed action=CloseIncident table=- id=- environment=contoso user=token"
    ]


async def test_initialize_from_returns_a_new_rows_values_to_create_it_with(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_id(sandbox, http, "accounts", "$select=name&$filter=telephone1 ne null")
    async with Client(server_for(sandbox)) as client:
        result = structured(
            await client.call_tool(
                "run_action",
                {
                    "name": "InitializeFrom",
                    "parameters": {
                        "EntityMoniker": {"table": "account", "id": account},
                        "TargetEntityName": "Contact",
                        "TargetFieldType": "ValidForCreate",
                    },
                },
            )
        )
    (row,) = result["rows"]
    assert row["table"] == "contact" and row["telephone1"]
    assert row["parentcustomerid_account@odata.bind"] == f"accounts({account})"
    (sent,) = [record for record in sandbox.request_log.records if "InitializeFrom" in record.path]
    assert "TargetFieldType'ValidForCreate'" in sent.query


def test_rows_inside_a_complex_result_follow_the_table_policy() -> None:
    """A complex result may carry rows (RetrieveDuplicates, custom APIs): each is shaped and checked like a row."""
    from dataverse import TableSummary
    from tools._actions import _plain
    from tools._policy import TableAccess

    def summary(name: str) -> TableSummary:
        return TableSummary(name, name, f"{name}s", None, None, None, f"{name}id", None, None, False, False, False)

    answer = {
        "Matches": [
            {"@odata.type": "#Microsoft.Dynamics.CRM.contact", "contactid": "c1", "fullname": "Yvonne McKay"},
            {"@odata.type": "#Microsoft.Dynamics.CRM.account", "accountid": "a1", "name": "Contoso"},
        ],
        "Count@OData.Community.Display.V1.FormattedValue": "2",
        "Count": 2,
    }
    shaped = _plain(answer, TableAccess(denied=frozenset({"contact"})), [summary("contact"), summary("account")])
    assert shaped == {
        "Matches": [{"table": "contact", "id": "c1"}, {"table": "account", "accountid": "a1", "name": "Contoso"}],
        "Count": 2,
    }
