"""Actions and functions over real HTTP: their effects on rows, read back afterwards, and their errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of
from .test_batch import answers, batch_body, change_set, request_part, send


async def rows(sandbox: Sandbox, http: httpx2.AsyncClient, query: str, user: str = "admin") -> list[dict[str, Any]]:
    response = await http.get(api(sandbox) + "/" + query, headers=auth(sandbox, user))
    assert response.status_code == 200, response.text
    value: list[dict[str, Any]] = response.json()["value"]
    return value


async def one(sandbox: Sandbox, http: httpx2.AsyncClient, path: str) -> dict[str, Any]:
    response = await http.get(api(sandbox) + "/" + path, headers=auth(sandbox))
    assert response.status_code == 200, response.text
    row: dict[str, Any] = response.json()
    return row


async def total(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str) -> int:
    response = await http.get(api(sandbox) + f"/{entity_set}/$count", headers=auth(sandbox))
    return int(response.text)


async def open_lead(sandbox: Sandbox, http: httpx2.AsyncClient, user: str = "admin") -> dict[str, Any]:
    found = await rows(
        sandbox,
        http,
        "leads?$select=subject,companyname,firstname,lastname,emailaddress1,_ownerid_value"
        "&$filter=statecode eq 0 and companyname ne null&$top=1",
        user,
    )
    return found[0]


async def qualify(
    sandbox: Sandbox, http: httpx2.AsyncClient, lead_id: str, body: dict[str, Any], user: str = "admin"
) -> httpx2.Response:
    url = api(sandbox) + f"/leads({lead_id})/Microsoft.Dynamics.CRM.QualifyLead"
    return await http.post(url, json=body, headers=auth(sandbox, user))


ALL_THREE = {"CreateAccount": True, "CreateContact": True, "CreateOpportunity": True, "Status": 3}


# -- functions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        "RetrieveTotalRecordCount(EntityNames=@p1)?@p1=" + quote('["account","contact"]'),
        "RetrieveTotalRecordCount(EntityNames=@p1)?@p1=" + quote("['account','contact']"),
        "RetrieveTotalRecordCount(EntityNames=" + quote("['account','contact']") + ")",
    ],
)
async def test_retrieve_total_record_count_counts_each_table(
    sandbox: Sandbox, http: httpx2.AsyncClient, call: str
) -> None:
    response = await http.get(api(sandbox) + "/" + call, headers=auth(sandbox, "alice"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == (
        api(sandbox) + "/$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse"
    )
    counts = body["EntityRecordCountCollection"]
    assert counts["Count"] == 2 and counts["Keys"] == ["account", "contact"]
    assert counts["Values"] == [await total(sandbox, http, "accounts"), await total(sandbox, http, "contacts")]


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        ("RetrieveTotalRecordCount(EntityNames=@p1)?@p1=" + quote('["nosuchtable"]'), 404, "0x80041102"),
        ("RetrieveTotalRecordCount(EntityNames=@p1)", 400, "0x80040203"),  # an alias given no value is null
        ("RetrieveTotalRecordCount(EntityNames=@p1)?@p1='account'", 400, "0x80060888"),
        ("RetrieveTotalRecordCount(Names=@p1)?@p1=" + quote('["account"]'), 400, "0x80060888"),
        ("RetrieveEverything()", 404, "0x8006088a"),
    ],
)
async def test_a_function_refuses_wrong_parameters_and_unknown_names(
    sandbox: Sandbox, http: httpx2.AsyncClient, call: str, status: int, code: str
) -> None:
    response = await http.get(api(sandbox) + "/" + call, headers=auth(sandbox))
    assert error_of(response)[:2] == (status, code)


async def test_an_unknown_operation_is_not_a_resource(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.post(api(sandbox) + "/DoMagic", json={}, headers=auth(sandbox))
    assert error_of(response) == (404, "0x8006088a", "Resource not found for the segment 'DoMagic'.")


async def test_functions_are_called_with_get_and_actions_with_post(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    posted = await http.post(api(sandbox) + "/InitializeFrom", json={}, headers=auth(sandbox))
    read = await http.get(api(sandbox) + "/WinOpportunity", headers=auth(sandbox))
    assert error_of(posted)[0] == 405 and error_of(read)[0] == 405


async def test_initialize_from_maps_a_row_without_saving_it(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    source = (await rows(sandbox, http, "accounts?$select=address1_city,_transactioncurrencyid_value&$top=1"))[0]
    account = source["accountid"]
    before = await total(sandbox, http, "accounts")
    moniker = quote("{'@odata.id':'accounts(" + account + ")'}")
    url = (
        f"/InitializeFrom(EntityMoniker=@p1,TargetEntityName=@p2,TargetFieldType=@p3)?@p1={moniker}"
        "&@p2='account'&@p3=Microsoft.Dynamics.CRM.TargetFieldType'ValidForCreate'"
    )
    response = await http.get(api(sandbox) + url, headers=auth(sandbox))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == api(sandbox) + "/$metadata#accounts/$entity"
    assert body["@odata.type"] == "#Microsoft.Dynamics.CRM.account"
    assert body["parentaccountid@odata.bind"] == f"accounts({account})"
    currency = source["_transactioncurrencyid_value"]
    assert body["transactioncurrencyid@odata.bind"] == f"transactioncurrencies({currency})"
    assert body.get("address1_city") == source["address1_city"]
    created = await http.post(
        api(sandbox) + "/accounts", json={**body, "name": "Child"}, headers=auth(sandbox)
    )  # step 2 of the page: the answer, changed, is the body of a create
    assert created.status_code == 204, created.text
    assert await total(sandbox, http, "accounts") == before + 1


# -- QualifyLead -------------------------------------------------------------------------------------------


async def test_qualify_lead_creates_linked_rows_and_closes_the_lead(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    lead = await open_lead(sandbox, http)
    response = await qualify(sandbox, http, lead["leadid"], ALL_THREE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == api(sandbox) + "/$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)"
    types = [item["@odata.type"] for item in body["value"]]
    assert types == [f"#Microsoft.Dynamics.CRM.{name}" for name in ("account", "contact", "opportunity")]
    account_id, contact_id, opportunity_id = (
        body["value"][0]["accountid"],
        body["value"][1]["contactid"],
        body["value"][2]["opportunityid"],
    )
    account = await one(
        sandbox, http, f"accounts({account_id})?$select=name,_originatingleadid_value,_primarycontactid_value"
    )
    assert account["name"] == lead["companyname"]
    assert account["_originatingleadid_value"] == lead["leadid"]
    assert account["_primarycontactid_value"] == contact_id
    contact = await one(
        sandbox,
        http,
        f"contacts({contact_id})?$select=lastname,emailaddress1,_parentcustomerid_value,_originatingleadid_value",
    )
    assert (contact["lastname"], contact["emailaddress1"]) == (lead["lastname"], lead["emailaddress1"])
    assert contact["_parentcustomerid_value"] == account_id
    assert contact["_originatingleadid_value"] == lead["leadid"]
    opportunity = await one(
        sandbox, http, f"opportunities({opportunity_id})?$select=name,_customerid_value,_originatingleadid_value"
    )
    assert opportunity["name"] == lead["subject"]
    assert opportunity["_customerid_value"] == account_id
    closed = await one(
        sandbox,
        http,
        f"leads({lead['leadid']})?$select=statecode,statuscode,_parentaccountid_value,_qualifyingopportunityid_value",
    )
    assert (closed["statecode"], closed["statuscode"]) == (1, 3)
    assert closed["_parentaccountid_value"] == account_id
    assert closed["_qualifyingopportunityid_value"] == opportunity_id


async def test_qualify_lead_creates_only_what_is_asked_for_the_given_customer(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    lead = await open_lead(sandbox, http)
    customer = (await rows(sandbox, http, "accounts?$select=name&$top=1"))[0]["accountid"]
    accounts = await total(sandbox, http, "accounts")
    body = {
        "CreateAccount": False,
        "CreateContact": False,
        "CreateOpportunity": True,
        "Status": 3,
        "OpportunityCustomerId": {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": customer},
    }
    response = await qualify(sandbox, http, lead["leadid"], body)
    assert response.status_code == 200, response.text
    [created] = response.json()["value"]
    opportunity = await one(sandbox, http, f"opportunities({created['opportunityid']})?$select=_customerid_value")
    assert opportunity["_customerid_value"] == customer
    assert await total(sandbox, http, "accounts") == accounts


async def test_qualifying_a_lead_twice_is_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    lead = await open_lead(sandbox, http)
    assert (await qualify(sandbox, http, lead["leadid"], ALL_THREE)).status_code == 200
    accounts = await total(sandbox, http, "accounts")
    again = await qualify(sandbox, http, lead["leadid"], ALL_THREE)
    assert error_of(again) == (
        400,
        "0x80040203",
        "The lead is closed and you can't convert or qualify a lead that is already closed.",
    )
    assert await total(sandbox, http, "accounts") == accounts


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"Status": 4}, 400, "0x80048408"),  # Lost is a status of Disqualified, not of Qualified
        ({"Status": None}, 400, "0x80040203"),
        ({"Status": "three"}, 400, "0x80060888"),
        ({"CreateAccount": "yes"}, 400, "0x80060888"),
        ({"Rating": 1}, 400, "0x80060888"),
        ({"OpportunityCustomerId": {"accountid": "8a6b5f1e-0000-4000-8000-000000000000"}}, 400, "0x80060888"),
        (
            {
                "OpportunityCustomerId": {
                    "@odata.type": "Microsoft.Dynamics.CRM.account",
                    "accountid": "8a6b5f1e-0000-4000-8000-000000000000",
                }
            },
            404,
            "0x80040217",
        ),
    ],
)
async def test_a_refused_qualification_changes_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, change: dict[str, Any], status: int, code: str
) -> None:
    lead = await open_lead(sandbox, http)
    accounts, contacts = await total(sandbox, http, "accounts"), await total(sandbox, http, "contacts")
    body = {key: value for key, value in {**ALL_THREE, **change}.items() if value is not None}
    response = await qualify(sandbox, http, lead["leadid"], body)
    assert error_of(response)[:2] == (status, code)
    assert (await total(sandbox, http, "accounts"), await total(sandbox, http, "contacts")) == (accounts, contacts)
    assert (await one(sandbox, http, f"leads({lead['leadid']})?$select=statecode"))["statecode"] == 0


async def test_a_bound_action_without_its_namespace_has_unresolved_parameters(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    lead = await open_lead(sandbox, http)
    response = await http.post(
        api(sandbox) + f"/leads({lead['leadid']})/QualifyLead", json=ALL_THREE, headers=auth(sandbox)
    )
    assert error_of(response)[0::2] == (400, "Request message has unresolved parameters.")


async def test_qualify_lead_on_another_table_is_not_a_resource(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account = (await rows(sandbox, http, "accounts?$select=name&$top=1"))[0]["accountid"]
    url = api(sandbox) + f"/accounts({account})/Microsoft.Dynamics.CRM.QualifyLead"
    response = await http.post(url, json=ALL_THREE, headers=auth(sandbox))
    assert error_of(response)[:2] == (404, "0x8006088a")


async def test_qualifying_takes_the_callers_privileges(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    reader = await qualify(sandbox, http, (await open_lead(sandbox, http, "carol"))["leadid"], ALL_THREE, "carol")
    assert error_of(reader)[:2] == (403, "0x80040220")
    bobs = await open_lead(sandbox, http, "bob")
    alice = await qualify(sandbox, http, bobs["leadid"], ALL_THREE, "alice")
    assert error_of(alice)[:2] == (403, "0x80048306")
    own = await qualify(sandbox, http, bobs["leadid"], ALL_THREE, "bob")
    assert own.status_code == 200, own.text
    created = own.json()["value"][0]["accountid"]
    account = await one(sandbox, http, f"accounts({created})?$select=_ownerid_value")
    assert account["_ownerid_value"] == bobs["_ownerid_value"]


# -- WinOpportunity, LoseOpportunity, CloseIncident --------------------------------------------------------


async def open_opportunity(sandbox: Sandbox, http: httpx2.AsyncClient) -> str:
    found = await rows(sandbox, http, "opportunities?$select=name&$filter=statecode eq 0&$top=1")
    opportunity_id: str = found[0]["opportunityid"]
    return opportunity_id


def close_of(opportunity_id: str, **values: Any) -> dict[str, Any]:
    return {"subject": "Closed", "opportunityid@odata.bind": f"/opportunities({opportunity_id})", **values}


async def test_win_opportunity_closes_it_as_won_and_records_the_close(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    opportunity_id = await open_opportunity(sandbox, http)
    body = {"Status": 3, "OpportunityClose": close_of(opportunity_id, subject="Won Opportunity", actualrevenue=5000)}
    response = await http.post(api(sandbox) + "/WinOpportunity", json=body, headers=auth(sandbox))
    assert response.status_code == 204, response.text
    won = await one(sandbox, http, f"opportunities({opportunity_id})?$select=statecode,statuscode,actualvalue")
    assert (won["statecode"], won["statuscode"], won["actualvalue"]) == (1, 3, 5000)
    closes = await rows(
        sandbox,
        http,
        f"opportunitycloses?$select=subject,statecode,actualrevenue&$filter=_opportunityid_value eq {opportunity_id}",
    )
    assert [(c["subject"], c["statecode"], c["actualrevenue"]) for c in closes] == [("Won Opportunity", 1, 5000)]
    again = await http.post(api(sandbox) + "/WinOpportunity", json=body, headers=auth(sandbox))
    assert error_of(again)[:2] == (400, "0x80040203")


@pytest.mark.parametrize(("status", "state"), [(4, 2), (5, 2), (-1, 2)])
async def test_lose_opportunity_closes_it_as_lost(
    sandbox: Sandbox, http: httpx2.AsyncClient, status: int, state: int
) -> None:
    opportunity_id = await open_opportunity(sandbox, http)
    body = {"Status": status, "OpportunityClose": close_of(opportunity_id)}
    response = await http.post(api(sandbox) + "/LoseOpportunity", json=body, headers=auth(sandbox))
    assert response.status_code == 204, response.text
    lost = await one(sandbox, http, f"opportunities({opportunity_id})?$select=statecode,statuscode")
    assert lost["statecode"] == state and lost["statuscode"] == (4 if status == -1 else status)


async def test_closing_with_a_status_of_another_state_is_refused(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    opportunity_id = await open_opportunity(sandbox, http)
    closes = await total(sandbox, http, "opportunitycloses")
    body = {"Status": 3, "OpportunityClose": close_of(opportunity_id)}
    response = await http.post(api(sandbox) + "/LoseOpportunity", json=body, headers=auth(sandbox))
    status, code, message = error_of(response)
    assert (status, code) == (400, "0x80048408")
    assert message.startswith("3 is not a valid status code for state code OpportunityState.Lost")
    assert await total(sandbox, http, "opportunitycloses") == closes


async def test_the_close_must_name_its_opportunity(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    body = {"Status": 3, "OpportunityClose": {"subject": "Won"}}
    response = await http.post(api(sandbox) + "/WinOpportunity", json=body, headers=auth(sandbox))
    assert error_of(response)[:2] == (400, "0x80060888")


async def test_close_incident_resolves_the_case_and_records_the_resolution(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    case = (await rows(sandbox, http, "incidents?$select=title&$filter=statecode eq 0&$top=1"))[0]["incidentid"]
    resolution = {"subject": "Replaced the part", "timespent": 45, "incidentid@odata.bind": f"/incidents({case})"}
    body = {"IncidentResolution": resolution, "Status": 5}
    response = await http.post(api(sandbox) + "/CloseIncident", json=body, headers=auth(sandbox))
    assert response.status_code == 204, response.text
    resolved = await one(sandbox, http, f"incidents({case})?$select=statecode,statuscode")
    assert (resolved["statecode"], resolved["statuscode"]) == (1, 5)
    found = await rows(
        sandbox, http, f"incidentresolutions?$select=subject,timespent&$filter=_incidentid_value eq {case}"
    )
    assert [(r["subject"], r["timespent"]) for r in found] == [("Replaced the part", 45)]
    again = await http.post(api(sandbox) + "/CloseIncident", json=body, headers=auth(sandbox))
    assert error_of(again) == (400, "0x80040203", "Already Closed or Canceled")


# -- the custom API ----------------------------------------------------------------------------------------


async def score(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: dict[str, Any], user: str = "admin"
) -> httpx2.Response:
    return await http.post(api(sandbox) + "/cr8a1_ScoreAccounts", json=body, headers=auth(sandbox, user))


async def test_the_custom_api_answers_its_response_type_from_the_callers_rows(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    run_id = "5d6f7a8b-1111-4222-8333-944455556666"
    admin = await score(sandbox, http, {"Segment": "All", "Weight": 1.5, "RunId": run_id})
    assert admin.status_code == 200, admin.text
    body = admin.json()
    assert body["@odata.context"] == api(sandbox) + "/$metadata#Microsoft.Dynamics.CRM.cr8a1_ScoreAccountsResponse"
    active = len(await rows(sandbox, http, "accounts?$select=name&$filter=statecode eq 0"))
    assert (body["ScoredAccounts"], body["Score"], body["RunId"]) == (active, round(1.5 * active, 2), run_id)
    alice = (await score(sandbox, http, {"Segment": "All"}, "alice")).json()
    assert 0 < alice["ScoredAccounts"] < body["ScoredAccounts"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"Segment": None}, 400, "0x80040203"),
        ({"MinimumEmployees": "ten"}, 400, "0x80060888"),
        ({"MinimumEmployees": 2**31}, 400, "0x80060888"),
        ({"Weight": True}, 400, "0x80060888"),
        ({"IncludeInactive": 1}, 400, "0x80060888"),
        ({"RunId": "not-a-guid"}, 400, "0x80060888"),
        ({"Regions": "Canada"}, 400, "0x80060888"),
        ({"Regions": ["Canada", 3]}, 400, "0x80060888"),
        (
            {
                "Account": {
                    "@odata.type": "Microsoft.Dynamics.CRM.contact",
                    "contactid": "8a6b5f1e-0000-4000-8000-00000000000a",
                }
            },
            400,
            "0x80060888",
        ),
        ({"Account": "accounts(1)"}, 400, "0x80060888"),
    ],
)
async def test_the_custom_api_checks_each_parameter_type(
    sandbox: Sandbox, http: httpx2.AsyncClient, change: dict[str, Any], status: int, code: str
) -> None:
    body = {key: value for key, value in {"Segment": "All", **change}.items() if value is not None}
    assert error_of(await score(sandbox, http, body))[:2] == (status, code)


async def test_the_custom_api_scores_one_account_given_by_reference(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account = (await rows(sandbox, http, "accounts?$select=name&$filter=statecode eq 0&$top=1"))[0]["accountid"]
    body = {"Segment": "One", "Account": {"@odata.id": f"accounts({account})"}, "Weight": 2}
    response = await score(sandbox, http, body)
    assert response.status_code == 200, response.text
    assert (response.json()["ScoredAccounts"], response.json()["Score"]) == (1, 2)


async def test_an_action_in_a_failed_change_set_is_undone(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    lead = await open_lead(sandbox, http)
    accounts = await total(sandbox, http, "accounts")
    qualify_part = request_part(
        "POST", f"leads({lead['leadid']})/Microsoft.Dynamics.CRM.QualifyLead", ALL_THREE, content_id="1"
    )
    failing = request_part("POST", "accounts", {"nosuchcolumn": 1}, content_id="2")
    response = await send(sandbox, http, batch_body(change_set(qualify_part, failing)))
    assert [answer.status for answer in answers(response)] == [400]
    assert await total(sandbox, http, "accounts") == accounts
    assert (await one(sandbox, http, f"leads({lead['leadid']})?$select=statecode"))["statecode"] == 0
