"""`top` is the total number of rows, with or without `page_size`, in OData and FetchXML alike.

"Don't use `$top` with the `Prefer: odata.maxpagesize` request header. If you include both, `$top` is ignored"
(Page results using OData): the client never sends both and stops after `top` rows itself. These tests run
against the sandbox, and also against a Dataverse-conformant endpoint when DATAVERSE_URL and
DATAVERSE_ACCESS_TOKEN are set for the test run (its `account` table needs at least 13 rows).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from sandbox import Sandbox

from .support import ENDPOINTS, endpoint_server, structured


@pytest.fixture(params=ENDPOINTS)
async def server(request: pytest.FixtureRequest, sandbox: Sandbox) -> AsyncIterator[MCPServer[Any]]:
    yield endpoint_server(request.param, sandbox)


async def pages(client: Client, arguments: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every page of a query, following its cursor to the end."""
    result = structured(await client.call_tool("query_records", arguments))
    found = [result["rows"]]
    while result.get("cursor"):
        result = structured(await client.call_tool("query_records", {"cursor": result["cursor"]}))
        found.append(result["rows"])
    return found


FETCH_TOP = "<fetch top='12'><entity name='account'><attribute name='name'/><order attribute='name'/></entity></fetch>"
FETCH_ALL = "<fetch><entity name='account'><attribute name='name'/><order attribute='name'/></entity></fetch>"


@pytest.mark.parametrize(
    ("arguments", "sizes"),
    [
        ({"table": "account", "select": ["name"], "top": 7}, [7]),
        ({"table": "account", "select": ["name"], "top": 12, "page_size": 5}, [5, 5, 2]),
        ({"table": "account", "select": ["name"], "top": 10, "page_size": 5}, [5, 5]),
        ({"table": "account", "select": ["name"], "top": 3, "page_size": 50}, [3]),
        ({"fetchxml": FETCH_TOP}, [12]),
        ({"fetchxml": FETCH_TOP, "page_size": 5}, [5, 5, 2]),
    ],
)
async def test_top_returns_exactly_top_rows_each_once(
    server: MCPServer[Any], arguments: dict[str, Any], sizes: list[int]
) -> None:
    async with Client(server) as client:
        found = await pages(client, arguments)
    assert [len(page) for page in found] == sizes
    ids = [row["accountid"] for page in found for row in page]
    assert len(ids) == len(set(ids))


async def test_paging_without_top_returns_every_row_once(server: MCPServer[Any]) -> None:
    async with Client(server) as client:
        odata = await pages(client, {"table": "account", "select": ["name"], "page_size": 7, "count": True})
        fetched = await pages(client, {"fetchxml": FETCH_ALL, "page_size": 7})
        total = structured(await client.call_tool("query_records", {"table": "account", "count": True, "top": 1}))
    for found in (odata, fetched):
        ids = [row["accountid"] for page in found for row in page]
        assert len(ids) == len(set(ids)) == total["count"]
