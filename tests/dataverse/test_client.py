"""The Dataverse client against the sandbox over real HTTP: reads, writes, paging, retries and caching."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx2
import pytest

from dataverse import (
    DataverseClient,
    DuplicateRecord,
    Expand,
    FetchQuery,
    ODataQuery,
    StaticTokenProvider,
    UnknownTable,
    equals,
    list_instances,
)
from sandbox import Fault, Sandbox

from .support import RotatingTokens, instant_retries


def client(sandbox: Sandbox, http: httpx2.AsyncClient, user: str = "admin", **options: Any) -> DataverseClient:
    return DataverseClient(
        http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token(user)), **options
    )


async def all_rows(dataverse: DataverseClient, table: str, query: ODataQuery, **options: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async for page in dataverse.query(table, query, **options):
        rows += page.rows
    return rows


def metadata_requests(sandbox: Sandbox) -> int:
    return sum(1 for record in sandbox.request_log.records if "EntityDefinitions" in record.path)


async def test_whoami_and_table_resolution_by_any_name(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http, "alice")
    assert (await dataverse.whoami()).user_id == "b0000000-0000-4000-8000-000000000002"
    for name in ("account", "accounts", "Account", "ACCOUNTS"):
        assert (await dataverse.resolve_table(name)).logical_name == "account"
    assert (await dataverse.resolve_table("Case")).entity_set_name == "incidents"


async def test_an_unknown_table_names_the_closest_real_ones(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    with pytest.raises(UnknownTable) as raised:
        await client(sandbox, http).resolve_table("acounts")
    assert raised.value.closest[0] == "account"
    assert "Did you mean 'account'" in str(raised.value)


async def test_table_metadata_is_typed(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    account = await dataverse.table("account")
    assert len(account.columns) == 248
    assert account.columns["name"].max_length == 160
    assert account.columns["primarycontactid"].targets == ("contact",)
    assert account.columns["primarycontactid"].property_name == "_primarycontactid_value"
    assert account.keys[0].columns == ("accountnumber",)
    assert account.navigation_property("primarycontactid", "contact") == "primarycontactid"
    contact = await dataverse.table("Contact")
    assert contact.navigation_property("parentcustomerid", "account") == "parentcustomerid_account"
    choices = await dataverse.choices("account")
    assert {choice.label for choice in choices["statecode"]} == {"Active", "Inactive"}
    assert any(choice.label == "Accounting" for choice in choices["industrycode"])


async def test_concurrent_cold_metadata_lookups_share_one_request(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    results = []

    async def look_up() -> None:
        results.append(await dataverse.table("account"))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(look_up)
    assert metadata_requests(sandbox) == 1
    assert all(result is results[0] for result in results)


async def test_query_builds_select_filter_orderby_top_and_expand(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    query = ODataQuery(
        select=["name", "revenue"],
        filter="revenue gt 1000000",
        orderby=[("revenue", True)],
        top=5,
        expand=[Expand("primarycontactid", ["fullname"])],
        count=True,
    )
    rows = await all_rows(client(sandbox, http), "accounts", query)
    assert len(rows) == 5
    assert [row["revenue"] for row in rows] == sorted((row["revenue"] for row in rows), reverse=True)
    assert all("fullname" in row["primarycontactid"] for row in rows)
    assert "revenue@OData.Community.Display.V1.FormattedValue" in rows[0]


async def test_paging_follows_next_links_to_the_end(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    rows = await all_rows(client(sandbox, http), "contact", ODataQuery(select=["fullname"]), page_size=13)
    assert len(rows) == len({row["contactid"] for row in rows}) == 120


async def test_fetchxml_pages_through_the_paging_cookie(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    fetchxml = (
        "<fetch><entity name='contact'><attribute name='fullname'/>"
        "<link-entity name='account' from='accountid' to='parentcustomerid' alias='company'>"
        "<attribute name='name'/></link-entity><order attribute='fullname'/></entity></fetch>"
    )
    dataverse = client(sandbox, http)
    seen: list[str] = []
    pages = 0
    async for page in dataverse.query("contacts", FetchQuery.parse(fetchxml), page_size=25):
        seen += [row["contactid"] for row in page.rows]
        assert all("company.name" in row for row in page.rows)
        pages += 1
    assert pages == 5
    assert len(seen) == len(set(seen)) == 120


async def test_get_by_id_and_by_alternate_key(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http)
    by_key = await dataverse.get("account", {"accountnumber": "A-1017"}, select=["name"])
    assert by_key["name"] == "Margie's Travel"
    by_id = await dataverse.get("accounts", by_key["accountid"], select=["name"])
    assert by_id["name"] == "Margie's Travel"


async def test_create_update_upsert_and_delete(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http, "alice")
    created = await dataverse.create("account", {"name": "Write cycle"}, return_row=True, select=["name"])
    assert created.row is not None and created.row["name"] == "Write cycle"
    updated = await dataverse.update(
        "account", created.id, {"telephone1": "555"}, return_row=True, select=["telephone1"]
    )
    assert updated.row is not None and updated.row["telephone1"] == "555"
    upserted = await dataverse.upsert("account", {"accountnumber": "UP-1"}, {"name": "Upserted"})
    assert upserted.created
    again = await dataverse.upsert("account", {"accountnumber": "UP-1"}, {"name": "Upserted again"})
    assert not again.created
    assert again.id == upserted.id
    await dataverse.delete("account", created.id)
    assert not await all_rows(dataverse, "account", ODataQuery(filter=equals("name", "Write cycle")))


async def test_upsert_modes_refuse_what_they_must(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    from dataverse import NotFound

    dataverse = client(sandbox, http)
    with pytest.raises(NotFound):
        await dataverse.upsert("account", uuid.uuid4(), {"name": "Only update"}, mode="update_only")
    with pytest.raises(DuplicateRecord):
        await dataverse.upsert("account", {"accountnumber": "A-1001"}, {"name": "Only create"}, mode="create_only")
    assert (await dataverse.get("account", {"accountnumber": "A-1001"}, select=["name"]))["name"] == "Contoso Ltd"


async def test_throttled_paging_returns_every_row_exactly_once(sandbox_template: Any, tmp_path: Any) -> None:
    async with Sandbox(tmp_path / "large", extra_accounts=440) as large, httpx2.AsyncClient(timeout=10) as http:
        retry, sleep = instant_retries()
        dataverse = client(large, http, retry=retry)
        large.faults.add(Fault(status=429, retry_after=1, fraction=0.3, count=None))
        rows = await all_rows(dataverse, "account", ODataQuery(select=["name"]), page_size=20)
        assert len(rows) == len({row["accountid"] for row in rows}) == 500
        assert sleep.waits and set(sleep.waits) == {1.0}
        assert large.faults.injected == len(sleep.waits)


async def test_a_create_answered_503_after_commit_reports_success_once(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, sleep = instant_retries()
    dataverse = client(sandbox, http, retry=retry)
    sandbox.faults.add(Fault(kind="after", status=503, count=1, method="POST"))
    written = await dataverse.create("account", {"name": "Exactly once"}, return_row=True, select=["name"])
    assert written.row is not None and written.row["name"] == "Exactly once"
    assert len(sleep.waits) == 1
    rows = await all_rows(dataverse, "account", ODataQuery(filter=equals("name", "Exactly once")))
    assert [row["accountid"] for row in rows] == [written.id]


async def test_a_create_whose_connection_dropped_after_commit_is_not_duplicated(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    retry, _ = instant_retries()
    dataverse = client(sandbox, http, retry=retry)
    sandbox.faults.add(Fault(kind="drop_after", count=1, method="POST"))
    written = await dataverse.create("account", {"name": "Dropped but landed"})
    rows = await all_rows(dataverse, "account", ODataQuery(filter=equals("name", "Dropped but landed")))
    assert [row["accountid"] for row in rows] == [written.id]


async def test_a_401_refreshes_the_token_once(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    tokens = RotatingTokens([sandbox.token("admin", lifetime=-60), sandbox.token("admin")])
    dataverse = DataverseClient(http, sandbox.environments["contoso"].url, tokens)
    assert (await dataverse.whoami()).user_id
    assert tokens.refreshes == 1


async def test_the_concurrency_cap_follows_the_dop_hint(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.environments["contoso"].dop_hint = 3
    dataverse = client(sandbox, http, max_concurrency=10)
    await dataverse.whoami()
    assert dataverse.transport.limiter.total_tokens == 3


async def test_discovery_lists_the_users_environments(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    instances = await list_instances(http, sandbox.discovery_url, StaticTokenProvider(sandbox.discovery_token("bob")))
    assert [instance.url for instance in instances] == [sandbox.environments["contoso"].url]
    assert instances[0].friendly_name == "Contoso Sales (production)"
