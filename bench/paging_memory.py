"""Memory while paging through 100,000 rows: the client's async page iterator, and query_records' cursor.

The sandbox runs in its own process with the large-data seed (`dynamics-mcp sandbox --large N`), so its memory
is not counted. Each way of paging runs in a fresh worker process (this module with `--worker`), configured by
`DATAVERSE_URL` and `DATAVERSE_ACCESS_TOKEN`; the worker reads its own peak resident set size after the first
page and after each checkpoint of rows. Memory is flat when the peak after the last row is about the peak after
the first checkpoint. Both ways select the same two columns of `account`, in primary key order.

The sandbox pages with SQL OFFSET, so a page costs more the deeper it is (Dataverse's paging cookie does not):
100,000 rows take a few minutes on a small machine, mostly in the sandbox; `--quick` pages through 20,000.

    python -m bench.paging_memory [--rows N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, Literal

from ._figures import print_table
from ._sandbox_process import SandboxProcess

Way = Literal["client", "tool"]
WAYS: Final[dict[Way, str]] = {
    "client": "DataverseClient.query pages (5,000 rows each)",
    "tool": "query_records + cursor (500 rows a call, in memory)",
}
COLUMNS: Final = ["name", "accountnumber"]  # 500 rows of them fit one result (60,000 bytes)
CLIENT_PAGE: Final = 5000
TOOL_PAGE: Final = 500


def peak_rss_mb() -> float:
    """This process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def checkpoints(rows: int) -> list[int]:
    return sorted({rows // 10, rows // 2, rows})


# -- the worker: one way of paging, in its own process ----------------------------------------------------------


async def client_pages() -> AsyncIterator[int]:
    """Row counts of the pages the Dataverse client's async iterator yields."""
    from dataverse import DataverseClient, ODataQuery, StaticTokenProvider, build_http_client

    async with build_http_client() as http:
        tokens = StaticTokenProvider(os.environ["DATAVERSE_ACCESS_TOKEN"])
        client = DataverseClient(http, os.environ["DATAVERSE_URL"], tokens)
        query = ODataQuery(select=COLUMNS, orderby=[("accountid", False)])
        async for page in client.query("account", query, page_size=CLIENT_PAGE):
            yield len(page.rows)


async def tool_pages() -> AsyncIterator[int]:
    """Row counts of successive query_records results, each continuing from the cursor of the one before."""
    from mcp import Client

    from server import build_server, load_settings

    async with Client(build_server(load_settings(None)), cache=None) as client:
        arguments: dict[str, object] = {"table": "account", "select": COLUMNS, "orderby": "accountid"}
        while True:
            result = await client.call_tool("query_records", {**arguments, "page_size": TOOL_PAGE})
            if result.is_error or result.structured_content is None:
                raise RuntimeError(f"query_records failed: {result.content}")
            yield len(result.structured_content["rows"])
            cursor = result.structured_content.get("cursor")
            if cursor is None:
                return
            arguments = {"cursor": cursor}


async def run_worker(way: Way, rows: int) -> None:
    """Page until `rows` rows, printing one JSON line per checkpoint: rows so far and peak RSS."""
    pages = client_pages() if way == "client" else tool_pages()
    marks = checkpoints(rows)
    seen = 0
    async for count in pages:
        if seen == 0:
            print(json.dumps({"rows": 0, "peak_mb": peak_rss_mb()}), flush=True)
        seen += count
        while marks and seen >= marks[0]:
            print(json.dumps({"rows": marks.pop(0), "peak_mb": peak_rss_mb()}), flush=True)
        if not marks:
            return
    raise RuntimeError(f"only {seen} rows to page through; the sandbox was seeded with fewer than {rows}")


# -- the driver -----------------------------------------------------------------------------------------------


def measure(way: Way, sandbox: SandboxProcess, rows: int) -> dict[int, float]:
    """Peak RSS of a worker paging one way, by rows paged (0: once the first page is in)."""
    environment = os.environ | {"DATAVERSE_URL": sandbox.url(), "DATAVERSE_ACCESS_TOKEN": sandbox.token()}
    command = [sys.executable, "-m", "bench.paging_memory", "--worker", way, "--rows", str(rows)]
    finished = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, env=environment, capture_output=True, text=True, timeout=600, check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(f"the {way} worker failed:\n{finished.stderr}")
    marks = [json.loads(line) for line in finished.stdout.splitlines()]
    return {int(mark["rows"]): float(mark["peak_mb"]) for mark in marks}


def report(results: dict[Way, dict[int, float]], rows: int) -> None:
    marks = [0, *checkpoints(rows)]
    table = []
    for way, peaks in results.items():
        growth = peaks[rows] / peaks[marks[1]]
        table.append([WAYS[way], *(f"{peaks[mark]:.1f}" for mark in marks), f"{growth:.2f}"])
    headers = ["paging", "first page", *(f"{mark:,} rows" for mark in marks[1:]), f"{marks[-1]:,} / {marks[1]:,}"]
    print(f"peak RSS of the paging process, MB, after each number of rows ({', '.join(COLUMNS)})")
    print_table(headers, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="rows to page through (default: 100,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--worker", choices=list(WAYS), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    rows = 20_000 if arguments.quick else arguments.rows
    if arguments.worker:
        asyncio.run(run_worker(arguments.worker, rows))
        return
    with tempfile.TemporaryDirectory(prefix="bench-paging-") as directory:
        print(f"seeding the sandbox with {rows:,} extra accounts...", flush=True)
        with SandboxProcess(Path(directory), extra_accounts=rows) as sandbox:
            results: dict[Way, dict[int, float]] = {}
            for way, description in WAYS.items():
                print(f"paging with {description}...", flush=True)
                results[way] = measure(way, sandbox, rows)
    report(results, rows)


if __name__ == "__main__":
    main()
