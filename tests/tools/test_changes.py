"""list_changes through the real MCP client: a change feed from tokens, dates where tables are not tracked, and
tokens that cannot be forged, moved or outlive the service's changes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Sandbox
from server import build_server, load_settings

from .support import error_text, server_for, structured

TRACKED = "contact"
UNTRACKED = "cr8a1_project"  # a custom table whose change tracking was never turned on


def api(sandbox: Sandbox) -> str:
    return f"{sandbox.environments['contoso'].url}/api/data/v9.2"


def headers(sandbox: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.token()}", "Accept": "application/json"}


async def ids(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, primary_id: str, count: int) -> list[str]:
    url = f"{api(sandbox)}/{entity_set}?$select={primary_id}&$top={count}"
    response = await http.get(url, headers=headers(sandbox))
    assert response.status_code == 200, response.text
    return [row[primary_id] for row in response.json()["value"]]


async def create(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, values: dict[str, Any]) -> str:
    response = await http.post(f"{api(sandbox)}/{entity_set}", json=values, headers=headers(sandbox))
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


async def update(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, row: str, values: dict[str, Any]) -> None:
    response = await http.patch(
        f"{api(sandbox)}/{entity_set}({row})", json=values, headers={**headers(sandbox), "If-Match": "*"}
    )
    assert response.status_code == 204, response.text


async def delete(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, row: str) -> None:
    response = await http.delete(f"{api(sandbox)}/{entity_set}({row})", headers=headers(sandbox))
    assert response.status_code == 204, response.text


async def all_changes(client: Client, table: str, since: str, **arguments: Any) -> tuple[list[dict[str, Any]], str]:
    """Every change since the token, page by page, and the token for next time."""
    result = structured(await client.call_tool("list_changes", {"table": table, "since": since, **arguments}))
    changes = list(result["changes"])
    while "cursor" in result:
        assert "token" not in result
        result = structured(await client.call_tool("list_changes", {"table": table, "cursor": result["cursor"]}))
        changes += result["changes"]
    return changes, result["token"]


async def test_a_change_feed_reports_creates_updates_and_deletes_since_a_token_across_pages(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    updated, deleted = await ids(sandbox, http, "contacts", "contactid", 2)
    async with Client(server_for(sandbox)) as client:
        now = structured(await client.call_tool("list_changes", {"table": TRACKED}))
        assert now["changes"] == [] and len(now["token"]) < 200
        created = [
            await create(sandbox, http, "contacts", {"firstname": "Feed", "lastname": f"Row {number}"})
            for number in range(3)
        ]
        await update(sandbox, http, "contacts", updated, {"jobtitle": "Chief Listener"})
        await delete(sandbox, http, "contacts", deleted)
        changes, token = await all_changes(client, TRACKED, now["token"], select=["fullname", "jobtitle"], page_size=2)
        again, _ = await all_changes(client, TRACKED, token)
    kinds = {change["id"]: change["change"] for change in changes}
    assert kinds == {**dict.fromkeys(created, "created"), updated: "updated", deleted: "deleted"}
    by_id = {change["id"]: change for change in changes}
    assert by_id[updated]["jobtitle"] == "Chief Listener"
    assert by_id[created[0]]["fullname"] == "Feed Row 0"
    assert set(by_id[deleted]) == {"change", "id"}
    assert changes[-1]["change"] == "deleted"  # the service lists deletions after the rest
    assert again == []  # the new token starts after these changes


async def test_a_table_without_change_tracking_falls_back_to_dates_and_says_deletions_are_not_seen(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    (gone,) = await ids(sandbox, http, "cr8a1_projects", "cr8a1_projectid", 1)
    async with Client(server_for(sandbox)) as client:
        now = structured(await client.call_tool("list_changes", {"table": UNTRACKED}))
        made = await create(sandbox, http, "cr8a1_projects", {"cr8a1_name": "Dated", "cr8a1_code": "PRJ-DATED"})
        await delete(sandbox, http, "cr8a1_projects", gone)
        result = structured(
            await client.call_tool("list_changes", {"table": UNTRACKED, "since": now["token"], "select": "cr8a1_name"})
        )
    assert {"change": "created", "id": made, "cr8a1_name": "Dated"} in result["changes"]
    assert gone not in {change["id"] for change in result["changes"]}
    assert "deleted rows are not seen" in result["note"]
    assert result["token"]


async def test_since_a_date_time_reads_by_date_then_hands_over_to_change_tracking(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    (gone,) = await ids(sandbox, http, "contacts", "contactid", 1)
    async with Client(server_for(sandbox)) as client:
        dated = structured(
            await client.call_tool(
                "list_changes", {"table": TRACKED, "since": "2000-01-01T00:00:00Z", "select": ["fullname"]}
            )
        )
        assert "deleted rows are not seen" in dated["note"] and dated["changes"]
        while "cursor" in dated:
            dated = structured(await client.call_tool("list_changes", {"table": TRACKED, "cursor": dated["cursor"]}))
        await delete(sandbox, http, "contacts", gone)
        changes, _ = await all_changes(client, TRACKED, dated["token"])
    assert {"change": "deleted", "id": gone} in changes


async def test_a_token_edited_moved_or_taken_for_a_cursor_is_refused(sandbox: Sandbox) -> None:
    # Replayed by another signed-in user: tests/server/test_http.py (over stdio one identity serves the process).
    async with Client(server_for(sandbox)) as client:
        token = structured(await client.call_tool("list_changes", {"table": TRACKED}))["token"]
        edited = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        tampered = error_text(await client.call_tool("list_changes", {"table": TRACKED, "since": edited}))
        moved = error_text(await client.call_tool("list_changes", {"table": "account", "since": token}))
        garbage = error_text(await client.call_tool("list_changes", {"table": TRACKED, "since": "yesterday"}))
        as_cursor = error_text(await client.call_tool("list_changes", {"table": TRACKED, "cursor": token}))
    assert "not valid" in tampered and "not valid" in garbage and "not valid" in as_cursor
    assert "is for contact, not account" in moved


@pytest.mark.parametrize(
    "since",
    ["", "AQ", "A" * 10_000, "Zm9vYmFy", "2026-13-45T99:00:00Z", '{"e":"contoso","t":"contact"}', "Ωmega", "."],
)
async def test_anything_else_as_since_is_refused_cleanly(sandbox: Sandbox, since: str) -> None:
    async with Client(server_for(sandbox)) as client:
        refused = error_text(await client.call_tool("list_changes", {"table": TRACKED, "since": since}))
    # JSON-looking text is parsed by the SDK before the tool sees it: then it is no string at all.
    assert ("not valid" in refused or "since must be a string" in refused) and len(refused) < 300


async def test_a_token_older_than_the_service_keeps_changes_is_refused_with_what_to_do(sandbox: Sandbox) -> None:
    environment = sandbox.environments["contoso"]
    async with Client(server_for(sandbox)) as client:
        token = structured(await client.call_tool("list_changes", {"table": TRACKED}))["token"]
        later = environment.clock() + timedelta(days=30)
        environment.clock = lambda: later
        expired = error_text(await client.call_tool("list_changes", {"table": TRACKED, "since": token}))
    assert "0x80044352" in expired and "new token" in expired


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_denied_table_has_no_change_feed(sandbox: Sandbox, read_only: bool) -> None:
    async with Client(server_for(sandbox, denied_tables="contact", read_only=read_only)) as client:
        refused = error_text(await client.call_tool("list_changes", {"table": TRACKED}))
        allowed = structured(await client.call_tool("list_changes", {"table": "account"}))
    assert "not available through this server" in refused and allowed["token"]


async def test_a_user_without_organization_wide_read_access_follows_changes_by_date(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    # Microsoft's page: change tracking needs organization-level read access to the table; alice sees her own rows.
    async with Client(server_for(sandbox, user="alice")) as client:
        now = structured(await client.call_tool("list_changes", {"table": TRACKED}))
        made = structured(await client.call_tool("create_record", {"table": TRACKED, "values": {"lastname": "Dated"}}))
        changes, _ = await all_changes(client, TRACKED, now["token"], select=["lastname"])
    assert "needs read access to all its rows" in now["note"]
    assert {"change": "created", "id": made["id"], "lastname": "Dated"} in changes


async def test_changed_rows_name_no_row_of_a_denied_table(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    (updated,) = await ids(sandbox, http, "contacts", "contactid", 1)
    async with Client(server_for(sandbox, denied_tables="account")) as client:
        now = structured(await client.call_tool("list_changes", {"table": TRACKED}))
        await update(sandbox, http, "contacts", updated, {"jobtitle": "Buyer"})
        changes, _ = await all_changes(client, TRACKED, now["token"], select=["parentcustomerid"])
    (change,) = changes
    assert change["parentcustomerid"]["table"] == "account" and "name" not in change["parentcustomerid"]


async def test_pages_cut_by_size_lose_and_repeat_nothing(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    every = set(await ids(sandbox, http, "contacts", "contactid", 5000))
    async with Client(server_for(sandbox)) as client:
        # All columns of every contact: far more than one result's 60,000 bytes, so pages end early.
        first = structured(
            await client.call_tool("list_changes", {"table": TRACKED, "since": "2000-01-01", "page_size": 500})
        )
        pages = [first["changes"]]
        result = first
        while "cursor" in result:
            result = structured(await client.call_tool("list_changes", {"table": TRACKED, "cursor": result["cursor"]}))
            pages.append(result["changes"])
    seen = [change["id"] for page in pages for change in page]
    assert len(pages) > 1 and len(pages[0]) < 500
    assert sorted(seen) == sorted(every)


async def test_a_token_opens_after_the_server_restarts_but_not_for_another_data_directory(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with Client(server_for(sandbox)) as client:
        token = structured(await client.call_tool("list_changes", {"table": TRACKED}))["token"]
    async with Client(server_for(sandbox)) as restarted:  # a new process of the same user: same data directory
        kept = structured(await restarted.call_tool("list_changes", {"table": TRACKED, "since": token}))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "elsewhere"))
    async with Client(server_for(sandbox)) as stranger:
        refused = error_text(await stranger.call_tool("list_changes", {"table": TRACKED, "since": token}))
    assert kept["changes"] == [] and kept["token"]
    assert "not valid" in refused


async def test_a_token_stays_short_and_whole_whatever_the_environment_is_called(sandbox: Sandbox) -> None:
    long_name = "Contoso Sales, production environment for Western Europe (primary tenant)"
    environments = [
        {"name": name, "url": sandbox.environments[site].url, "access_token": sandbox.token("admin", site)}
        for name, site in ((long_name, "contoso"), ("fabrikam", "fabrikam"))
    ]
    settings = load_settings(None, environments=environments)
    async with Client(build_server(settings)) as client:
        token = structured(await client.call_tool("list_changes", {"table": TRACKED, "environment": long_name}))[
            "token"
        ]
        elsewhere = error_text(
            await client.call_tool("list_changes", {"table": TRACKED, "environment": "fabrikam", "since": token})
        )
    async with Client(build_server(settings)) as restarted:  # whole in itself: nothing kept in the first process
        kept = structured(
            await restarted.call_tool("list_changes", {"table": TRACKED, "environment": long_name, "since": token})
        )
    assert len(token) < 200 and kept["token"]
    assert "another environment than fabrikam" in elsewhere
