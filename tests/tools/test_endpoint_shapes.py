"""search_records and list_changes read the service's own shapes: run against the sandbox, and against a
Dataverse-conformant endpoint when DATAVERSE_URL and DATAVERSE_ACCESS_TOKEN are set for the test run. They only
read, so they are safe on a real environment: a change feed of `account` from a token, and from a date-time, and
a search that either finds rows or says search is off and how to turn it on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from sandbox import Sandbox

from .support import ENDPOINTS, endpoint_server, structured, text

KINDS = {"created", "updated", "deleted"}


@pytest.fixture(params=ENDPOINTS)
async def server(request: pytest.FixtureRequest, sandbox: Sandbox) -> AsyncIterator[MCPServer[Any]]:
    yield endpoint_server(request.param, sandbox)


async def test_a_change_feed_from_a_token_and_from_a_date_time(server: MCPServer[Any]) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with Client(server) as client:
        now = structured(await client.call_tool("list_changes", {"table": "account"}))
        since_token = structured(
            await client.call_tool("list_changes", {"table": "account", "since": now["token"], "select": ["name"]})
        )
        since_date = structured(
            await client.call_tool(
                "list_changes", {"table": "account", "since": yesterday, "select": ["name"], "page_size": 5}
            )
        )
    assert now["changes"] == [] and 0 < len(now["token"]) < 200
    for result in (since_token, since_date):
        assert ("token" in result) != ("cursor" in result)
        assert all(change["change"] in KINDS and change["id"] for change in result["changes"])
    assert "deleted rows are not seen" in since_date["note"]


async def test_a_search_finds_rows_or_says_search_is_off(server: MCPServer[Any]) -> None:
    async with Client(server) as client:
        result = await client.call_tool("search_records", {"search": "a*", "top": 5})
    if result.is_error:
        assert "Power Platform admin center" in text(result)
        return
    hits = structured(result)["hits"]
    assert len(hits) <= 5
    assert all(hit["table"] and hit["id"] for hit in hits)
