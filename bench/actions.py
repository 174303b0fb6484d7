"""list_actions on a large `$metadata`: the first call (download and streamed parse) and a later one (the cache).

A real environment's CSDL document runs to tens of megabytes; the sandbox pads its own (synthetic custom tables,
declared only) to `--metadata-mb` and serves it from a child process, so its work and memory are not counted here.
This process runs the real server with an in-memory MCP client and times the first list_actions, then a second one
answered from the cache; a second server's first call gives the peak of memory Python allocated during it
(tracemalloc, which slows allocation, so that call is not timed). For comparison, the document is then downloaded
once more and parsed once from memory: the first call parses while the document streams in.

    python -m bench.actions [--metadata-mb 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Final

import httpx2

from dataverse import parse_metadata

from ._figures import milliseconds_since, print_table

DEFAULT_MB: Final = 20


async def serve(data_dir: Path, metadata_mb: int) -> None:
    """The child process: the sandbox with a padded `$metadata`, until it is terminated."""
    from sandbox import Sandbox

    async with Sandbox(data_dir, metadata_padding_mb=metadata_mb):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def measure(data_dir: Path) -> list[list[str]]:
    from mcp import Client

    from sandbox import SigningKey, mint_token, read_endpoints
    from server import build_server, load_settings

    endpoints = read_endpoints(data_dir)
    url = str(dict(endpoints["environments"])["contoso"])
    token = mint_token(SigningKey.load_or_create(data_dir), "admin", url, str(endpoints["authority"]), lifetime=3600)
    settings = load_settings(None, url=url, access_token=token)
    async with Client(build_server(settings)) as client:
        await client.call_tool("list_tables", {})  # the server and its table list are warm; the operations are not
        start = time.perf_counter()
        first = await client.call_tool("list_actions", {})
        cold = milliseconds_since(start)
        start = time.perf_counter()
        second = await client.call_tool("list_actions", {})
        warm = milliseconds_since(start)
    # Memory on a second server (its own cold cache): tracemalloc slows allocation, so it is not timed.
    async with Client(build_server(settings)) as client:
        await client.call_tool("list_tables", {})
        tracemalloc.start()
        await client.call_tool("list_actions", {})
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if first.is_error or second.is_error:
        raise RuntimeError(f"list_actions failed: {first.content}")
    listed = len(json.loads(first.content[0].text)["actions"])  # type: ignore[union-attr]
    async with httpx2.AsyncClient(timeout=120) as http:
        start = time.perf_counter()
        answer = await http.get(f"{url}/api/data/v9.2/$metadata", headers={"Authorization": f"Bearer {token}"})
        download = milliseconds_since(start)
    document = answer.content
    start = time.perf_counter()
    parse_metadata(document)
    parse = milliseconds_since(start)
    return [
        [f"first list_actions ($metadata {len(document) / 1e6:.1f} MB)", f"{cold:,.0f}", f"{peak / 1e6:.1f}"],
        ["  compare: the download alone (a plain GET)", f"{download:,.0f}", "-"],
        ["  compare: the parse alone (from memory)", f"{parse:,.0f}", "-"],
        ["later list_actions (cached)", f"{warm:,.1f}", "-"],
        [f"operations listed: {listed}", "", ""],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--metadata-mb", type=int, default=DEFAULT_MB)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child process
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.metadata_mb))
        return
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory)
        command = [sys.executable, "-m", "bench.actions", "--serve", str(data_dir)]
        command += ["--metadata-mb", str(arguments.metadata_mb)]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the sandbox exited before listening")
            rows = asyncio.run(measure(data_dir))
        finally:
            child.terminate()
            child.wait(timeout=15)
    print_table(["call", "ms", "peak MB (Python)"], rows)


if __name__ == "__main__":
    main()
