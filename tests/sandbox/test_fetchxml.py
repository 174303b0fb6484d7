"""FetchXML through the Web API: attributes, filters, link-entities, paging cookies."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import quoteattr

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of


async def fetch(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, xml: str, user: str = "admin", **headers: str
) -> httpx2.Response:
    return await http.get(
        api(sandbox) + f"/{entity_set}?fetchXml=" + quote(xml, safe=""), headers=auth(sandbox, user, **headers)
    )


def names(response: httpx2.Response) -> list[Any]:
    return [row.get("name") for row in response.json()["value"]]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("<condition attribute='accountnumber' operator='eq' value='A-1012'/>", ["City Power & Light"]),
        ("<condition attribute='name' operator='like' value='Coho%'/>", ["Coho Winery", "Coho Winery (Sydney 1)"]),
        (
            "<condition attribute='name' operator='begins-with' value='Margie&apos;s'/>",
            ["Margie's Travel", "Margie's Travel (São Paulo 1)"],
        ),
        (
            "<condition attribute='accountnumber' operator='in'><value>A-1001</value><value>A-1002</value></condition>",
            ["Contoso Ltd", "Fabrikam Inc"],
        ),
        (
            "<filter type='or'><condition attribute='accountnumber' operator='eq' value='A-1001'/>"
            "<condition attribute='accountnumber' operator='eq' value='A-1003'/></filter>",
            ["Contoso Ltd", "Adventure Works Cycles"],
        ),
    ],
)
async def test_conditions_select_the_matching_rows(
    sandbox: Sandbox, http: httpx2.AsyncClient, condition: str, expected: list[str]
) -> None:
    xml = (
        f"<fetch><entity name='account'><attribute name='name'/><filter>{condition}</filter>"
        "<order attribute='accountnumber'/></entity></fetch>"
    )
    response = await fetch(sandbox, http, "accounts", xml)
    assert response.status_code == 200, response.text
    assert sorted(names(response)) == sorted(expected)


async def test_link_entity_columns_come_back_under_their_alias(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    xml = (
        "<fetch top='5'><entity name='contact'><attribute name='fullname'/>"
        "<link-entity name='account' from='accountid' to='parentcustomerid' alias='company' link-type='inner'>"
        "<attribute name='name'/><attribute name='industrycode'/>"
        "<filter><condition attribute='accountnumber' operator='eq' value='A-1001'/></filter>"
        "</link-entity></entity></fetch>"
    )
    response = await fetch(sandbox, http, "contacts", xml, Prefer='odata.include-annotations="*"')
    rows = response.json()["value"]
    assert len(rows) == 2
    assert {row["company.name"] for row in rows} == {"Contoso Ltd"}
    assert all("company.industrycode@OData.Community.Display.V1.FormattedValue" in row for row in rows)


async def test_paging_cookie_pages_through_every_row_once(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    seen: list[str] = []
    page, cookie = 1, None
    while True:
        cookie_attribute = f" paging-cookie={quoteattr(cookie)}" if cookie else ""
        xml = (
            f"<fetch count='17' page='{page}'{cookie_attribute}><entity name='contact'>"
            "<attribute name='fullname'/><order attribute='fullname'/></entity></fetch>"
        )
        body = (await fetch(sandbox, http, "contacts", xml)).json()
        seen += [row["contactid"] for row in body["value"]]
        if not body["@Microsoft.Dynamics.CRM.morerecords"]:
            assert "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie" not in body
            break
        annotation = body["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]
        assert annotation.startswith(f'<cookie pagenumber="{page + 1}" pagingcookie="')
        match = re.search(r'pagingcookie="([^"]+)"', annotation)
        assert match is not None
        cookie = unquote(unquote(match.group(1)))
        assert cookie.startswith("<cookie page=")
        page += 1
    assert len(seen) == len(set(seen)) == 120


async def test_fetchxml_respects_record_level_security(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    xml = "<fetch returntotalrecordcount='true' count='1'><entity name='account'><attribute name='name'/></entity>"
    xml += "</fetch>"
    alice = (await fetch(sandbox, http, "accounts", xml, "alice")).json()
    admin = (await fetch(sandbox, http, "accounts", xml)).json()
    assert (
        0 < alice["@Microsoft.Dynamics.CRM.totalrecordcount"] < admin["@Microsoft.Dynamics.CRM.totalrecordcount"] == 60
    )


async def test_eq_userid_finds_the_callers_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    xml = (
        "<fetch><entity name='account'><attribute name='ownerid'/>"
        "<filter><condition attribute='ownerid' operator='eq-userid'/></filter></entity></fetch>"
    )
    rows = (await fetch(sandbox, http, "accounts", xml, "bob")).json()["value"]
    assert rows and {row["_ownerid_value"] for row in rows} == {"b0000000-0000-4000-8000-000000000003"}


@pytest.mark.parametrize(
    ("xml", "message_part"),
    [
        ("<fetch><entity name='account'>", "Invalid XML"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><fetch/>", "DOCTYPE"),
        (
            "<fetch><entity name='account'><filter>"
            "<condition attribute='name' operator='sounds-like' value='x'/></filter></entity></fetch>",
            "sounds-like",
        ),
        ("<fetch><entity name='account'><attribute name='nosuch'/></entity></fetch>", "nosuch"),
        ("<fetch count='6000'><entity name='account'/></fetch>", "count"),
        ("<fetch><entity name='contact'/></fetch>", "does not match"),
        ("<fetch><entity name='account'><link-entity name='nosuch' from='a' to='b'/></entity></fetch>", "nosuch"),
    ],
)
async def test_bad_fetchxml_is_a_400_that_says_why(
    sandbox: Sandbox, http: httpx2.AsyncClient, xml: str, message_part: str
) -> None:
    status, code, message = error_of(await fetch(sandbox, http, "accounts", xml))
    assert status == 400
    assert code == "0x80041103"
    assert message_part in message


@pytest.mark.parametrize(
    ("attributes", "named"),
    [
        ("page='1'", "page"),
        ("count='5' page='2'", "page"),
        ("count='5'", "count"),
        ("paging-cookie='&lt;cookie page=\"1\"&gt;&lt;/cookie&gt;'", "paging-cookie"),
        ("returntotalrecordcount='true'", "returntotalrecordcount"),
    ],
)
async def test_top_with_a_paging_attribute_is_the_services_invalid_argument(
    sandbox: Sandbox, http: httpx2.AsyncClient, attributes: str, named: str
) -> None:
    xml = f"<fetch top='5' {attributes}><entity name='account'><attribute name='name'/></entity></fetch>"
    assert error_of(await fetch(sandbox, http, "accounts", xml)) == (
        400,
        "0x80040203",
        f"The top attribute can't be specified with paging attribute {named}",
    )


async def test_top_alone_or_with_a_false_total_count_returns_rows(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    xml = (
        "<fetch top='5' returntotalrecordcount='false'><entity name='account'><attribute name='name'/></entity></fetch>"
    )
    response = await fetch(sandbox, http, "accounts", xml)
    assert response.status_code == 200
    assert len(response.json()["value"]) == 5
