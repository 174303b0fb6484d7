"""One exact query for a question about many rows: "how many open opportunities per owner?"."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Sandbox

from .support import error_text, server_for, structured


async def open_opportunities_per_owner(sandbox: Sandbox, http: httpx2.AsyncClient, user: str) -> Counter[str]:
    """Counted here from every row the user can read, independently of any aggregate."""
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/opportunities",
        params={"$select": "_ownerid_value", "$filter": "statecode eq 0"},
        headers={"Authorization": f"Bearer {sandbox.token(user)}"},
    )
    return Counter(row["_ownerid_value"] for row in response.json()["value"])


FETCH = (
    "<fetch aggregate='true'><entity name='opportunity'>"
    "<attribute name='ownerid' groupby='true' alias='owner'/>"
    "<attribute name='opportunityid' aggregate='count' alias='n'/>"
    "<filter><condition attribute='statecode' operator='eq' value='0'/></filter></entity></fetch>"
)


@pytest.mark.parametrize("user", ["admin", "alice"])
@pytest.mark.parametrize(
    "arguments",
    [
        {"table": "opportunity", "apply": "filter(statecode eq 0)/groupby((ownerid),aggregate($count as n))"},
        {"fetchxml": FETCH},
    ],
)
async def test_open_opportunities_per_owner_in_one_query(
    sandbox: Sandbox, http: httpx2.AsyncClient, user: str, arguments: dict[str, Any]
) -> None:
    expected = await open_opportunities_per_owner(sandbox, http, user)
    sandbox.request_log.records.clear()
    async with Client(server_for(sandbox, user)) as client:
        rows = structured(await client.call_tool("query_records", arguments))["rows"]
    owners = {(row.get("owner") or row.get("ownerid"))["id"]: row["n"] for row in rows}
    assert owners == dict(expected)
    assert len([record for record in sandbox.request_log.records if "opportunities" in record.path]) == 1


async def test_apply_is_checked_against_the_policy_and_comes_alone(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox, denied_tables="contact")) as client:
        denied = error_text(
            await client.call_tool(
                "query_records",
                {"table": "account", "apply": "groupby((primarycontactid/fullname),aggregate($count as n))"},
            )
        )
        mixed = error_text(
            await client.call_tool(
                "query_records", {"table": "account", "apply": "aggregate($count as n)", "select": ["name"]}
            )
        )
    assert "'contact' is not available" in denied
    assert "apply aggregates on its own, but select came with it" in mixed
