"""A filter may name a lookup column by its logical name: the tool sends the `_<name>_value` the service wants."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from sandbox import Sandbox

from .support import server_for, structured


async def rows(client: Client, table: str, filter: str, **arguments: Any) -> list[dict[str, Any]]:
    result = structured(await client.call_tool("query_records", {"table": table, "filter": filter, **arguments}))
    return list(result["rows"])


async def test_a_lookup_compared_with_a_row_id_by_its_logical_name_finds_the_rows(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        account = (await rows(client, "account", "name eq 'City Power & Light'", select=["name"]))[0]
        by_name = await rows(client, "contact", f"parentcustomerid eq {account['accountid']}", select=["fullname"])
        by_property = await rows(
            client, "contact", f"_parentcustomerid_value eq {account['accountid']}", select=["fullname"]
        )
    assert by_name
    assert by_name == by_property


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("primarycontactid ne null", "_primarycontactid_value ne null"),
        ("primarycontactid eq null", "_primarycontactid_value eq null"),
        (
            "(primarycontactid ne null) and startswith(name,'C')",
            "(_primarycontactid_value ne null) and startswith(name,'C')",
        ),
    ],
)
async def test_a_lookup_compared_with_null_by_its_logical_name_works(sandbox: Sandbox, written: str, sent: str) -> None:
    async with Client(server_for(sandbox)) as client:
        found = await rows(client, "account", written, select=["name"])
        expected = await rows(client, "account", sent, select=["name"])
    assert found == expected


async def test_a_lookup_name_inside_a_string_literal_is_left_alone(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        structured(
            await client.call_tool(
                "create_record", {"table": "contact", "values": {"lastname": "parentcustomerid eq null"}}
            )
        )
        found = await rows(client, "contact", "lastname eq 'parentcustomerid eq null'", select=["lastname"])
    assert [row["lastname"] for row in found] == ["parentcustomerid eq null"]


async def test_pages_of_a_lookup_filter_follow_one_another(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        every = await rows(client, "contact", "parentcustomerid ne null", select=["fullname"], page_size=500)
        first = structured(
            await client.call_tool(
                "query_records",
                {"table": "contact", "filter": "parentcustomerid ne null", "select": ["fullname"], "page_size": 3},
            )
        )
        second = structured(await client.call_tool("query_records", {"cursor": first["cursor"]}))
    assert first["rows"] + second["rows"] == every[:6]
