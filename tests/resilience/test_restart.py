"""The service goes away mid-query and comes back: while down, calls fail clearly; after, the cursor goes on."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp import Client

from sandbox import Sandbox

from ..tools.support import structured
from .support import faulty_server, instant_retries, named, user_message


async def test_a_query_resumes_after_the_service_restarts_and_nothing_is_written_while_down(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    url = sandbox.environments["contoso"].url
    retry, _ = instant_retries()
    seen: list[str] = []
    async with Client(faulty_server(sandbox, retry)) as client:
        arguments: dict[str, Any] = {"table": "contact", "select": ["fullname"], "orderby": "fullname", "page_size": 45}
        first = structured(await client.call_tool("query_records", arguments))
        seen += [row["contactid"] for row in first["rows"]]
        structured(await client.call_tool("describe_table", {"table": "account"}))  # the create below needs no read

        await sandbox.stop()
        down = await client.call_tool("query_records", {"cursor": first["cursor"]})
        user_message(down, f"Could not connect to the Dataverse environment at {url}: it is unreachable.")
        refused = await client.call_tool("create_record", {"table": "account", "values": {"name": "Written in outage"}})
        user_message(refused, "unreachable", "Nothing was written.")

        await sandbox.start()
        assert sandbox.environments["contoso"].url == url  # same ports, same data
        cursor = first["cursor"]
        while cursor:
            page = structured(await client.call_tool("query_records", {"cursor": cursor}))
            seen += [row["contactid"] for row in page["rows"]]
            cursor = page.get("cursor")
    assert len(seen) == len(set(seen)) == 120
    assert await named(sandbox, http, "Written in outage") == []
