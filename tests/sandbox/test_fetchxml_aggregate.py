"""`<fetch aggregate='true'>` over real HTTP: aggregates, groups, date parts, paging of groups and the errors.

Every expected value is computed here from the rows a plain query returns, never by the sandbox's own engine.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from typing import Any

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, ask, auth, error_of, rows_of

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
ALICE = "b0000000-0000-4000-8000-000000000002"


async def fetch(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, text: str, user: str = "admin", **headers: str
) -> httpx2.Response:
    return await ask(sandbox, http, entity_set, "fetchXml", text, user, **headers)


async def values(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, text: str, user: str = "admin"
) -> list[dict[str, Any]]:
    return await rows_of(sandbox, http, entity_set, "fetchXml", text, user)


def aggregate(entity: str, body: str, **attributes: str) -> str:
    extra = "".join(f" {name}='{value}'" for name, value in attributes.items())
    return f"<fetch aggregate='true'{extra}><entity name='{entity}'>{body}</entity></fetch>"


async def test_every_aggregate_function_matches_the_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    accounts = await values(
        sandbox,
        http,
        "accounts",
        "<fetch><entity name='account'><attribute name='numberofemployees'/></entity></fetch>",
    )
    employees = [row["numberofemployees"] for row in accounts if row["numberofemployees"] is not None]
    body = "".join(
        f"<attribute name='numberofemployees' alias='{alias}' aggregate='{function}'/>"
        for alias, function in [
            ("Average", "avg"),
            ("Count", "count"),
            ("ColumnCount", "countcolumn"),
            ("Maximum", "max"),
            ("Minimum", "min"),
            ("Sum", "sum"),
        ]
    )
    (row,) = await values(sandbox, http, "accounts", aggregate("account", body))
    assert row == {
        "Average": math.trunc(sum(employees) / len(employees)),
        "Count": len(accounts),
        "ColumnCount": len(employees),
        "Maximum": max(employees),
        "Minimum": min(employees),
        "Sum": sum(employees),
    }


async def test_distinct_countcolumn_counts_each_value_once(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    accounts = await values(
        sandbox, http, "accounts", "<fetch><entity name='account'><attribute name='address1_city'/></entity></fetch>"
    )
    cities = [row["address1_city"] for row in accounts if row["address1_city"] is not None]
    body = (
        "<attribute name='address1_city' alias='cities' aggregate='countcolumn' distinct='true'/>"
        "<attribute name='address1_city' alias='rows' aggregate='countcolumn'/>"
    )
    assert await values(sandbox, http, "accounts", aggregate("account", body)) == [
        {"cities": len(set(cities)), "rows": len(cities)}
    ]


async def test_counts_per_owner_are_what_each_user_can_see(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    everything = await values(
        sandbox, http, "opportunities", "<fetch><entity name='opportunity'><attribute name='ownerid'/></entity></fetch>"
    )
    per_owner = Counter(row["_ownerid_value"] for row in everything)
    body = (
        "<attribute name='ownerid' alias='owner' groupby='true'/>"
        "<attribute name='opportunityid' alias='count' aggregate='count'/><order alias='count' descending='true'/>"
    )
    xml = aggregate("opportunity", body)
    response = await fetch(sandbox, http, "opportunities", xml, Prefer='odata.include-annotations="*"')
    as_admin = response.json()["value"]
    assert {row["owner"]: row["count"] for row in as_admin} == dict(per_owner)
    assert [row["count"] for row in as_admin] == sorted(per_owner.values(), reverse=True)
    alice = next(row for row in as_admin if row["owner"] == ALICE)
    assert alice["owner" + FORMATTED] == "Alice Anders"
    assert alice["owner@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"
    assert await values(sandbox, http, "opportunities", xml, "alice") == [{"owner": ALICE, "count": per_owner[ALICE]}]
    as_reader = await values(sandbox, http, "opportunities", xml, "carol")
    assert {row["owner"]: row["count"] for row in as_reader} == dict(per_owner)


async def test_grouping_by_a_linked_column_counts_the_joined_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    link = "<link-entity name='account' from='accountid' to='parentcustomerid' alias='company'>{}</link-entity>"
    plain = "<fetch><entity name='contact'><attribute name='fullname'/>{}</entity></fetch>".format(
        link.format("<attribute name='industrycode'/>")
    )
    expected = Counter(row["company.industrycode"] for row in await values(sandbox, http, "contacts", plain))
    body = "<attribute name='contactid' alias='contacts' aggregate='count'/>" + link.format(
        "<attribute name='industrycode' alias='industry' groupby='true'/>"
    )
    result = await values(sandbox, http, "contacts", aggregate("contact", body))
    assert {row.get("industry"): row["contacts"] for row in result} == dict(expected)


async def test_dates_group_by_day_week_month_quarter_and_year(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    account = (await values(sandbox, http, "accounts", "<fetch top='1'><entity name='account'/></fetch>"))[0]
    closing = [date(2023, 3, 25), date(2023, 8, 27), date(2024, 12, 31), date(2024, 12, 31)]
    for day in closing:
        created = await http.post(
            api(sandbox) + "/opportunities",
            json={
                "name": "Date grouping",
                "estimatedclosedate": day.isoformat(),
                "estimatedvalue": 1000,
                "customerid_account@odata.bind": f"/accounts({account['accountid']})",
            },
            headers=auth(sandbox),
        )
        assert created.status_code == 204, created.text
    parts = ("day", "week", "month", "quarter", "year")
    body = "".join(
        f"<attribute name='estimatedclosedate' alias='{part}' groupby='true' dategrouping='{part}'/>" for part in parts
    )
    body += "<attribute name='estimatedvalue' alias='total' aggregate='sum'/><order alias='year'/>"
    body += "<filter><condition attribute='name' operator='eq' value='Date grouping'/></filter>"
    result = await values(sandbox, http, "opportunities", aggregate("opportunity", body))
    # The service's weeks start on Sunday and week 1 holds 1 January: 27 August 2023 is in week 35.
    assert result == [
        {"day": 25, "week": 12, "month": 3, "quarter": 1, "year": 2023, "total": 1000.0},
        {"day": 27, "week": 35, "month": 8, "quarter": 3, "year": 2023, "total": 1000.0},
        {"day": 31, "week": 53, "month": 12, "quarter": 4, "year": 2024, "total": 2000.0},
    ]


async def test_created_per_year_and_month_matches_the_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    accounts = await values(
        sandbox, http, "accounts", "<fetch><entity name='account'><attribute name='createdon'/></entity></fetch>"
    )
    expected = Counter((int(row["createdon"][:4]), int(row["createdon"][5:7])) for row in accounts)
    body = (
        "<attribute name='createdon' alias='year' groupby='true' dategrouping='year' usertimezone='false'/>"
        "<attribute name='createdon' alias='month' groupby='true' dategrouping='month'/>"
        "<attribute name='accountid' alias='count' aggregate='count'/><order alias='year'/><order alias='month'/>"
    )
    result = await values(sandbox, http, "accounts", aggregate("account", body))
    assert [((row["year"], row["month"]), row["count"]) for row in result] == sorted(expected.items())


async def test_groups_page_with_count_and_page_without_a_cookie(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    body = (
        "<attribute name='industrycode' alias='industry' groupby='true'/>"
        "<attribute name='accountid' alias='count' aggregate='count'/><order alias='industry'/>"
    )
    everything = await values(sandbox, http, "accounts", aggregate("account", body))
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await fetch(sandbox, http, "accounts", aggregate("account", body, count="7", page=str(page)))
        result = response.json()
        assert "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie" not in result
        seen += result["value"]
        if not result["@Microsoft.Dynamics.CRM.morerecords"]:
            break
        page += 1
    assert seen == everything and page == math.ceil(len(everything) / 7)
    top = await values(sandbox, http, "accounts", aggregate("account", body, top="3"))
    assert top == everything[:3]


async def test_aggregatelimit_lowers_the_record_limit(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    body = "<attribute name='accountid' alias='count' aggregate='count'/>"
    status, code, message = error_of(
        await fetch(sandbox, http, "accounts", aggregate("account", body, aggregatelimit="10"))
    )
    assert (status, code, message) == (
        400,
        "0x8004e023",
        "AggregateQueryRecordLimit exceeded. Cannot perform this operation.",
    )
    assert await values(sandbox, http, "accounts", aggregate("account", body, aggregatelimit="60")) == [{"count": 60}]


COUNT = "<attribute name='accountid' alias='count' aggregate='count'/>"


@pytest.mark.parametrize(
    ("xml", "code", "message_part"),
    [
        (aggregate("account", "<attribute name='revenue' aggregate='sum'/>"), "0x80041109", "Invalid alias"),
        (aggregate("account", "<attribute name='name'/>" + COUNT), "0x80041107", "Attributes can not be returned"),
        (aggregate("account", "<all-attributes/>"), "0x80041107", "Attributes can not be returned"),
        (
            aggregate("account", "<attribute name='name' alias='n' groupby='true' aggregate='count'/>"),
            "0x80041137",
            "either be an aggregate or a Group By",
        ),
        (aggregate("account", "<attribute name='name' alias='n' aggregate='median'/>"), "0x8004111a", "Aggregates"),
        (aggregate("account", "<attribute name='name' alias='n' groupby='yes'/>"), "0x8004112e", "groupby"),
        (aggregate("account", COUNT + "<order attribute='name'/>"), "0x80041131", "Use an alias"),
        (aggregate("account", COUNT + "<order descending='true'/>"), "0x80041134", "An alias is required"),
        (aggregate("account", COUNT + "<order alias='nosuch'/>"), "0x80041109", "nosuch"),
        (aggregate("account", COUNT + COUNT), "0x80041130", "unique aliases"),
        (aggregate("account", "<attribute name='name' alias='n' aggregate='sum'/>"), "0x8004112f", "Aggregate sum"),
        (
            aggregate("account", "<attribute name='createdon' alias='d' groupby='true' dategrouping='hour'/>"),
            "0x80041135",
            "dategrouping",
        ),
        (
            aggregate("account", "<attribute name='createdon' alias='d' groupby='true'/>"),
            "0x80041135",
            "Invalid value ''",
        ),
        (
            aggregate("account", "<attribute name='createdon' alias='d' groupby='true' dategrouping='fiscal-year'/>"),
            "0x80041135",
            "fiscal",
        ),
        (
            aggregate("account", "<attribute name='name' alias='d' groupby='true' dategrouping='year'/>"),
            "0x80041135",
            "not a date",
        ),
        (aggregate("account", "<attribute name='nosuch' alias='n' aggregate='count'/>"), "0x80041103", "nosuch"),
        ("<fetch><entity name='account'><order alias='name'/></entity></fetch>", "0x80041132", "non-aggregate"),
        (
            "<fetch><entity name='account'><order descending='true'/></entity></fetch>",
            "0x80041133",
            "attribute is required",
        ),
    ],
)
async def test_bad_aggregate_queries_are_the_query_builders_errors(
    sandbox: Sandbox, http: httpx2.AsyncClient, xml: str, code: str, message_part: str
) -> None:
    status, answered_code, message = error_of(await fetch(sandbox, http, "accounts", xml))
    assert (status, answered_code) == (400, code)
    assert message_part in message
