"""What a tool puts in a model's context: compact JSON, only what was asked, within the design's budgets."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any, Final
from unittest import mock

import httpx2
from mcp import Client

from sandbox import Sandbox

from .support import error_text, server_for, structured, text

SIX_COLUMNS: Final = ["name", "industrycode", "primarycontactid", "revenue", "createdon", "numberofemployees"]
ANNOTATIONS: Final = 'odata.include-annotations="*"'
CURRENCY_ID: Final = "b2a6b689-9a39-e611-80d2-00155db44581"
FORMATTED: Final = "OData.Community.Display.V1.FormattedValue"


def compact_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


async def web_api_accounts(sandbox: Sandbox, http: httpx2.AsyncClient, properties: list[str]) -> httpx2.Response:
    """The Web API's own annotated answer: `GET accounts?$select=...&$top=10`."""
    response = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/accounts",
        params={"$select": ",".join(properties), "$top": "10"},
        headers={"Authorization": f"Bearer {sandbox.token()}", "Prefer": ANNOTATIONS},
    )
    response.raise_for_status()
    return response


async def test_ten_rows_of_six_columns_cost_at_most_35_percent_of_the_web_apis_json(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    async with Client(server_for(sandbox)) as client:
        result = await client.call_tool("query_records", {"table": "account", "select": SIX_COLUMNS, "top": 10})
    rows = structured(result)["rows"]
    properties = ["_primarycontactid_value" if name == "primarycontactid" else name for name in SIX_COLUMNS]
    web_api = await web_api_accounts(sandbox, http, properties)
    served = web_api.json()["value"]
    assert [row["accountid"] for row in rows] == [row["accountid"] for row in served]
    # Choice labels and lookup names are kept, beside the values a filter needs.
    label, name = f"industrycode@{FORMATTED}", f"_primarycontactid_value@{FORMATTED}"
    assert [row["industrycode"] for row in rows] == [[row["industrycode"], row[label]] for row in served]
    assert [row["primarycontactid"] for row in rows] == [
        {"id": row["_primarycontactid_value"], "name": row[name]} for row in served
    ]
    assert len(text(result).encode()) <= 0.35 * len(web_api.content)
    assert compact_bytes(result.structured_content) <= 0.35 * len(web_api.content)


async def test_describe_table_of_the_real_account_fits_in_10_kb(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        result = await client.call_tool("describe_table", {"table": "account"})
    described = structured(result)
    assert len(text(result).encode()) <= 10 * 1024
    assert compact_bytes(result.structured_content) <= 10 * 1024
    columns = described["columns"]
    assert len(columns) == 160
    # A display name stays where it tells more than the logical name, and goes where it only spells it out.
    assert columns["revenue"] == "money, 'Annual Revenue'"
    assert columns["accountnumber"] == "text(20)"
    assert columns["primarycontactid"] == "lookup→contact"
    assert columns["industrycode"].startswith("choice, 'Industry': 1=Accounting, ")
    assert columns["industrycode"].endswith("… (33 in all)")
    assert "display_name" not in described  # "Account" of account
    assert "Describe a column alone for all its choices." in described["note"]


async def test_describe_table_tells_what_the_service_requires_from_what_only_forms_ask_for(
    sandbox: Sandbox,
) -> None:
    async with Client(server_for(sandbox)) as client:
        product = structured(
            await client.call_tool("describe_table", {"table": "product", "columns": ["name", "productnumber"]})
        )["columns"]
        lead = structured(await client.call_tool("describe_table", {"table": "lead", "columns": ["lastname"]}))
        account = structured(
            await client.call_tool("describe_table", {"table": "account", "columns": ["name", "ownerid", "statecode"]})
        )["columns"]
        without_name = await client.call_tool("create_record", {"table": "product", "values": {"productnumber": "P"}})
        without_last_name = await client.call_tool("create_record", {"table": "lead", "values": {"subject": "Demo"}})
    assert product["name"] == "text(100), primary name, required"
    assert product["productnumber"] == "text(100), required, 'Product ID'"
    assert "'name'" in error_text(without_name)  # required: the service refuses a create without it
    assert lead["columns"]["lastname"] == "text(50), recommended (forms only)"
    assert not without_last_name.is_error  # recommended: the Web API accepts a create without it
    assert account["name"] == "text(160), primary name, recommended (forms only), 'Account Name'"
    # Required by the service, which fills them itself on create: nothing a create must give.
    assert account["ownerid"] == "lookup→systemuser|team, defaults to the caller"
    assert account["statecode"] == "choice, 'Status': 0=Active, 1=Inactive"


@contextlib.contextmanager
def service_answering_money_with_its_currency() -> Iterator[None]:
    """The Web API as it answers a `$select` with a money column: the row's currency lookup comes along unasked
    (the sandbox leaves it out)."""
    send = httpx2.AsyncClient.send

    async def sending(client: httpx2.AsyncClient, request: httpx2.Request, **options: Any) -> httpx2.Response:
        response = await send(client, request, **options)
        if "revenue" not in request.url.params.get("$select", "").split(","):
            return response
        body = response.json()
        for row in body.get("value", [body]):
            row["_transactioncurrencyid_value"] = CURRENCY_ID
            row[f"_transactioncurrencyid_value@{FORMATTED}"] = "US Dollar"
            row["_transactioncurrencyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = "transactioncurrency"
        headers = {key: value for key, value in response.headers.items() if key.lower() != "content-length"}
        return httpx2.Response(response.status_code, headers=headers, json=body, request=request)

    with mock.patch.object(httpx2.AsyncClient, "send", sending):
        yield


async def test_rows_carry_the_columns_asked_for_and_the_primary_key_only(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        with service_answering_money_with_its_currency():
            rows = structured(
                await client.call_tool("query_records", {"table": "account", "select": ["name", "revenue"], "top": 3})
            )["rows"]
            one = structured(
                await client.call_tool(
                    "get_record", {"table": "account", "id": rows[0]["accountid"], "select": ["revenue"]}
                )
            )["row"]
        everything = structured(await client.call_tool("get_record", {"table": "account", "id": rows[0]["accountid"]}))
    assert rows and all(set(row) == {"name", "revenue", "accountid"} for row in rows)
    assert set(one) == {"revenue", "accountid"}
    # Without a select, every column with a value comes back, the currency among them.
    assert everything["row"]["transactioncurrencyid"]["name"]


async def test_a_lookup_names_its_table_only_where_the_column_can_point_to_several(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        rows = structured(
            await client.call_tool(
                "query_records",
                {"table": "opportunity", "select": ["customerid", "ownerid", "parentaccountid"], "top": 5},
            )
        )["rows"]
    assert rows
    for row in rows:
        assert set(row["parentaccountid"]) == {"id", "name"}  # account only
        assert set(row["customerid"]) == {"id", "table", "name"} and row["customerid"]["table"] == "account"
        assert set(row["ownerid"]) == {"id", "table", "name"} and row["ownerid"]["table"] == "systemuser"


async def test_every_result_is_compact_json_without_empty_fields(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        results = [
            await client.call_tool("list_environments", {}),
            await client.call_tool("list_tables", {"search": "account"}),
            await client.call_tool("describe_table", {"table": "lead", "columns": ["subject"]}),
            await client.call_tool("query_records", {"table": "account", "select": ["name"], "top": 2}),
            await client.call_tool("get_record", {"table": "account", "key": {"accountnumber": "A-1001"}}),
        ]
        created = structured(await client.call_tool("create_record", {"table": "lead", "values": {"subject": "x"}}))
        results += [
            await client.call_tool("update_record", {"table": "lead", "id": created["id"], "values": {"subject": "y"}}),
            await client.call_tool("delete_record", {"table": "lead", "id": created["id"], "confirm": True}),
        ]
    for result in results:
        sent = text(result)
        assert json.dumps(structured(result), ensure_ascii=False, separators=(",", ":")) == sent
        # No field left null: a cursor on the last page, a count nobody asked for, a row not returned.
        assert None not in structured(result).values()
    assert created == {"table": "lead", "id": created["id"], "created": True}


async def test_a_cut_result_states_its_real_size(sandbox: Sandbox) -> None:
    async with Client(server_for(sandbox)) as client:
        result = structured(await client.call_tool("query_records", {"table": "account", "page_size": 500}))
    notice = result["truncated"]
    stated = re.search(r"\(([\d,]+) bytes of JSON\) to stay under 60,000 bytes", notice)
    assert stated, notice
    assert int(stated.group(1).replace(",", "")) == compact_bytes(result["rows"]) <= 60_000
    assert result["cursor"]
