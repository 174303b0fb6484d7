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
        ("query_records", {"table": "account", "top": 0}, "top must be a whole number from 1 to 5000, not 0."),
        ("query_records", {"table": "account", "cursor": "not-a-cursor"}, "cursor is not valid"),
        ("query_records", {"fetchxml": "<fetch><entity name='account'>"}, "not well-formed"),
        (
            "query_records",
            {"fetchxml": "<!DOCTYPE a [<!ENTITY b 'c'>]><fetch><entity name='account'/></fetch>"},
            "DOCTYPE",
        ),
        ("get_record", {"table": "account", "id": "not-a-guid"}, "id must be a GUID, not 'not-a-guid'."),
        (
            "get_record",
            {"table": "account", "id": "00000000-0000-0000-0000-000000000001"},
            "Does Not Exist. Check the id",
        ),
        ("get_record", {"table": "account", "key": {"accountnumber": "A-1001') or ('1'='1"}}, "0x80040217"),
        ("create_record", {"table": "account", "values": {"name": "x" * 161}}, "at most 160 characters"),
        ("create_record", {"table": "account", "values": {"revnue": 5}}, "did you mean 'revenue'"),
        (
            "create_record",
            {"table": "account", "values": {"numberofemployees": "many"}},
            "Column 'numberofemployees' of account: expects a whole number such as 42, not 'many'. Nothing was",
        ),
        (
            "create_record",
            {"table": "account", "values": {"numberofemployees": "4.2"}},
            "Column 'numberofemployees' of account: expects a whole number such as 42, not '4.2'.",
        ),
        (
            "create_record",
            {"table": "account", "values": {"numberofemployees": 4.2}},
            "Column 'numberofemployees' of account: expects a whole number such as 42, not 4.2.",
        ),
        (
            "create_record",
            {"table": "account", "values": {"revenue": "1e400"}},
            "Column 'revenue' of account: expects a number such as 12.50, not '1e400'.",
        ),
        (
            "create_record",
            {"table": "account", "values": {"revenue": "NaN"}},
            "Column 'revenue' of account: expects a number such as 12.50, not 'NaN'.",
        ),
        (
            "create_record",
            {"table": "account", "values": {"revenue": "Infinity"}},
            "Column 'revenue' of account: expects a number such as 12.50, not 'Infinity'.",
        ),
        (
            "create_record",
            {"table": "account", "values": {"revenue": "12345678901234567.25"}},
            "Column 'revenue' of account: '12345678901234567.25' has more digits than can be sent exactly",
        ),
        (
            "create_record",
            {"table": "contact", "values": {"lastname": "x", "donotemail": "yes"}},
            "Column 'donotemail' of contact: expects true or false (0=Allow, 1=Do Not Allow), not 'yes'.",
        ),
        (
            "create_record",
            {"table": "contact", "values": {"lastname": "x", "donotemail": 2}},
            "Column 'donotemail' of contact: expects true or false (0=Allow, 1=Do Not Allow), not 2.",
        ),
        (
            "create_record",
            {"table": "contact", "values": {"lastname": "x", "preferredcontactmethodcode": "9"}},
            "Column 'preferredcontactmethodcode' of contact: '9' is not one of its choices (1=Any, 2=Email,",
        ),
        (
            "create_record",
            {"table": "account", "values": {"accountnumber": 7}},
            "Column 'accountnumber' of account: expects text, not 7.",
        ),
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
        ("create_record", {"table": "account"}, "values is required: give an object. Nothing was written."),
        (
            "delete_record",
            {"table": "account", "id": "00000000-0000-0000-0000-000000000001", "confirm": True},
            "Does Not Exist. Nothing was written. Check the id",
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


GUID = "00000000-0000-0000-0000-000000000001"
QUERY_ARGUMENTS = "table, select, filter, orderby, top, expand, count, apply, fetchxml, page_size, cursor, environment"


@pytest.mark.parametrize(
    ("tool", "arguments", "sentences"),
    [
        (
            "query_records",
            {"table": "account", "page_size": 0},
            "page_size must be a whole number from 1 to 500, not 0.",
        ),
        ("query_records", {"table": "account", "top": "ten"}, "top must be a whole number from 1 to 5000, not 'ten'."),
        ("query_records", {"table": "account", "top": 2.5}, "top must be a whole number from 1 to 5000, not 2.5."),
        ("query_records", {"table": "account", "count": "maybe"}, "count must be true or false, not 'maybe'."),
        ("query_records", {"table": "account", "select": 5}, "select must be a list of strings or a string, not 5."),
        ("query_records", {"table": "account", "select": ["name", 5]}, "select[1] must be a string, not 5."),
        (
            "query_records",
            {"table": "account", "expand": "primarycontactid"},
            "expand must be a list of strings, e.g. primarycontactid(fullname), not 'primarycontactid'.",
        ),
        (
            "query_records",
            {"table": "account", "filters": "name eq 'x'"},
            "query_records takes no argument 'filters' (did you mean 'filter'?); "
            f"its arguments are: {QUERY_ARGUMENTS}.",
        ),
        ("list_environments", {"name": "contoso"}, "list_environments takes no arguments: leave out 'name'."),
        ("get_record", {"table": "account", "id": "not-a-guid"}, "id must be a GUID, not 'not-a-guid'."),
        ("get_record", {"id": GUID}, "table is required: give a string."),
        (
            "get_record",
            {"table": "account", "key": "A-1001"},
            'key must be an object, e.g. {"accountnumber": "A-1"}, not \'A-1001\'.',
        ),
        (
            "get_record",
            {"table": "account", "key": {"accountnumber": ["A-1001"]}},
            'key.accountnumber must be a string or a whole number, not ["A-1001"].',
        ),
        (
            "delete_record",
            {"table": "account", "id": "x" * 5000, "confirm": True},
            f"id must be a GUID, not '{'x' * 60}…'. Nothing was written.",
        ),
        ("delete_record", {"table": "account", "confirm": True}, "id is required: give a GUID. Nothing was written."),
        (
            "create_record",
            {"table": "account", "values": "x"},
            "values must be an object, not 'x'. Nothing was written.",
        ),
        (
            "create_record",
            {},
            "table is required: give a string. values is required: give an object. Nothing was written.",
        ),
        (
            "create_record",
            {"table": "account", "value": {"name": "x"}},
            "create_record takes no argument 'value' (did you mean 'values'?); its arguments are: table, values, "
            "environment. values is required: give an object. Nothing was written.",
        ),
        (
            "update_record",
            {"table": "account", "id": GUID, "values": ["name", "x"]},
            'values must be an object, not ["name", "x"]. Nothing was written.',
        ),
        (
            "upsert_record",
            {"table": "account", "key": {"accountnumber": "A-1001"}, "values": {"name": "x"}, "mode": "merge"},
            "mode must be one of 'create_or_update', 'create_only', 'update_only', not 'merge'. Nothing was written.",
        ),
    ],
)
async def test_an_argument_mistake_is_one_sentence_naming_it_the_value_and_what_is_allowed(
    sandbox: Sandbox, http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any], sentences: str
) -> None:
    before = await snapshot(sandbox, http)
    async with Client(server_for(sandbox)) as client:
        failure = error_text(await client.call_tool(tool, arguments))
    assert failure == f"Error executing tool {tool}: {sentences}"
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
