"""Query semantics over real HTTP, as Microsoft documents them: paging beside `$top`, navigation paths, lambdas
(per-user visibility included), query functions against rows whose dates the sandbox's own clock set, counts,
filtered collections and the service's error codes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx2
import pytest

from sandbox import Sandbox

from .support import api, auth, error_of

NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)  # a Wednesday: the week began on Sunday 12 May


def stopped_at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(row.get("name") or row.get("fullname") for row in response.json()["value"])


async def create(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, values: dict[str, Any], user: str = "admin"
) -> str:
    response = await http.post(f"{api(sandbox)}/{entity_set}", json=values, headers=auth(sandbox, user))
    assert response.status_code == 204, response.text
    return response.headers["odata-entityid"].rsplit("(", 1)[1].rstrip(")")


async def get(sandbox: Sandbox, http: httpx2.AsyncClient, path: str, user: str = "admin", **headers: str) -> Any:
    return await http.get(f"{api(sandbox)}/{path}", headers=auth(sandbox, user, **headers))


# -- paging: $top beside Prefer: odata.maxpagesize ----------------------------------------------------------------


async def test_top_is_ignored_when_a_page_size_is_preferred(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    """ "Don't use $top with the Prefer: odata.maxpagesize request header. If you include both, $top is ignored."""
    alone = await get(sandbox, http, "accounts?$select=name&$top=3")
    assert len(alone.json()["value"]) == 3 and "@odata.nextLink" not in alone.json()
    both = await get(sandbox, http, "accounts?$select=name&$top=3", Prefer="odata.maxpagesize=2")
    body = both.json()
    assert len(body["value"]) == 2
    assert both.headers["preference-applied"] == "odata.maxpagesize=2"
    pages = [body["value"]]
    while "@odata.nextLink" in body:
        body = (await http.get(body["@odata.nextLink"], headers=auth(sandbox, Prefer="odata.maxpagesize=2"))).json()
        pages.append(body["value"])
    assert sum(len(page) for page in pages) == 60  # every account, not three


async def test_the_paging_cookie_names_the_first_and_last_row_of_the_page(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    body = (await get(sandbox, http, "accounts?$select=name", Prefer="odata.maxpagesize=2")).json()
    first, last = (row["accountid"].upper() for row in body["value"])
    cookie = unquote(unquote(unquote(body["@odata.nextLink"].split("$skiptoken=", 1)[1])))
    assert f'<cookie page="1"><accountid last="{{{last}}}" first="{{{first}}}" /></cookie>' in cookie


# -- navigation paths and lambda operators ---------------------------------------------------------------------------


@pytest.fixture
async def related(sandbox: Sandbox, http: httpx2.AsyncClient) -> dict[str, str]:
    """Alice's account, with her contact and Bob's (which Alice cannot read), Bob's contact as primary contact and
    Bob's opportunity for Alice's contact; and an account of Alice's with no contacts."""
    account = await create(sandbox, http, "accounts", {"name": "Lambda Test Co"}, user="alice")
    bind = {"parentcustomerid_account@odata.bind": f"/accounts({account})"}
    visible = await create(sandbox, http, "contacts", {"firstname": "Vera", "lastname": "Visible", **bind}, "alice")
    hidden = await create(sandbox, http, "contacts", {"firstname": "Hugo", "lastname": "Hidden", **bind}, "bob")
    response = await http.patch(
        f"{api(sandbox)}/accounts({account})",
        json={"primarycontactid@odata.bind": f"/contacts({hidden})"},
        headers=auth(sandbox, "alice"),
    )
    assert response.status_code == 204, response.text
    deal = {"name": "Hidden Deal", "customerid_contact@odata.bind": f"/contacts({visible})"}
    await create(sandbox, http, "opportunities", deal, user="bob")
    empty = await create(sandbox, http, "accounts", {"name": "Lambda Empty Co"}, user="alice")
    return {"account": account, "visible": visible, "hidden": hidden, "empty": empty}


@pytest.mark.parametrize(
    ("condition", "admin", "alice"),
    [
        ("contact_customer_accounts/any(c: c/fullname eq 'Hugo Hidden')", ["Lambda Test Co"], []),
        ("contact_customer_accounts/any(c: c/fullname eq 'Vera Visible')", ["Lambda Test Co"], ["Lambda Test Co"]),
        ("contact_customer_accounts/any()", ["Lambda Test Co"], ["Lambda Test Co"]),
        ("not contact_customer_accounts/any()", ["Lambda Empty Co"], ["Lambda Empty Co"]),
        (
            "contact_customer_accounts/all(c: c/lastname eq 'Visible')",
            ["Lambda Empty Co"],
            ["Lambda Empty Co", "Lambda Test Co"],
        ),
        ("contact_customer_accounts/all(c: startswith(c/fullname,'H'))", ["Lambda Empty Co"], ["Lambda Empty Co"]),
        ("primarycontactid/fullname eq 'Hugo Hidden'", ["Lambda Test Co"], []),
        ("primarycontactid/fullname eq null", ["Lambda Empty Co"], ["Lambda Empty Co", "Lambda Test Co"]),
        ("primarycontactid/fullname ne 'Hugo Hidden'", ["Lambda Empty Co"], ["Lambda Empty Co", "Lambda Test Co"]),
        ("primarycontactid/owninguser/fullname ne null", ["Lambda Test Co"], []),
        (
            "contact_customer_accounts/any(c: c/lastname eq 'Visible' and "
            "c/opportunity_customer_contacts/any(o: o/name eq 'Hidden Deal'))",
            ["Lambda Test Co"],
            [],
        ),
        (
            "contact_customer_accounts/all(c: c/opportunity_customer_contacts/all(o: o/name ne 'Hidden Deal'))",
            ["Lambda Empty Co"],
            ["Lambda Empty Co", "Lambda Test Co"],
        ),
    ],
)
async def test_related_rows_filter_only_through_what_the_caller_may_read(
    sandbox: Sandbox,
    http: httpx2.AsyncClient,
    related: dict[str, str],
    condition: str,
    admin: list[str],
    alice: list[str],
) -> None:
    query = f"accounts?$select=name&$filter=startswith(name,'Lambda ') and ({condition})"
    assert names(await get(sandbox, http, query)) == admin
    assert names(await get(sandbox, http, query, user="alice")) == alice


async def test_a_lookup_path_finds_the_rows_whose_related_row_matches(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    """`primarycontactid/fullname eq '...'` finds the accounts whose primary contact has that name."""
    expanded = await get(sandbox, http, "accounts?$select=name&$expand=primarycontactid($select=fullname)")
    rows = expanded.json()["value"]
    fullname = rows[0]["primarycontactid"]["fullname"]
    expected = sorted(row["name"] for row in rows if (row["primarycontactid"] or {}).get("fullname") == fullname)
    found = await get(sandbox, http, f"accounts?$select=name&$filter=primarycontactid/fullname eq '{fullname}'")
    assert names(found) == expected and expected


async def test_an_expanded_filter_can_use_a_lambda(
    sandbox: Sandbox, http: httpx2.AsyncClient, related: dict[str, str]
) -> None:
    row = (
        await get(
            sandbox,
            http,
            f"accounts({related['account']})?$select=name&$expand=contact_customer_accounts($select=fullname;"
            "$filter=parentcustomerid_account/name eq 'Lambda Test Co')",
            user="alice",
        )
    ).json()
    assert [contact["fullname"] for contact in row["contact_customer_accounts"]] == ["Vera Visible"]


# -- query functions, against rows dated by the sandbox's own clock ------------------------------------------------


@pytest.fixture
async def dated(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    """Leads created at known moments (the sandbox stamps createdon from its clock), then the clock set to NOW."""
    environment = sandbox.environments["contoso"]
    moments = {
        "Dated 1 hour ago": NOW - timedelta(hours=1),
        "Dated yesterday": NOW - timedelta(days=1),
        "Dated 3 days ago": NOW - timedelta(days=3),
        "Dated last week": NOW - timedelta(days=8),
        "Dated last month": NOW - timedelta(days=30),
        "Dated last year": NOW - timedelta(days=200),
        "Dated tomorrow": NOW + timedelta(days=1),
        "Dated next month": NOW + timedelta(days=25),
    }
    for subject, moment in moments.items():
        environment.clock = stopped_at(moment)
        await create(sandbox, http, "leads", {"subject": subject, "lastname": "Dated"}, user="alice")
    environment.clock = stopped_at(NOW)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("Today(PropertyName='createdon')", ["1 hour ago"]),
        ("Yesterday(PropertyName='createdon')", ["yesterday"]),
        ("Tomorrow(PropertyName='createdon')", ["tomorrow"]),
        ("LastXHours(PropertyName='createdon',PropertyValue=2)", ["1 hour ago"]),
        ("NextXHours(PropertyName='createdon',PropertyValue=48)", ["tomorrow"]),
        ("LastXDays(PropertyName='createdon',PropertyValue=3)", ["1 hour ago", "3 days ago", "yesterday"]),
        ("Last7Days(PropertyName='createdon')", ["1 hour ago", "3 days ago", "yesterday"]),
        ("NextXDays(PropertyName='createdon',PropertyValue=2)", ["tomorrow"]),
        ("OlderThanXDays(PropertyName='createdon',PropertyValue=7)", ["last month", "last week", "last year"]),
        ("ThisWeek(PropertyName='createdon')", ["1 hour ago", "3 days ago", "tomorrow", "yesterday"]),
        ("LastWeek(PropertyName='createdon')", ["last week"]),
        ("ThisMonth(PropertyName='createdon')", ["1 hour ago", "3 days ago", "last week", "tomorrow", "yesterday"]),
        ("LastMonth(PropertyName='createdon')", ["last month"]),
        ("NextMonth(PropertyName='createdon')", ["next month"]),
        (
            "ThisYear(PropertyName='createdon')",
            ["1 hour ago", "3 days ago", "last month", "last week", "next month", "tomorrow", "yesterday"],
        ),
        ("LastYear(PropertyName='createdon')", ["last year"]),
        ("On(PropertyName='createdon',PropertyValue='2024-05-14')", ["yesterday"]),
        ("OnOrAfter(PropertyName='createdon',PropertyValue='2024-05-15')", ["1 hour ago", "next month", "tomorrow"]),
        ("OnOrBefore(PropertyName='createdon',PropertyValue='2024-05-07')", ["last month", "last week", "last year"]),
        (
            'Between(PropertyName=\'createdon\',PropertyValues=["2024-05-01T00:00:00Z","2024-05-13T00:00:00Z"])',
            ["3 days ago", "last week"],
        ),
        (
            'NotBetween(PropertyName=\'createdon\',PropertyValues=["2024-05-01T00:00:00Z","2024-06-30T00:00:00Z"])',
            ["last month", "last year"],
        ),
    ],
)
async def test_date_functions_select_the_rows_of_their_period(
    sandbox: Sandbox, http: httpx2.AsyncClient, dated: None, function: str, expected: list[str]
) -> None:
    query = f"leads?$select=subject&$filter=lastname eq 'Dated' and Microsoft.Dynamics.CRM.{function}"
    response = await get(sandbox, http, query, user="alice")
    assert response.status_code == 200, response.text
    assert sorted(row["subject"].removeprefix("Dated ") for row in response.json()["value"]) == expected


async def test_user_and_business_unit_functions_mean_the_caller(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    who = (await get(sandbox, http, "WhoAmI")).json()
    mine = await get(sandbox, http, f"accounts?$select=name&$filter=_ownerid_value eq {who['UserId']}")
    assert names(
        await get(
            sandbox, http, "accounts?$select=name&$filter=Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')"
        )
    ) == names(mine)
    others = names(
        await get(
            sandbox, http, "accounts?$select=name&$filter=Microsoft.Dynamics.CRM.NotEqualUserId(PropertyName='ownerid')"
        )
    )
    assert len(others) + len(names(mine)) == 60
    reader = await get(
        sandbox,
        http,
        "accounts?$select=name&$filter=Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')",
        user="carol",
    )
    assert names(reader) == []  # carol reads every account and owns none
    business = await get(
        sandbox,
        http,
        "accounts?$select=name&$filter=Microsoft.Dynamics.CRM.EqualBusinessId(PropertyName='owningbusinessunit')",
    )
    assert len(names(business)) == 60


async def test_parameter_aliases_carry_function_parameters(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    query = (
        "accounts?$select=accountnumber&$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)"
        '&@p1=\'accountnumber\'&@p2=["A-1001","A-1002"]&$orderby=@p3 desc&@p3=accountnumber'
    )
    response = await get(sandbox, http, query)
    assert [row["accountnumber"] for row in response.json()["value"]] == ["A-1002", "A-1001"]


async def test_two_columns_of_a_row_compare(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    await create(sandbox, http, "contacts", {"firstname": "Morgan", "lastname": "Morgan"})
    response = await get(sandbox, http, "contacts?$select=fullname&$filter=firstname eq lastname")
    assert names(response) == ["Morgan Morgan"]


# -- counts, filtered collections and $expand ------------------------------------------------------------------------


async def test_count_segment_and_total_record_count_annotations(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    count = await get(sandbox, http, "accounts/$count")
    assert (count.status_code, count.text, count.headers["content-type"].split(";")[0]) == (200, "60", "text/plain")
    assert (await get(sandbox, http, "accounts/$count?$filter=accountnumber eq 'A-1001'")).text == "1"
    owned = (await get(sandbox, http, "accounts/$count", user="alice")).text
    assert 0 < int(owned) < 60
    annotations = 'odata.include-annotations="Microsoft.Dynamics.CRM.*"'
    counted = (await get(sandbox, http, "accounts?$select=name&$count=true", Prefer=annotations)).json()
    assert (counted["@odata.count"], counted["@Microsoft.Dynamics.CRM.totalrecordcount"]) == (60, 60)
    assert counted["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is False
    uncounted = (await get(sandbox, http, "accounts?$select=name", Prefer=annotations)).json()
    assert uncounted["@Microsoft.Dynamics.CRM.totalrecordcount"] == -1


async def test_an_expanded_collection_links_to_its_filtered_collection(
    sandbox: Sandbox, http: httpx2.AsyncClient, related: dict[str, str]
) -> None:
    account = related["account"]
    row = (await get(sandbox, http, f"accounts({account})?$expand=contact_customer_accounts($select=fullname)")).json()
    link = row["contact_customer_accounts@odata.nextLink"]
    assert link == f"{api(sandbox)}/accounts({account})/contact_customer_accounts?$select=fullname"
    followed = await http.get(link, headers=auth(sandbox))
    assert names(followed) == sorted(contact["fullname"] for contact in row["contact_customer_accounts"])
    assert names(followed) == ["Hugo Hidden", "Vera Visible"]
    assert names(await http.get(link, headers=auth(sandbox, "alice"))) == ["Vera Visible"]
    assert (
        await http.get(f"{api(sandbox)}/accounts({account})/contact_customer_accounts/$count", headers=auth(sandbox))
    ).text == "2"


async def test_an_expanded_lookup_takes_select_and_filter_only(
    sandbox: Sandbox, http: httpx2.AsyncClient, related: dict[str, str]
) -> None:
    account = related["account"]
    matching = f"accounts({account})?$expand=primarycontactid($select=fullname;$filter=lastname eq 'Hidden')"
    assert (await get(sandbox, http, matching)).json()["primarycontactid"]["fullname"] == "Hugo Hidden"
    other = f"accounts({account})?$expand=primarycontactid($select=fullname;$filter=lastname eq 'Other')"
    assert (await get(sandbox, http, other)).json()["primarycontactid"] is None
    status, code, message = error_of(await get(sandbox, http, f"accounts({account})?$expand=primarycontactid($top=1)"))
    assert (status, code) == (400, "0x80060888")
    assert message.startswith("Only $select and $filter clause can be provided while doing $expand")


# -- the service's error codes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code", "message"),
    [
        ("Account", 404, "0x8006088a", "Resource not found for the segment 'Account'."),
        ("accounts/nosuch", 404, "0x8006088a", "Resource not found for the segment 'nosuch'."),
        (
            "accounts?$select=Name",
            400,
            "0x0",
            "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
        ),
        (
            "contacts?$filter=lastname eq 'O'Bryan'",
            400,
            "0x80060888",
            "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''.",
        ),
        ("accounts?$filter=tolower(name) eq 'x'", 501, "0x8006088a", "The 'tolower' function isn't supported"),
        (
            "accounts?$filter=Microsoft.Dynamics.CRM.ThisFiscalYear(PropertyName='createdon')",
            501,
            "0x8006088a",
            "not emulated",
        ),
        (
            "accounts?$filter=Microsoft.Dynamics.CRM.Whenever(PropertyName='createdon')",
            400,
            "0x80060888",
            "An unknown function with name",
        ),
        ("accounts?$skip=5", 400, "0x80060888", "The query parameter '$skip' is not supported."),
    ],
)
async def test_errors_carry_the_services_codes(
    sandbox: Sandbox, http: httpx2.AsyncClient, path: str, status: int, code: str, message: str
) -> None:
    answered_status, answered_code, answered_message = error_of(await get(sandbox, http, path))
    assert (answered_status, answered_code) == (status, code)
    assert message in answered_message


async def test_a_missing_row_through_a_filtered_collection_is_not_found(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    status, code, _ = error_of(await get(sandbox, http, f"accounts({uuid.uuid4()})/contact_customer_accounts"))
    assert (status, code) == (404, "0x80040217")


async def test_a_money_column_brings_the_rows_currency(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    """As "Select columns using OData" shows: `_transactioncurrencyid_value` comes with `revenue` unasked."""
    body = (await get(sandbox, http, "accounts?$select=name,revenue&$top=1")).json()
    assert body["@odata.context"].endswith("$metadata#accounts(name,revenue)")
    assert set(body["value"][0]) == {"@odata.etag", "name", "revenue", "_transactioncurrencyid_value", "accountid"}
    plain = (await get(sandbox, http, "accounts?$select=name&$top=1")).json()["value"][0]
    assert set(plain) == {"@odata.etag", "name", "accountid"}
