"""`$apply` over real HTTP: aggregates and groups as Dataverse's Web API computes them, and what it refuses.

Every expected value is computed here from the rows a plain query returns, never by the sandbox's own engine.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from sandbox import Sandbox
from sandbox._errors import unknown_property

from .support import api, ask, auth, error_of, rows_of

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
ALICE = "b0000000-0000-4000-8000-000000000002"
UNKNOWN = unknown_property("account", "nosuch").code  # the code of the service's unknown-property answer


async def apply(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, text: str, user: str = "admin", **headers: str
) -> httpx2.Response:
    return await ask(sandbox, http, entity_set, "$apply", text, user, **headers)


async def groups(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, text: str, user: str = "admin"
) -> list[dict[str, Any]]:
    return await rows_of(sandbox, http, entity_set, "$apply", text, user)


async def rows(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, query: str, user: str = "admin"
) -> list[dict[str, Any]]:
    response = await http.get(api(sandbox) + f"/{entity_set}?{query}", headers=auth(sandbox, user))
    assert response.status_code == 200, response.text
    value: list[dict[str, Any]] = response.json()["value"]
    return value


async def test_count_and_total_per_status_match_the_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    accounts = await rows(sandbox, http, "accounts", "$select=statuscode,revenue")
    counts = Counter(row["statuscode"] for row in accounts)
    totals: dict[int, float] = defaultdict(float)
    for row in accounts:
        totals[row["statuscode"]] += row["revenue"] or 0
    text = "groupby((statuscode),aggregate($count as count,revenue with sum as total))"
    result = await groups(sandbox, http, "accounts", text)
    assert [row["statuscode"] for row in result] == sorted(counts)
    for row in result:
        assert row["count"] == counts[row["statuscode"]]
        assert row["total"] == pytest.approx(totals[row["statuscode"]])


async def test_formatted_values_come_with_the_annotations_asked_for(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    prefer = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
    text = "groupby((statuscode),aggregate($count as count,revenue with sum as total))"
    response = await apply(sandbox, http, "accounts", text, Prefer=prefer)
    body = response.json()
    assert response.headers["preference-applied"] == prefer
    assert body["@odata.context"] == api(sandbox) + "/$metadata#accounts"
    active = body["value"][0]
    assert active["statuscode" + FORMATTED] == "Active"
    assert active["count" + FORMATTED] == f"{active['count']:,}"
    assert active["total" + FORMATTED] == f"${active['total']:,.2f}"
    plain = await groups(sandbox, http, "accounts", text)
    assert all("@" not in key for row in plain for key in row)


async def test_aggregate_without_groupby_is_one_row_of_totals(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    accounts = await rows(sandbox, http, "accounts", "$select=revenue,numberofemployees,createdon")
    revenues = [row["revenue"] for row in accounts if row["revenue"] is not None]
    employees = [row["numberofemployees"] for row in accounts if row["numberofemployees"] is not None]
    text = (
        "aggregate($count as count,revenue with sum as total,revenue with average as mean,"
        "revenue with min as smallest,revenue with max as largest,numberofemployees with average as staff,"
        "createdon with max as newest)"
    )
    (result,) = await groups(sandbox, http, "accounts", text)
    assert result["count"] == len(accounts)
    assert result["total"] == pytest.approx(sum(revenues))
    assert result["mean"] == pytest.approx(sum(revenues) / len(revenues))
    assert (result["smallest"], result["largest"]) == (min(revenues), max(revenues))
    # An average of whole numbers is a whole number, as SQL Server's AVG truncates it.
    assert result["staff"] == math.trunc(sum(employees) / len(employees))
    assert result["newest"] == max(row["createdon"] for row in accounts)


async def test_each_user_counts_only_the_opportunities_they_can_see(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    everything = await rows(sandbox, http, "opportunities", "$select=_ownerid_value")
    per_owner = Counter(row["_ownerid_value"] for row in everything)
    text = "groupby((_ownerid_value),aggregate($count as count))"

    async def counts(user: str) -> dict[str, int]:
        return {row["_ownerid_value"]: row["count"] for row in await groups(sandbox, http, "opportunities", text, user)}

    as_admin, as_alice, as_reader = await counts("admin"), await counts("alice"), await counts("carol")
    assert as_admin == as_reader == dict(per_owner)
    assert len(as_admin) > 1
    assert as_alice == {ALICE: per_owner[ALICE]}


async def test_open_pipeline_per_account_sums_estimated_values(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    opportunities = await rows(
        sandbox, http, "opportunities", "$select=_parentaccountid_value,estimatedvalue&$filter=statecode eq 0"
    )
    expected: dict[str, float] = defaultdict(float)
    for row in opportunities:
        expected[row["_parentaccountid_value"]] += row["estimatedvalue"]
    text = "filter(statecode eq 0)/groupby((_parentaccountid_value),aggregate(estimatedvalue with sum as total))"
    response = await apply(sandbox, http, "opportunities", text, Prefer='odata.include-annotations="*"')
    result = response.json()["value"]
    assert {row["_parentaccountid_value"]: row["total"] for row in result} == pytest.approx(dict(expected))
    first = result[0]
    assert first["_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert first["_parentaccountid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "parentaccountid"
    account = await rows(
        sandbox, http, "accounts", f"$select=name&$filter=accountid eq {first['_parentaccountid_value']}"
    )
    assert first["_parentaccountid_value" + FORMATTED] == account[0]["name"]


async def test_grouping_by_a_related_column_names_it_after_the_table(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    accounts = await rows(sandbox, http, "accounts", "$select=revenue&$expand=primarycontactid($select=fullname)")
    expected: dict[str, float] = defaultdict(float)
    for row in accounts:
        expected[row["primarycontactid"]["fullname"]] += row["revenue"]
    text = "groupby((primarycontactid/fullname),aggregate(revenue with sum as total))"
    result = await groups(sandbox, http, "accounts", text)
    assert {row["contact_fullname"]: row["total"] for row in result} == pytest.approx(dict(expected))


async def test_groupby_alone_lists_distinct_values_leaving_nulls_out(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    created = await http.post(api(sandbox) + "/accounts", json={"name": "No Category Ltd"}, headers=auth(sandbox))
    assert created.status_code == 204
    accounts = await rows(sandbox, http, "accounts", "$select=statuscode,accountcategorycode")
    expected = {(row["statuscode"], row["accountcategorycode"]) for row in accounts}
    result = await groups(sandbox, http, "accounts", "groupby((statuscode,accountcategorycode))")
    assert {(row["statuscode"], row.get("accountcategorycode")) for row in result} == expected
    assert {"statuscode": 1} in result  # the new account's null category is left out of its row
    assert len(result) == len(expected)


async def test_filter_means_what_dollar_filter_means(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    condition = "contact_customer_accounts/any(c: startswith(c/fullname,'A')) and primarycontactid/fullname ne null"
    url = api(sandbox) + "/accounts?$count=true&$select=name&$filter=" + quote(condition, safe="")
    expected = (await http.get(url, headers=auth(sandbox))).json()["@odata.count"]
    assert 0 < expected < 60
    assert await groups(sandbox, http, "accounts", f"filter({condition})/aggregate($count as count)") == [
        {"count": expected}
    ]


async def test_a_related_collection_aggregates_only_its_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    (account,) = await rows(sandbox, http, "accounts", "$select=name&$filter=accountnumber eq 'A-1001'")
    collection = f"accounts({account['accountid']})/contact_customer_accounts"
    contacts = await rows(sandbox, http, collection, "$select=fullname")
    assert await groups(sandbox, http, collection, "aggregate($count as count)") == [{"count": len(contacts)}]


@pytest.mark.parametrize(
    ("query", "status", "code", "message_part"),
    [
        (
            "$apply=groupby((statuscode),aggregate($count as count))&$orderby=count desc",
            400,
            "0x80060888",
            "The query node SingleValueOpenPropertyAccess is not supported",
        ),
        ("$apply=groupby((statuscode))&$orderby=statuscode", 400, "0x80060888", "<order alias="),
        ("$apply=groupby((createdon))", 400, "0x80060888", "date and time"),
        ("$apply=aggregate(revenue with countdistinct as n)", 400, "0x80060888", "distinct='true'"),
        ("$apply=aggregate(revenue with median as n)", 400, "0x80060888", "median"),
        ("$apply=aggregate(name with sum as n)", 400, "0x8004112f", "Aggregate sum is not supported"),
        ("$apply=groupby((nosuch))", 400, UNKNOWN, "Could not find a property named 'nosuch'"),
        ("$apply=groupby((nosuch/name))", 400, UNKNOWN, "Could not find a property named 'nosuch'"),
        ("$apply=compute(revenue mul 2 as double)", 400, "0x80060888", "compute"),
        ("$apply=groupby((statuscode))/filter(statuscode eq 1)", 400, "0x80060888", "nothing may follow"),
        ("$apply=filter(statecode eq 0)", 400, "0x80060888", "before one aggregate"),
        ("$apply=groupby(statuscode)", 400, "0x80060888", "groupby((name"),
        ("$apply=aggregate(revenue as total)", 400, "0x80060888", "with <method>"),
        ("$apply=groupby((statuscode),aggregate($count as statuscode))", 400, "0x80060888", "more than one"),
        ("$apply=groupby((statuscode))&$filter=statecode eq 0", 400, "0x80060888", "filter(...)/groupby"),
        ("$apply=groupby((statuscode))&$top=1", 400, "0x80060888", "$top"),
    ],
)
async def test_what_the_service_refuses_is_a_400_that_says_why(
    sandbox: Sandbox, http: httpx2.AsyncClient, query: str, status: int, code: str, message_part: str
) -> None:
    response = await http.get(api(sandbox) + "/accounts?" + query, headers=auth(sandbox))
    assert error_of(response)[:2] == (status, code)
    assert message_part in error_of(response)[2]


async def test_more_than_fifty_thousand_rows_are_the_aggregate_record_limit(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    # Written straight to the store: bare rows are enough to count, and the seeder would take seconds.
    sandbox.environments["contoso"].store.connection.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) "
        "INSERT INTO account (accountid, name, accountnumber) "
        "SELECT printf('%08d-0000-4000-8000-000000000000', i), 'Bulk ' || i, 'B-' || i FROM n"
    )
    status, code, message = error_of(await apply(sandbox, http, "accounts", "aggregate($count as count)"))
    assert (status, code) == (400, "0x8004e023")
    assert message == "AggregateQueryRecordLimit exceeded. Cannot perform this operation."
    # A filter that leaves fewer rows is the documented way round the limit.
    text = "filter(startswith(accountnumber,'A-'))/aggregate($count as count)"
    assert await groups(sandbox, http, "accounts", text) == [{"count": 60}]
    fetch = (
        "<fetch aggregate='true'><entity name='account'>"
        "<attribute name='accountid' alias='count' aggregate='count'/></entity></fetch>"
    )
    response = await http.get(api(sandbox) + "/accounts?fetchXml=" + quote(fetch, safe=""), headers=auth(sandbox))
    assert error_of(response)[:2] == (400, "0x8004e023")
