"""Output size: what a tool puts in an assistant's context, against what the Web API itself answers.

Sizes are UTF-8 bytes of a result's text block: the JSON an assistant reads, which the MCP SDK indents by two
spaces (the structured copy beside it holds the same data); its compact size is shown too. KB is 1,024 bytes,
as in the tests. `describe_table` runs on `account`, served from the real environment's metadata
(248 columns). A 10-row `query_records` is set against the body of the request the tool sends for those rows,
replayed as is: `Prefer: odata.include-annotations="*"`, the same `$select` (or none: all columns) and `$top`.

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
from ._recorded_requests import recording_requests, replay
from ._sandbox_process import SandboxProcess

DESCRIBE_TARGET: Final = 12 * 1024
QUERY_TARGET: Final = 0.60
TOOLS_LIST_TARGET: Final = 8 * 1024
FEW_COLUMNS: Final = ["name", "accountnumber", "revenue", "address1_city", "primarycontactid"]
QUERIES: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    (f"10 rows, $select of {len(FEW_COLUMNS)} columns", {"table": "account", "select": FEW_COLUMNS, "top": 10}),
    ("10 rows, all columns (no $select)", {"table": "account", "top": 10}),
)


@dataclass(frozen=True)
class Size:
    text: int  # as sent
    compact: int  # the same JSON without indentation


def size_of(result: types.CallToolResult) -> Size:
    if result.is_error:
        raise RuntimeError(f"the tool failed: {result.content}")
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    return Size(len(text.encode()), len(compact.encode()))


async def tools_list_bytes(client: Client) -> int:
    """The whole `tools/list` result as compact JSON: names, descriptions, input and output schemas."""
    listed = await client.list_tools()
    return len(listed.model_dump_json(by_alias=True, exclude_none=True).encode())


async def query_sizes(client: Client, http: httpx2.AsyncClient, arguments: dict[str, Any]) -> tuple[Size, int]:
    """The tool's bytes and the Web API's bytes for the same request."""
    with recording_requests() as recorded:
        tool = size_of(await client.call_tool("query_records", arguments))
    (request,) = recorded  # the table's metadata is cached by then: one request, the rows
    web_api = len((await replay(http, request)).content)
    return tool, web_api


def line(name: str, text: int | None, compact: int, web_api: int | None, target: str) -> list[str]:
    """One table row; the shares are of the Web API's bytes, where there is a Web API answer to compare."""
    shares = ["-", "-"] if web_api is None else [f"{size / web_api:.1%}" for size in (text or compact, compact)]
    sizes = ["-" if size is None else f"{size:,}" for size in (text, compact, web_api)]
    return [name, *sizes, *shares, target]


async def measure(sandbox: SandboxProcess) -> list[list[str]]:
    settings = load_settings(None, url=sandbox.url(), access_token=sandbox.token())
    async with httpx2.AsyncClient(timeout=30) as http, Client(build_server(settings), cache=None) as client:
        listing = await tools_list_bytes(client)
        description = size_of(await client.call_tool("describe_table", {"table": "account"}))
        rows = [
            line("tools/list, all nine tools", None, listing, None, f"<= {TOOLS_LIST_TARGET:,}"),
            line("describe_table account", description.text, description.compact, None, f"<= {DESCRIBE_TARGET:,}"),
        ]
        for name, arguments in QUERIES:
            tool, web_api = await query_sizes(client, http, arguments)
            rows.append(line(f"query_records {name}", tool.text, tool.compact, web_api, f"<= {QUERY_TARGET:.0%}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-output-") as directory, SandboxProcess(Path(directory)) as sandbox:
        rows = asyncio.run(measure(sandbox))
    print("UTF-8 bytes of the JSON an assistant reads (as sent, and compact); share: tool / Web API")
    headers = ["output", "tool bytes", "compact", "Web API bytes", "share", "compact share", "target"]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
