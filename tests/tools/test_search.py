"""search_records through the real MCP client: relevance across tables, search turned off, and the table policy."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import httpx2
import pytest
from mcp import Client

from sandbox import Sandbox
from server import build_server, load_settings

from .support import error_text, server_for, structured

WORD = "Quillfeather"  # in no seeded row


def api(sandbox: Sandbox, environment: str = "contoso") -> str:
    return f"{sandbox.environments[environment].url}/api/data/v9.2"


async def create(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, values: dict[str, Any], environment: str = "contoso"
) -> str:
    response = await http.post(
        f"{api(sandbox, environment)}/{entity_set}",
        json=values,
        headers={"Authorization": f"Bearer {sandbox.token('admin', environment)}"},
    )
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


async def rows_named_after_the_word(sandbox: Sandbox, http: httpx2.AsyncClient) -> dict[str, str]:
    return {
        "account": await create(sandbox, http, "accounts", {"name": f"{WORD} Holdings"}),
        "contact": await create(sandbox, http, "contacts", {"firstname": "Ada", "lastname": WORD}),
        "lead": await create(sandbox, http, "leads", {"subject": "Demo", "lastname": "Ng", "companyname": WORD}),
    }


def search_requests(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [record for record in sandbox.request_log.as_json() if "/api/search/" in record["path"]]


async def test_one_search_finds_accounts_contacts_and_leads_with_their_matches_highlighted(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    made = await rows_named_after_the_word(sandbox, http)
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("search_records", {"search": WORD}))
    hits = {hit["table"]: hit for hit in result["hits"]}
    assert {table: hit["id"] for table, hit in hits.items()} == made
    assert hits["account"]["name"] == f"{WORD} Holdings"
    assert hits["contact"]["name"] == f"Ada {WORD}"
    assert all(f"**{WORD}**" in " ".join(hit["highlights"].values()) for hit in hits.values())
    scores = [hit["score"] for hit in result["hits"]]
    assert scores == sorted(scores, reverse=True) and "note" not in result


async def test_named_tables_limit_the_search(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    made = await rows_named_after_the_word(sandbox, http)
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("search_records", {"search": WORD, "tables": ["Contacts"]}))
    assert [(hit["table"], hit["id"]) for hit in result["hits"]] == [("contact", made["contact"])]


async def test_a_denied_table_is_neither_searched_nor_returned(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    made = await rows_named_after_the_word(sandbox, http)
    async with Client(server_for(sandbox, denied_tables="lead")) as client:
        result = structured(await client.call_tool("search_records", {"search": WORD}))
        refused = error_text(await client.call_tool("search_records", {"search": WORD, "tables": ["lead"]}))
    assert {hit["table"] for hit in result["hits"]} == {"account", "contact"}
    assert made["lead"] not in {hit["id"] for hit in result["hits"]}
    assert "not available through this server" in refused
    (query,) = [record for record in search_requests(sandbox) if record["path"].endswith("/query")]
    assert query["method"] == "POST"


async def test_the_search_names_only_allowed_tables_when_the_policy_refuses_one(sandbox: Sandbox) -> None:
    sent: list[dict[str, Any]] = []
    send = httpx2.AsyncClient.send

    async def spying(client: httpx2.AsyncClient, request: httpx2.Request, **options: Any) -> httpx2.Response:
        if request.url.path.endswith("/api/search/v2.0/query"):
            sent.append(json.loads(request.content))
        return await send(client, request, **options)

    # A spy on what really leaves the process: the request still goes to the sandbox as it was.
    with mock.patch.object(httpx2.AsyncClient, "send", spying):
        async with Client(server_for(sandbox, denied_tables="lead")) as client:
            structured(await client.call_tool("search_records", {"search": WORD}))
    (body,) = sent
    named = {entity["name"] for entity in json.loads(body["entities"])}
    assert "lead" not in named and {"account", "contact"} <= named


async def test_search_turned_off_says_how_to_turn_it_on_and_falls_back_for_named_tables(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    made = await create(sandbox, http, "accounts", {"name": f"{WORD} Labs"}, environment="fabrikam")
    async with Client(build_server(_settings(sandbox, environment="fabrikam"))) as client:
        refused = error_text(await client.call_tool("search_records", {"search": WORD}))
        fallback = structured(await client.call_tool("search_records", {"search": WORD, "tables": ["account"]}))
    assert "0x80048d0b" in refused and "Power Platform admin center" in refused and "name tables" in refused
    assert fallback["hits"] == [{"table": "account", "id": made, "name": f"{WORD} Labs"}]
    assert "search is off" in fallback["note"] and "primary name" in fallback["note"]


async def test_bad_search_arguments_get_one_clear_sentence(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        long = error_text(await client.call_tool("search_records", {"search": "x" * 101}))
        top = error_text(await client.call_tool("search_records", {"search": WORD, "top": 0}))
        unknown = error_text(await client.call_tool("search_records", {"search": WORD, "tables": ["acount"]}))
    assert "100" in long and "top" in top and "account" in unknown
    assert not search_requests(sandbox)


def _settings(sandbox: Sandbox, environment: str = "contoso", **overrides: Any) -> Any:
    url = sandbox.environments[environment].url
    token = sandbox.token("admin", environment)
    return load_settings(None, environments=[{"name": environment, "url": url, "access_token": token}], **overrides)


async def test_search_turned_off_is_reported_the_same_when_the_policy_names_the_tables(sandbox: Sandbox) -> None:
    # With a deny list the tool first reads the index's status, which answers "notprovisioned" rather than refusing.
    settings = _settings(sandbox, environment="fabrikam", denied_tables="lead")
    async with Client(build_server(settings)) as client:
        refused = error_text(await client.call_tool("search_records", {"search": WORD}))
    assert "notprovisioned" in refused and "Power Platform admin center" in refused


async def test_search_runs_in_read_only_mode(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    made = await rows_named_after_the_word(sandbox, http)
    async with Client(server_for(sandbox, read_only=True)) as client:
        result = structured(await client.call_tool("search_records", {"search": WORD, "tables": ["account"]}))
    assert [hit["id"] for hit in result["hits"]] == [made["account"]]


async def test_a_search_filter_through_a_relationship_is_refused_before_sending(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, denied_tables="contact")) as client:
        for text in ("primarycontactid/fullname eq 'x'", "contact_customer_accounts/any(c: c/fullname eq 'x')"):
            refused = error_text(await client.call_tool("search_records", {"search": WORD, "filter": text}))
            assert "goes through a relationship" in refused
        kept = structured(await client.call_tool("search_records", {"search": "Fabrikam", "filter": "statecode eq 0"}))
    assert kept["hits"]
    assert len([record for record in search_requests(sandbox) if record["path"].endswith("/query")]) == 1


async def test_a_match_in_a_lookup_to_a_denied_table_is_neither_shown_nor_counted(sandbox: Sandbox) -> None:
    """A lookup is searched by the name of the row it points to: that row's table's data."""
    async with Client(server_for(sandbox)) as client:
        open_hits = structured(await client.call_tool("search_records", {"search": "Campbell", "top": 50}))["hits"]
    through_contacts = {
        hit["id"] for hit in open_hits if hit["table"] == "account" and set(hit["highlights"]) == {"primarycontactid"}
    }
    assert through_contacts  # accounts found by their primary contact's name alone
    async with Client(server_for(sandbox, denied_tables="contact")) as client:
        hits = structured(await client.call_tool("search_records", {"search": "Campbell", "top": 50}))["hits"]
    assert not through_contacts & {hit["id"] for hit in hits}
    assert all("primarycontactid" not in hit.get("highlights", {}) for hit in hits)
    assert all(hit["table"] != "contact" for hit in hits)


@pytest.mark.parametrize("tables", [["Leads"], ["LEAD"], ["Lead"], ["account", "leads"]])
async def test_a_denied_table_under_any_of_its_names_is_refused_before_sending(
    sandbox: Sandbox, tables: list[str]
) -> None:
    async with Client(server_for(sandbox, denied_tables="lead")) as client:
        refused = error_text(await client.call_tool("search_records", {"search": WORD, "tables": tables}))
    assert "'lead' is not available through this server" in refused
    assert not [record for record in search_requests(sandbox) if record["path"].endswith("/query")]
