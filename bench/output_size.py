"""Output size: what a tool puts in an assistant's context, against what the Web API itself answers.

A client reads a result's text block or its structured content, so each is measured on its own, in UTF-8 bytes
of compact JSON (the text block as sent; the structured content as `json.dumps` writes it without spaces). KB is
1,024 bytes, as in the tests. `describe_table` runs on `account`, served from the real environment's metadata
(248 columns). A 10-row `query_records` of six columns (name, a choice, a lookup, money, a date, a number) is set
beside the Web API's own annotated JSON for the same 10 accounts: `GET accounts?$select=...&$top=10` with
`Prefer: odata.include-annotations="*"`, sent with the tool's own token; the rows of both are checked to be the
same accounts. A `search_records` is set beside the search endpoint's answer to the same search (same hits).

    python -m bench.output_size
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx2
from mcp import Client, types

from server import build_server, load_settings

from ._figures import print_table
from ._recorded_requests import RecordedRequest, recording_requests
from ._sandbox_process import SandboxProcess

DESCRIBE_TARGET: Final = 10 * 1024
QUERY_TARGET: Final = 0.35
RECORDS_LIST_TARGET: Final = 8 * 1024  # the `records` toolset alone
TOOLS_LIST_TARGET: Final = 12 * 1024  # every toolset
SIX_COLUMNS: Final = ["name", "industrycode", "primarycontactid", "revenue", "createdon", "numberofemployees"]
QUERIES: Final[tuple[tuple[str, dict[str, Any], float | None], ...]] = (
    ("10 rows, 6 columns", {"table": "account", "select": SIX_COLUMNS, "top": 10}, QUERY_TARGET),
    ("10 rows, all columns (no $select)", {"table": "account", "top": 10}, None),
)
ANNOTATIONS: Final = 'odata.include-annotations="*"'
SEARCH: Final = {"search": "Fabrikam", "top": 10}


@dataclass(frozen=True)
class Size:
    text: int  # the text block, as sent
    structured: int  # the structured content, as compact JSON


def compact_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def size_of(result: types.CallToolResult) -> Size:
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"the tool failed: {result.content}")
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    return Size(len(text.encode()), compact_bytes(result.structured_content))


async def tools_list_bytes(client: Client) -> tuple[int, int]:
    """The whole `tools/list` result as compact JSON (names, descriptions, input and output schemas), and how many
    tools it lists."""
    listed = await client.list_tools()
    return len(listed.model_dump_json(by_alias=True, exclude_none=True).encode()), len(listed.tools)


async def web_api_rows(http: httpx2.AsyncClient, sent: RecordedRequest, top: int) -> httpx2.Response:
    """The Web API's own answer for the rows the tool read: the tool's `$select` and token, `$top`, annotations."""
    url = httpx2.URL(sent.url)
    params = {key: value for key, value in url.params.items() if key == "$select"} | {"$top": str(top)}
    headers = {"Authorization": sent.headers["authorization"], "Accept": "application/json", "Prefer": ANNOTATIONS}
    response = await http.get(url.copy_with(query=None), params=params, headers=headers)
    response.raise_for_status()
    return response


@dataclass(frozen=True)
class WebApiSize:
    served: int  # the body as the sandbox sends it
    compact: int  # the same JSON without the spaces the sandbox writes after separators (the service writes none)


async def query_sizes(client: Client, http: httpx2.AsyncClient, arguments: dict[str, Any]) -> tuple[Size, WebApiSize]:
    """The tool's sizes and the Web API's bytes for the same rows."""
    with recording_requests() as recorded:
        result = await client.call_tool("query_records", arguments)
    (sent,) = recorded  # the table's metadata is cached by then: one request, the rows
    web_api = await web_api_rows(http, sent, arguments["top"])
    primary_id = "accountid"
    tool_ids = [row[primary_id] for row in (result.structured_content or {}).get("rows", [])]
    if tool_ids != [row[primary_id] for row in web_api.json()["value"]]:
        raise RuntimeError("the tool and the Web API answered with different rows")
    return size_of(result), WebApiSize(len(web_api.content), compact_bytes(web_api.json()))


def share(size: int, web_api: int | None) -> str:
    return "-" if web_api is None else f"{size / web_api:.1%}"


def line(name: str, size: Size, web_api: int | None, target: str) -> list[str]:
    """One table row; the shares are of the Web API's bytes, where there is a Web API answer to compare."""
    web_api_text = "-" if web_api is None else f"{web_api:,}"
    shares = [share(size.text, web_api), share(size.structured, web_api)]
    return [name, f"{size.text:,}", f"{size.structured:,}", web_api_text, *shares, target]


async def measure(sandbox: SandboxProcess) -> tuple[list[list[str]], list[str]]:
    settings = load_settings(None, url=sandbox.url(), access_token=sandbox.token())
    async with httpx2.AsyncClient(timeout=30) as http, Client(build_server(settings), cache=None) as client:
        listing, tools = await tools_list_bytes(client)
        async with Client(build_server(settings.model_copy(update={"toolsets": frozenset({"records"})}))) as records:
            records_listing, records_tools = await tools_list_bytes(records)
        description = size_of(await client.call_tool("describe_table", {"table": "account"}))
        blank = ["-", "-", "-"]
        rows = [
            [
                f"tools/list, records ({records_tools} tools)",
                "-",
                f"{records_listing:,}",
                *blank,
                f"<= {RECORDS_LIST_TARGET:,}",
            ],
            [f"tools/list, every toolset ({tools} tools)", "-", f"{listing:,}", *blank, f"<= {TOOLS_LIST_TARGET:,}"],
            line("describe_table account", description, None, f"<= {DESCRIBE_TARGET:,}"),
        ]
        notes = []
        for name, arguments, target in QUERIES:
            tool, web_api = await query_sizes(client, http, arguments)
            shown = "-" if target is None else f"<= {target:.0%}"
            rows.append(line(f"query_records {name}", tool, web_api.served, shown))
            notes.append(
                f"query_records {name}: the Web API's JSON re-encoded compactly is {web_api.compact:,} bytes; "
                f"text {share(tool.text, web_api.compact)}, structured {share(tool.structured, web_api.compact)}"
            )
        search, service = await search_sizes(client, http, sandbox, SEARCH)
        rows.append(line(f"search_records {SEARCH['search']!r}, top {SEARCH['top']}", search, service.served, "-"))
        notes.append(
            f"search_records: the search endpoint's answer is a JSON string inside JSON; unescaped and compact it is "
            f"{service.compact:,} bytes; text {share(search.text, service.compact)}, structured "
            f"{share(search.structured, service.compact)}"
        )
    return rows, notes


async def search_sizes(
    client: Client, http: httpx2.AsyncClient, sandbox: SandboxProcess, arguments: dict[str, Any]
) -> tuple[Size, WebApiSize]:
    """The tool's sizes and the search endpoint's bytes for the same search, checked to be the same hits."""
    result = await client.call_tool("search_records", arguments)
    headers = {"Authorization": f"Bearer {sandbox.token()}", "Accept": "application/json"}
    response = await http.post(f"{sandbox.url()}/api/search/v2.0/query", json=arguments, headers=headers)
    response.raise_for_status()
    answer = json.loads(response.json()["response"])
    if [hit["id"] for hit in (result.structured_content or {}).get("hits", [])] != [v["Id"] for v in answer["Value"]]:
        raise RuntimeError("the tool and the search endpoint answered with different hits")
    return size_of(result), WebApiSize(len(response.content), compact_bytes(answer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-output-") as directory, SandboxProcess(Path(directory)) as sandbox:
        rows, notes = asyncio.run(measure(sandbox))
    print("UTF-8 bytes of compact JSON: the text block as sent, the structured content; share: tool / Web API")
    headers = ["output", "text", "structured", "Web API", "text share", "structured share", "target"]
    print_table(headers, rows)
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
