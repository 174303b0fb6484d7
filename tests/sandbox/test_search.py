"""Dataverse search 2.0 (`/api/search/v2.0/query` and `/status`) over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from sandbox import Sandbox, find_user

from .support import api, auth, error_of


def search_url(sandbox: Sandbox, environment: str = "contoso", operation: str = "query") -> str:
    return f"{sandbox.environments[environment].url}/api/search/v2.0/{operation}"


async def post_search(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: dict[str, Any], user: str = "admin", environment: str = "contoso"
) -> httpx2.Response:
    return await http.post(search_url(sandbox, environment), json=body, headers=auth(sandbox, user, environment))


async def search(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: dict[str, Any], user: str = "admin"
) -> dict[str, Any]:
    """The unescaped `response` of a query that must succeed."""
    response = await post_search(sandbox, http, body, user)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = json.loads(response.json()["response"])
    return result


# The accounts of the demo data in São Paulo.
PAULO = {"Litware Inc (São Paulo 1)", "Margie's Travel (São Paulo 1)", "Best For You Organics Company (São Paulo 1)"}


def entities(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


def user_id(name: str) -> str:
    user = find_user(name)
    assert user is not None
    return str(user.system_user_id)


async def test_a_search_finds_accounts_contacts_and_leads_with_their_hits_highlighted(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    result = await search(sandbox, http, {"search": "Contoso Maria", "top": 100})

    assert {"account", "contact", "lead"} <= {item["EntityName"] for item in result["Value"]}
    assert result["Error"] is None and result["QueryContext"] is None and result["Count"] == -1
    account = next(item for item in result["Value"] if item["Attributes"].get("name") == "Contoso Ltd")
    assert account["Attributes"] == {"@search.objecttypecode": 1, "name": "Contoso Ltd"}
    assert account["Highlights"]["name"] == ["{crmhit}Contoso{/crmhit} Ltd"]
    contact = next(item for item in result["Value"] if item["EntityName"] == "contact")
    assert contact["Attributes"]["fullname"].startswith("Maria ")
    assert "{crmhit}Maria{/crmhit}" in contact["Highlights"]["fullname"][0]
    scores = [item["Score"] for item in result["Value"]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


@pytest.mark.parametrize(
    ("select", "search_columns"),
    [("selectColumns", "searchColumns"), ("SelectColumns", "SearchColumns"), ("selectcolumns", "searchcolumns")],
)
async def test_entities_choose_the_tables_the_columns_searched_and_the_columns_returned(
    sandbox: Sandbox, http: httpx2.AsyncClient, select: str, search_columns: str
) -> None:
    scope = {"name": "account", select: ["name", "address1_city", "createdon"], search_columns: ["address1_city"]}
    result = await search(sandbox, http, {"search": "Seattle", "entities": entities(scope)})

    assert result["Value"]
    for item in result["Value"]:
        assert item["EntityName"] == "account"
        assert item["Attributes"]["address1_city"] == "Seattle"
        assert set(item["Attributes"]) == {
            "@search.objecttypecode",
            "name",
            "address1_city",
            "createdon",
            "createdon@OData.Community.Display.V1.FormattedValue",
        }
        assert item["Highlights"] == {"address1_city": ["{crmhit}Seattle{/crmhit}"]}


async def test_without_search_columns_only_the_primary_name_is_searched(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    by_name = await search(sandbox, http, {"search": "Seattle", "entities": entities({"name": "account"})})
    by_city = await search(
        sandbox,
        http,
        {"search": "Seattle", "entities": entities({"name": "account", "searchColumns": ["address1_city"]})},
    )

    assert all("Seattle" in item["Attributes"]["name"] for item in by_name["Value"])
    assert len(by_city["Value"]) > len(by_name["Value"])


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ('"Contoso Ltd"', None, {"Contoso Ltd", "Contoso Ltd (Seattle 1)"}),
        ("Contoso -Seattle", None, {"Contoso Ltd"}),
        ("Conto*", None, {"Contoso Ltd", "Contoso Ltd (Seattle 1)"}),
        (
            "fabrikam | litware",
            None,
            {"Fabrikam Inc", "Fabrikam Inc (Redmond 1)", "Litware Inc", "Litware Inc (São Paulo 1)"},
        ),
        ("Litware Paulo", None, {"Litware Inc", *PAULO}),
        ("Litware Paulo", "{'searchmode': 'all'}", {"Litware Inc (São Paulo 1)"}),
        ("Litware+Paulo", None, {"Litware Inc (São Paulo 1)"}),
        ("A\\-1001", None, {"Contoso Ltd"}),
    ],
)
async def test_the_simple_search_syntax(
    sandbox: Sandbox, http: httpx2.AsyncClient, text: str, options: str | None, expected: set[str]
) -> None:
    scope = {"name": "account", "searchColumns": ["name", "accountnumber"]}
    body = {"search": text, "entities": entities(scope), "options": options}
    result = await search(sandbox, http, body)

    assert {item["Attributes"]["name"] for item in result["Value"]} == expected


async def test_filters_limit_each_table_and_the_whole_search(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    inactive = {"name": "account", "selectColumns": ["name", "statecode"], "filter": "statecode eq 1"}
    only_inactive = await search(sandbox, http, {"search": "*", "entities": entities(inactive), "top": 100})
    assert only_inactive["Value"]
    assert {item["Attributes"]["statecode"] for item in only_inactive["Value"]} == {1}
    assert {
        item["Attributes"]["statecode@OData.Community.Display.V1.FormattedValue"] for item in only_inactive["Value"]
    } == {"Inactive"}

    recent = [{"name": table, "selectColumns": ["createdon"]} for table in ("account", "contact", "lead")]
    body = {
        "search": "*",
        "entities": entities(*recent),
        "filter": "createdon ge 2025-01-01",
        "top": 100,
        "count": True,
    }
    result = await search(sandbox, http, body)
    assert result["Value"] and all(item["Attributes"]["createdon"] >= "2025-01-01" for item in result["Value"])

    numbered = await search(sandbox, http, {"search": "*", "filter": "accountnumber eq 'A-1001'"})
    assert [(item["EntityName"], item["Attributes"]["name"]) for item in numbered["Value"]] == [
        ("account", "Contoso Ltd")
    ]


async def test_facets_count_the_tables_and_values_of_every_row_found(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    facets = [
        "entityname",
        "ownerid,count:2",
        "industrycode,sort:value,count:100",
        "account:revenue,values:1000000|10000000",
    ]
    body = {"search": "Contoso Maria", "facets": json.dumps(facets), "top": 1, "count": True}
    result = await search(sandbox, http, body)
    everything = await search(sandbox, http, {"search": "Contoso Maria", "top": 100})

    by_table = {entry["value"]: entry["count"] for entry in result["Facets"]["entityname"]}
    found = [item["EntityName"] for item in everything["Value"]]
    assert by_table == {table: found.count(table) for table in set(found)}
    assert sum(by_table.values()) == result["Count"] == len(found)
    assert all(entry["type"] == "Value" and entry["from"] is None for entry in result["Facets"]["entityname"])

    owners = result["Facets"]["ownerid"]
    assert len(owners) == 2 and owners[0]["count"] >= owners[1]["count"]
    assert owners[0]["optionalvalue"] in {"Avery Admin", "Alice Anders", "Bob Baker"}
    industries = [entry["value"] for entry in result["Facets"]["industrycode"]]
    assert industries == sorted(industries)

    ranges = result["Facets"]["account:revenue"]
    assert [(entry["from"], entry["to"], entry["type"]) for entry in ranges] == [
        (None, 1000000, "Range"),
        (1000000, 10000000, "Range"),
        (10000000, None, "Range"),
    ]
    assert sum(entry["count"] for entry in ranges) == by_table["account"]


async def test_count_skip_and_top_page_through_the_results(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    everything = await search(sandbox, http, {"search": "Contoso Maria", "top": 100, "count": True})
    first = await search(sandbox, http, {"search": "Contoso Maria", "top": 4})
    second = await search(sandbox, http, {"search": "Contoso Maria", "top": 4, "skip": 4, "count": True})
    default = await search(sandbox, http, {"search": "*"})

    ids = [item["Id"] for item in everything["Value"]]
    assert [item["Id"] for item in first["Value"] + second["Value"]] == ids[:8]
    assert first["Count"] == -1 and second["Count"] == everything["Count"] == len(ids)
    assert len(default["Value"]) == 50


async def test_orderby_overrides_relevance(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    scope = {"name": "contact", "selectColumns": ["fullname", "createdon"], "searchColumns": ["fullname"]}
    body = {"search": "Maria", "entities": entities(scope), "orderby": json.dumps(["createdon desc"])}
    result = await search(sandbox, http, body)

    created = [item["Attributes"]["createdon"] for item in result["Value"]]
    assert len(created) > 1 and created == sorted(created, reverse=True)


async def test_a_salesperson_finds_only_the_rows_they_may_read(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    scopes = entities(*({"name": table, "selectColumns": ["ownerid"]} for table in ("account", "contact", "lead")))
    bob = await search(sandbox, http, {"search": "*", "entities": scopes, "count": True}, user="bob")
    admin = await search(sandbox, http, {"search": "*", "entities": scopes, "count": True})

    assert bob["Value"] and {item["Attributes"]["ownerid"] for item in bob["Value"]} == {user_id("bob")}
    assert 0 < bob["Count"] < admin["Count"]
    hidden = next(item for item in admin["Value"] if item["Attributes"]["ownerid"] != user_id("bob"))
    assert hidden["Id"] not in {item["Id"] for item in bob["Value"]}


async def test_a_new_row_is_found_at_once(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    created = await http.post(api(sandbox) + "/accounts", json={"name": "Quokka Quarries"}, headers=auth(sandbox))
    assert created.status_code == 204

    result = await search(sandbox, http, {"search": "quokka"})
    assert [item["Attributes"]["name"] for item in result["Value"]] == ["Quokka Quarries"]


async def test_search_is_off_where_no_administrator_turned_it_on(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await post_search(sandbox, http, {"search": "Contoso"}, environment="fabrikam")
    status = await http.get(search_url(sandbox, "fabrikam", "status"), headers=auth(sandbox, "admin", "fabrikam"))

    assert error_of(response) == (400, "0x80048d0b", "Dataverse Search feature is disabled for this organization.")
    assert json.loads(status.json()["response"]) == {"value": {"status": "notprovisioned", "lockboxstatus": "Unknown"}}


async def test_status_lists_the_tables_and_columns_enabled_for_search(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    response = await http.get(search_url(sandbox, operation="status"), headers=auth(sandbox))
    definitions = await http.get(
        api(sandbox) + "/EntityDefinitions?$select=LogicalName,SyncToExternalSearchIndex", headers=auth(sandbox)
    )

    status = json.loads(response.json()["response"])["value"]
    assert status["status"] == "provisioned"
    tables = {entry["entitylogicalname"]: entry for entry in status["entitystatusresults"]}
    assert {"account", "contact", "lead"} <= set(tables)
    assert tables["account"]["primarynamefield"] == "name" and tables["account"]["objecttypecode"] == 1
    assert {"name", "emailaddress1", "createdon"} <= set(tables["account"]["searchableindexedfieldinfomap"])
    synced = {row["LogicalName"] for row in definitions.json()["value"] if row["SyncToExternalSearchIndex"]}
    assert synced == set(tables)


async def test_a_search_without_a_token_is_refused_naming_the_authority(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    response = await http.post(search_url(sandbox), json={"search": "Contoso"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer authorization_uri=")


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"top": 5}, 400, "0x80040203", "search term is required"),
        ({"search": ""}, 400, "0x80040203", "1 to 100 characters"),
        ({"search": "x" * 101}, 400, "0x80040203", "it is 101 characters"),
        ({"search": "a", "top": 101}, 400, "0x80040203", "'top' is a whole number, 0 to 100"),
        ({"search": "a", "top": "5"}, 400, "0x80040203", "'top' is a whole number"),
        ({"search": "a", "skip": -1}, 400, "0x80040203", "'skip' is a whole number, 0 or more"),
        ({"search": "a", "count": "yes"}, 400, "0x80040203", "'count' is true or false"),
        ({"search": "a", "Search": "a"}, 400, "0x80040203", "'Search' is not a parameter"),
        ({"search": "a", "entities": [{"name": "account"}]}, 400, "0x80040203", "a string holding JSON"),
        ({"search": "a", "entities": "[{name: account}]"}, 400, "0x80040203", "not valid JSON"),
        ({"search": "a", "entities": '[{"name": "acount"}]'}, 400, "0x80040203", "'acount' does not exist"),
        ({"search": "a", "entities": '[{"name": "product"}]'}, 400, "0x80040203", "not enabled for Dataverse search"),
        (
            {"search": "a", "entities": '[{"name": "account", "selectColumns": ["description"]}]'},
            400,
            "0x80040203",
            "'description' of 'account' is not in its search index",
        ),
        (
            {"search": "a", "entities": '[{"name": "account", "searchColumns": ["createdon"]}]'},
            400,
            "0x80040203",
            "'createdon' of 'account' is not searchable",
        ),
        ({"search": "a", "facets": "entityname"}, 400, "0x80040203", "'facets' parameter is not valid JSON"),
        ({"search": "a", "facets": '["websiteurl"]'}, 400, "0x80040203", "no table searched holds"),
        ({"search": "a", "facets": '["createdon,count:5,values:2024-01-01"]'}, 400, "0x80040203", "combines"),
        ({"search": "a", "orderby": '["name sideways"]'}, 400, "0x80040203", "is not '<column> asc'"),
        ({"search": "a", "filter": "websiteurl eq 'x'"}, 400, "0x80040203", "no table searched has"),
        ({"search": "a", "filter": "name eq"}, 400, "0x80060888", "Syntax error"),
        ({"search": "a", "options": "{'searchmode': 'most'}"}, 400, "0x80040203", "searchmode: most"),
        ({"search": "a", "options": "{'querytype': 'lucene'}"}, 501, "0x8006088a", "lucene"),
    ],
)
async def test_a_bad_query_is_refused_saying_what_is_wrong(
    sandbox: Sandbox, http: httpx2.AsyncClient, body: dict[str, Any], status: int, code: str, says: str
) -> None:
    response = await post_search(sandbox, http, body)

    answered_status, answered_code, message = error_of(response)
    assert (answered_status, answered_code) == (status, code)
    assert says in message


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/search/v2.0/query", 405, "0x80060888"),
        ("POST", "/api/search/v2.0/status", 405, "0x80060888"),
        ("POST", "/api/search/v2.0/suggest", 501, "0x8006088a"),
        ("POST", "/api/search/v1.0/query", 501, "0x8006088a"),
        ("POST", "/api/search/v2.0/lookup", 404, "0x8006088a"),
    ],
)
async def test_other_search_requests_are_refused(
    sandbox: Sandbox, http: httpx2.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    url = sandbox.environments["contoso"].url + path
    response = await http.request(method, url, json={"search": "Contoso"}, headers=auth(sandbox))

    assert error_of(response)[:2] == (status, code)
