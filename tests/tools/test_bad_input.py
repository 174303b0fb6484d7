"""Bad tool arguments get a clear error and change nothing: malformed values, unknown names, injection."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client

from sandbox import Sandbox

from .support import error_text, server_for, structured

ACCOUNT_FILTER = "accountnumber eq 'A-1001'"


async def snapshot(sandbox: Sandbox, http: httpx2.AsyncClient) -> list[dict[str, Any]]:
    """Every account and lead as stored, to prove a refused call changed nothing."""
    rows = []
    for entity_set in ("accounts", "leads"):
        response = await http.get(
            f"{sandbox.environments['contoso'].url}/api/data/v9.2/{entity_set}",
            headers={"Authorization": f"Bearer {sandbox.token()}"},
        )
        rows += response.json()["value"]
    return rows


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("query_records", {"table": "acount"}, "Did you mean 'account'"),
        ("query_records", {"table": "account", "select": ["revnue"]}, "did you mean 'revenue'"),
        ("query_records", {"table": "account", "select": "name,$expand=primarycontactid"}, "did you mean"),
        ("query_records", {"table": "account", "filter": "name eq 'x'&$top=1000"}, "0x80060888"),
        ("query_records", {"table": "account", "filter": "name eq 'x' or 1 eq 1"}, "0x80060888"),
        ("query_records", {"table": "account", "orderby": "name; drop"}, "not 'column"),
        ("query_records", {"table": "account", "expand": ["primarycontactid)($select=x"]}, "not a navigation property"),
        ("query_records", {"table": "account", "top": 0}, "validation error"),
        ("query_records", {"table": "account", "cursor": "not-a-cursor"}, "cursor is not valid"),
        ("query_records", {"fetchxml": "<fetch><entity name='account'>"}, "not well-formed"),
        (
            "query_records",
            {"fetchxml": "<!DOCTYPE a [<!ENTITY b 'c'>]><fetch><entity name='account'/></fetch>"},
            "DOCTYPE",
        ),
        ("get_record", {"table": "account", "id": "not-a-guid"}, "UUID"),
        ("get_record", {"table": "account", "id": "00000000-0000-0000-0000-000000000001"}, "Does Not Exist"),
        ("get_record", {"table": "account", "key": {"accountnumber": "A-1001') or ('1'='1"}}, "0x80040217"),
        ("create_record", {"table": "account", "values": {"name": "x" * 161}}, "at most 160 characters"),
        ("create_record", {"table": "account", "values": {"revnue": 5}}, "did you mean 'revenue'"),
        ("create_record", {"table": "account", "values": {"numberofemployees": "many"}}, "expects a number"),
        ("create_record", {"table": "account", "values": {"numberofemployees": -1}}, "outside the allowed range"),
        ("create_record", {"table": "account", "values": {"industrycode": "Space Mining"}}, "not one of its choices"),
        ("create_record", {"table": "account", "values": {"createdon": "2024-01-01"}}, "cannot be set on create"),
        (
            "create_record",
            {"table": "account", "values": {"primarycontactid": {"table": "account", "id": "x"}}},
            "points at contact",
        ),
        (
            "create_record",
            {"table": "account", "values": {"primarycontactid": {"table": "contact", "id": "x"}}},
            "not a row id",
        ),
        ("create_record", {"table": "account", "values": {"primarycontactid": 5}}, 'give a lookup as {"table"'),
        ("create_record", {"table": "account", "values": {}}, "values is empty"),
        ("create_record", {"table": "account", "values": {"lastonholdtime": "yesterday"}}, "cannot be set"),
        (
            "create_record",
            {"table": "lead", "values": {"lastname": "x", "subject": "y", "estimatedamount": True}},
            "expects a number",
        ),
        ("update_record", {"table": "account", "values": {"name": "x"}}, "Give the row's id, or its alternate key"),
        ("get_record", {"table": "account"}, "Give the row's id, or its alternate key"),
        (
            "get_record",
            {"table": "account", "id": "00000000-0000-0000-0000-000000000001", "key": {"accountnumber": "A-1"}},
            "not both",
        ),
        (
            "query_records",
            {"fetchxml": "<fetch><entity name='account'/></fetch>", "filter": "name eq 'x'", "top": 3},
            "fetchxml replaces the OData parts, but filter, top came with it",
        ),
        (
            "update_record",
            {"table": "account", "id": "00000000-0000-0000-0000-000000000001", "values": {"name": "x"}},
            "0x80040217",
        ),
        ("create_record", {"table": "account"}, "validation error"),
        (
            "delete_record",
            {"table": "account", "id": "00000000-0000-0000-0000-000000000001", "confirm": True},
            "Does Not Exist",
        ),
    ],
)
async def test_bad_arguments_are_tool_errors_and_change_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any], message: str
) -> None:
    before = await snapshot(sandbox, http)
    async with Client(server_for(sandbox)) as client:
        failure = error_text(await client.call_tool(tool, arguments))
    assert message in failure
    assert await snapshot(sandbox, http) == before


async def test_a_stale_etag_refuses_the_update(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    async with Client(server_for(sandbox)) as client:
        row = structured(await client.call_tool("get_record", {"table": "account", "key": {"accountnumber": "A-1001"}}))
        arguments = {"table": "account", "id": row["row"]["accountid"], "etag": row["etag"]}
        structured(await client.call_tool("update_record", {**arguments, "values": {"telephone1": "1"}}))
        before = await snapshot(sandbox, http)
        failure = error_text(await client.call_tool("update_record", {**arguments, "values": {"telephone1": "2"}}))
    assert "412" in failure and "read it again" in failure
    assert await snapshot(sandbox, http) == before


async def test_a_user_without_write_privilege_gets_a_clear_error(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    before = await snapshot(sandbox, http)
    async with Client(server_for(sandbox, "carol")) as client:
        failure = error_text(await client.call_tool("create_record", {"table": "account", "values": {"name": "Nope"}}))
    assert "403" in failure and "security role" in failure
    assert await snapshot(sandbox, http) == before


async def test_results_are_bounded_and_say_so(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("query_records", {"table": "account", "page_size": 500}))
    assert 0 < len(result["rows"]) < 60
    assert "bytes" in result["truncated"]
    assert result["cursor"]
