"""Reading rows over real HTTP: the query options, paging and annotations Dataverse documents."""

from __future__ import annotations

from urllib.parse import quote

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of


async def test_service_document_lists_entity_sets(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/", headers=auth(sandbox))
    assert response.status_code == 200
    names = {entry["name"] for entry in response.json()["value"]}
    assert {"accounts", "contacts", "leads", "opportunities", "incidents", "cr8a1_projects"} <= names


async def test_whoami_names_the_calling_user(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/WhoAmI", headers=auth(sandbox, "alice"))
    body = response.json()
    assert response.status_code == 200
    assert body["UserId"] == "b0000000-0000-4000-8000-000000000002"
    assert body["OrganizationId"] == str(sandbox.environments["contoso"].spec.organization_id)
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")


async def test_select_returns_only_the_named_columns_with_id_and_etag(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    response = await http.get(api(sandbox) + "/accounts?$select=name,revenue&$top=3", headers=auth(sandbox))
    body = response.json()
    assert response.status_code == 200
    assert body["@odata.context"].endswith("/$metadata#accounts(name,revenue)")
    assert len(body["value"]) == 3
    for row in body["value"]:
        # A money column brings its currency, as "Select columns using OData" shows.
        assert set(row) == {"@odata.etag", "name", "revenue", "_transactioncurrencyid_value", "accountid"}
        assert row["@odata.etag"].startswith('W/"')


async def test_without_select_every_column_is_returned(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/accounts?$top=1", headers=auth(sandbox))
    row = response.json()["value"][0]
    assert "_primarycontactid_value" in row and "primarycontactid" not in row
    assert len(row) > 150


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("name eq 'Margie''s Travel'", {"Margie's Travel"}),
        ("name eq 'margie''s travel'", {"Margie's Travel"}),
        ("contains(name,'power & light')", {"City Power & Light", "City Power & Light (Redmond 1)"}),
        ("startswith(name,'Contoso')", {"Contoso Ltd", "Contoso Ltd (Seattle 1)"}),
        ("endswith(name,'Winery')", {"Coho Winery"}),
        ("accountnumber eq 'A-1001' or accountnumber eq 'A-1002'", {"Contoso Ltd", "Fabrikam Inc"}),
        (
            "(accountnumber eq 'A-1001' or accountnumber eq 'A-1002') and not contains(name,'Fabrikam')",
            {"Contoso Ltd"},
        ),
    ],
)
async def test_filter_selects_exactly_the_matching_rows(
    sandbox: Sandbox, http: httpx2.AsyncClient, filter_text: str, expected: set[str]
) -> None:
    url = api(sandbox) + "/accounts?$select=name&$filter=" + quote(filter_text)
    response = await http.get(url, headers=auth(sandbox))
    assert response.status_code == 200, response.text
    assert {row["name"] for row in response.json()["value"]} == expected


async def test_filter_on_numbers_nulls_and_lookups(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    headers = auth(sandbox)
    account = (await http.get(api(sandbox) + "/accounts?$filter=accountnumber eq 'A-1001'", headers=headers)).json()[
        "value"
    ][0]
    contacts = await http.get(
        api(sandbox) + f"/contacts?$select=fullname&$filter=_parentcustomerid_value eq {account['accountid']}",
        headers=headers,
    )
    assert len(contacts.json()["value"]) == 2
    big = await http.get(
        api(sandbox) + "/accounts?$select=revenue&$filter=revenue ge 1000000 and fax eq null", headers=headers
    )
    assert big.json()["value"] and all(row["revenue"] >= 1000000 for row in big.json()["value"])


async def test_orderby_sorts_and_breaks_ties_by_id(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(
        api(sandbox) + "/accounts?$select=revenue&$orderby=revenue desc&$top=10", headers=auth(sandbox)
    )
    revenues = [row["revenue"] for row in response.json()["value"]]
    assert revenues == sorted(revenues, reverse=True)


async def test_count_reports_the_total_not_the_page(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/accounts?$select=name&$count=true&$top=2", headers=auth(sandbox))
    body = response.json()
    assert body["@odata.count"] == 60
    assert len(body["value"]) == 2


async def test_paging_with_maxpagesize_returns_every_row_exactly_once(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    headers = auth(sandbox, Prefer="odata.maxpagesize=7")
    url: str | None = api(sandbox) + "/contacts?$select=fullname&$filter=" + quote("contains(fullname,'a')")
    seen: list[str] = []
    pages = 0
    while url:
        response = await http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["preference-applied"] == "odata.maxpagesize=7"
        body = response.json()
        assert len(body["value"]) <= 7
        seen += [row["contactid"] for row in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    everything = await http.get(
        api(sandbox) + "/contacts?$select=fullname&$filter=" + quote("contains(fullname,'a')"),
        headers=auth(sandbox),
    )
    assert len(seen) == len(set(seen)) == len(everything.json()["value"])
    assert pages > 2


async def test_expand_single_valued_navigation_with_nested_select(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    url = api(sandbox) + "/accounts?$select=name&$expand=primarycontactid($select=fullname,emailaddress1)&$top=2"
    response = await http.get(url, headers=auth(sandbox))
    assert response.status_code == 200, response.text
    for row in response.json()["value"]:
        contact = row["primarycontactid"]
        assert set(contact) == {"@odata.etag", "fullname", "emailaddress1", "contactid"}


async def test_expand_collection_valued_navigation(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    url = (
        api(sandbox)
        + "/accounts?$select=name&$expand=contact_customer_accounts($select=fullname)&$filter=accountnumber eq 'A-1001'"
    )
    response = await http.get(url, headers=auth(sandbox))
    assert response.status_code == 200, response.text
    assert len(response.json()["value"][0]["contact_customer_accounts"]) == 2


async def test_annotations_carry_formatted_values_and_lookup_details(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    headers = auth(sandbox, Prefer='odata.include-annotations="*"')
    url = (
        api(sandbox)
        + "/accounts?$select=name,industrycode,revenue,_primarycontactid_value,createdon"
        + "&$filter=accountnumber eq 'A-1001'"
    )
    response = await http.get(url, headers=headers)
    row = response.json()["value"][0]
    assert response.headers["preference-applied"] == 'odata.include-annotations="*"'
    assert row["industrycode@OData.Community.Display.V1.FormattedValue"]
    assert row["revenue@OData.Community.Display.V1.FormattedValue"].startswith("$")
    assert row["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert row["_primarycontactid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "primarycontactid"
    contact = await http.get(
        api(sandbox) + f"/contacts({row['_primarycontactid_value']})?$select=fullname", headers=headers
    )
    assert row["_primarycontactid_value@OData.Community.Display.V1.FormattedValue"] == contact.json()["fullname"]


async def test_without_prefer_no_annotations_are_sent(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/accounts?$select=industrycode&$top=1", headers=auth(sandbox))
    assert not [key for key in response.json()["value"][0] if "@OData.Community" in key]


async def test_retrieve_by_id_and_by_alternate_key(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    headers = auth(sandbox)
    by_key = await http.get(api(sandbox) + "/accounts(accountnumber='A-1012')?$select=name", headers=headers)
    assert by_key.status_code == 200
    assert by_key.json()["name"] == "City Power & Light"
    assert by_key.json()["@odata.context"].endswith("#accounts(name)/$entity")
    by_id = await http.get(api(sandbox) + f"/accounts({by_key.json()['accountid']})?$select=name", headers=headers)
    assert by_id.json()["name"] == "City Power & Light"
    assert by_id.headers["etag"] == by_id.json()["@odata.etag"]
    unchanged = await http.get(
        api(sandbox) + f"/accounts({by_key.json()['accountid']})?$select=name",
        headers={**headers, "If-None-Match": by_id.headers["etag"]},
    )
    assert unchanged.status_code == 304


async def test_alternate_key_value_with_quote_and_slash(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    headers = auth(sandbox)
    created = await http.post(
        api(sandbox) + "/accounts",
        json={"name": "Quote Test", "accountnumber": "O'Neil/7 #1 & 50%"},
        headers=headers,
    )
    assert created.status_code == 204, created.text
    key = quote("O''Neil/7 #1 & 50%", safe="")
    response = await http.get(api(sandbox) + f"/accounts(accountnumber='{key}')?$select=name", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Quote Test"


async def test_single_property_read(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await http.get(api(sandbox) + "/accounts(accountnumber='A-1001')/name", headers=auth(sandbox))
    assert response.json()["value"] == "Contoso Ltd"


@pytest.mark.parametrize(
    ("query", "status", "message_part"),
    [
        ("$select=nosuchcolumn", 400, "Could not find a property named 'nosuchcolumn'"),
        ("$filter=nosuch eq 1", 400, "Could not find a property named 'nosuch'"),
        ("$filter=name eq", 400, "Syntax error"),
        ("$filter=name eq 5", 400, "incompatible types"),
        ("$filter=revenue gt 'lots'", 400, "for operator kind 'GreaterThan'"),
        ("$top=-1", 400, "$top"),
        ("$foo=1", 400, "$foo"),
        ("$expand=nosuchnavigation", 400, "nosuchnavigation"),
    ],
)
async def test_bad_query_options_answer_400_with_the_odata_error(
    sandbox: Sandbox, http: httpx2.AsyncClient, query: str, status: int, message_part: str
) -> None:
    response = await http.get(api(sandbox) + "/accounts?" + query, headers=auth(sandbox))
    code_status, code, message = error_of(response)
    assert code_status == status
    # An unknown property answers 0x0, as the "Troubleshoot Dataverse Web API client errors" page shows.
    assert code == ("0x0" if message.startswith("Could not find a property named") else "0x80060888")
    assert message_part in message


async def test_unknown_entity_set_and_missing_row(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    headers = auth(sandbox)
    missing_set = await http.get(api(sandbox) + "/nosuchthings", headers=headers)
    assert error_of(missing_set) == (404, "0x8006088a", "Resource not found for the segment 'nosuchthings'.")
    row_id = "00000000-0000-0000-0000-000000000001"
    missing_row = await http.get(api(sandbox) + f"/accounts({row_id})", headers=headers)
    assert error_of(missing_row) == (404, "0x80040217", f"account With Id = {row_id} Does Not Exist")
    missing_key = await http.get(api(sandbox) + "/accounts(accountnumber='nope')", headers=headers)
    assert error_of(missing_key)[:2] == (404, "0x80040217")


async def test_environments_hold_separate_data(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    contoso = await http.get(api(sandbox) + "/accounts?$count=true&$top=1", headers=auth(sandbox))
    fabrikam = await http.get(
        api(sandbox, "fabrikam") + "/accounts?$count=true&$top=1",
        headers=auth(sandbox, environment="fabrikam"),
    )
    assert contoso.json()["@odata.count"] == 60
    assert fabrikam.json()["@odata.count"] == 15
