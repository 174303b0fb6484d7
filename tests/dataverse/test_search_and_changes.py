"""The client's search and change tracking against the sandbox over HTTP: requests it builds, answers it reads,
and the service's refusals as their own error classes."""

from __future__ import annotations

from datetime import timedelta

import httpx2
import pytest

from dataverse import (
    ChangeTokenExpired,
    ChangeTrackingOff,
    DataverseClient,
    DataverseError,
    SearchDisabled,
    StaticTokenProvider,
)
from sandbox import Sandbox


def client(
    sandbox: Sandbox, http: httpx2.AsyncClient, environment: str = "contoso", **options: bool
) -> DataverseClient:
    url = sandbox.environments[environment].url
    return DataverseClient(http, url, StaticTokenProvider(sandbox.token("admin", environment)), **options)


async def test_search_reads_the_json_inside_the_response_string(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    found = await client(sandbox, http).search("Fabrikam", tables=["account"], top=3, count=True)
    assert found.hits and all(hit.table == "account" for hit in found.hits)
    assert found.count is not None and found.count >= len(found.hits)
    assert all("{crmhit}" in " ".join(texts) for hit in found.hits for texts in hit.highlights.values())
    sent = [record for record in sandbox.request_log.records if record.path.endswith("/api/search/v2.0/query")]
    assert [record.method for record in sent] == ["POST"]


async def test_the_index_status_names_the_searchable_tables(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    indexed = {table.name: table for table in await client(sandbox, http).indexed_tables()}
    assert {"account", "contact", "lead"} <= set(indexed)
    assert indexed["account"].primary_name == "name" and "name" in indexed["account"].columns


async def test_search_turned_off_is_its_own_error(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    dataverse = client(sandbox, http, "fabrikam")
    with pytest.raises(SearchDisabled) as query:
        await dataverse.search("Fabrikam")
    with pytest.raises(SearchDisabled) as status:
        await dataverse.indexed_tables()
    assert "0x80048d0b" in str(query.value) and "admin center" in str(query.value)
    assert "notprovisioned" in str(status.value)


async def test_read_only_clients_still_search(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    found = await client(sandbox, http, read_only=True).search("Fabrikam")
    assert found.hits


@pytest.mark.parametrize(("text", "problem"), [("", "Give some text"), ("x" * 101, "up to 100")])
async def test_bad_search_text_is_refused_before_sending(
    sandbox: Sandbox, http: httpx2.AsyncClient, text: str, problem: str
) -> None:
    with pytest.raises(DataverseError, match=problem):
        await client(sandbox, http).search(text)
    assert not [record for record in sandbox.request_log.records if "/api/search/" in record.path]


async def test_a_delta_token_reads_the_changes_since_and_only_its_tokens_are_kept(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    dataverse = client(sandbox, http)
    token, served = await dataverse.current_change_token("account")
    assert served is not None and "://" not in token
    created = await dataverse.create("account", {"name": "Delta One"})
    page = await dataverse.read_changes("account", ["name"], deltatoken=token)
    assert [(change.id, (change.row or {}).get("name")) for change in page.changes] == [(created.id, "Delta One")]
    assert page.next is None and page.deltatoken and page.deltatoken != token
    tracked = [record for record in sandbox.request_log.records if "$deltatoken" in record.query]
    assert tracked and all(record.method == "GET" for record in tracked)


async def test_an_untracked_table_and_an_expired_token_are_their_own_errors(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    dataverse = client(sandbox, http)
    with pytest.raises(ChangeTrackingOff) as untracked:
        await dataverse.current_change_token("cr8a1_project")
    token, _ = await dataverse.current_change_token("account")
    environment = sandbox.environments["contoso"]
    later = environment.clock() + timedelta(days=8)
    environment.clock = lambda: later
    with pytest.raises(ChangeTokenExpired) as expired:
        await dataverse.read_changes("account", [], deltatoken=token)
    assert "0x80072491" in str(untracked.value) and "Track changes" in str(untracked.value)
    assert "0x80044352" in str(expired.value) and "new token" in str(expired.value)


def serving_accounts(rows: dict[str, object]) -> httpx2.MockTransport:
    """A stand-in endpoint with one table, answering every read of it with `rows`: what the sandbox never sends."""

    async def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/EntityDefinitions"):
            table = {"LogicalName": "account", "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid"}
            return httpx2.Response(200, json={"value": [table]})
        return httpx2.Response(200, json=rows)

    return httpx2.MockTransport(answer)


async def test_a_delta_link_to_another_host_is_not_followed() -> None:
    """The service's links are read for their tokens only, and only when they are this environment's."""
    link = "https://attacker.example/api/data/v9.2/accounts?$deltatoken=1"
    async with httpx2.AsyncClient(transport=serving_accounts({"value": [], "@odata.deltaLink": link})) as http:
        dataverse = DataverseClient(http, "https://contoso.crm.dynamics.com", StaticTokenProvider("t"))
        with pytest.raises(DataverseError, match="outside this environment"):
            await dataverse.current_change_token("account")


async def test_a_service_that_ignores_the_preference_is_taken_as_not_tracking() -> None:
    """Not every conformant endpoint refuses: one that answers a plain read has no delta link to give."""
    rows = {"value": [{"accountid": "00000000-0000-0000-0000-000000000001"}]}
    async with httpx2.AsyncClient(transport=serving_accounts(rows)) as http:
        dataverse = DataverseClient(http, "https://contoso.crm.dynamics.com", StaticTokenProvider("t"))
        with pytest.raises(ChangeTrackingOff, match="no delta link"):
            await dataverse.current_change_token("account")
