"""Start-up: from process start to an answered `tools/list` over stdio, against a minimal MCPServer.

Each run starts a fresh process per server, in turn, and times the MCP client from spawning it to the answer of
`tools/list` (the handshake included); closing it is not timed. `dynamics-mcp serve` is configured by
`DATAVERSE_URL` and `DATAVERSE_ACCESS_TOKEN` for a sandbox running in its own process, so its own start-up is
what is measured; the zero-setup default, which starts and seeds the embedded sandbox, is reported apart.

    python -m bench.startup [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ._figures import median, milliseconds_since, print_table, ratio
from ._sandbox_process import SandboxProcess
from ._servers import dynamics_mcp_parameters, minimal_server_parameters, write_minimal_server

TARGET: Final = 1.3


@dataclass(frozen=True)
class Contender:
    name: str
    parameters: StdioServerParameters
    tools: int  # the tools/list answer must list this many, or the measurement is wrong


async def time_to_tools_list(contender: Contender, log: Path) -> float:
    with log.open("a") as errors:
        start = time.perf_counter()
        async with Client(stdio_client(contender.parameters, errlog=errors), cache=None) as client:
            tools = await client.list_tools()
            elapsed = milliseconds_since(start)
    if len(tools.tools) != contender.tools:
        raise RuntimeError(f"{contender.name}: {len(tools.tools)} tools listed, expected {contender.tools}")
    return elapsed


async def measure(contenders: list[Contender], runs: int, log: Path) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    for contender in contenders:  # warm-up: the file system cache, compiled bytecode
        await time_to_tools_list(contender, log)
    for _ in range(runs):
        for contender in contenders:
            timings[contender.name].append(await time_to_tools_list(contender, log))
    return timings


def report(timings: dict[str, list[float]], baseline: str, runs: int) -> None:
    reference = median(timings[baseline])
    rows = [
        [name, f"{median(samples):.0f}", f"{min(samples):.0f}", ratio(median(samples), reference)]
        for name, samples in timings.items()
    ]
    print(f"process start to answered tools/list over stdio, median of {runs} runs; target <= {TARGET}x")
    print_table(["server", "median ms", "best ms", f"vs {baseline}"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="starts of each server (default: 10)")
    parser.add_argument("--quick", action="store_true", help="3 runs")
    arguments = parser.parse_args()
    runs = 3 if arguments.quick else arguments.runs
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as directory:
        work = Path(directory)
        with SandboxProcess(work / "sandbox") as sandbox:
            configured = {"DATAVERSE_URL": sandbox.url(), "DATAVERSE_ACCESS_TOKEN": sandbox.token()}
            contenders = [
                Contender("minimal MCPServer, one tool", minimal_server_parameters(write_minimal_server(work)), 1),
                Contender("dynamics-mcp serve (DATAVERSE_URL)", dynamics_mcp_parameters(configured), 9),
                Contender("dynamics-mcp serve (zero-setup sandbox)", dynamics_mcp_parameters({}), 9),
            ]
            timings = asyncio.run(measure(contenders, runs, work / "servers.log"))
    report(timings, contenders[0].name, runs)


if __name__ == "__main__":
    main()
