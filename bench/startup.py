"""Start-up: from process start to an answered `tools/list` over stdio, against a minimal MCPServer.

Each run starts a fresh process per server, in turn, and times the MCP client from spawning it to the answer of
`tools/list` (the handshake included); closing it is not timed. `dynamics-mcp serve` is measured three ways:
configured by `DATAVERSE_URL` and `DATAVERSE_ACCESS_TOKEN` for a sandbox running in its own process, and as the
zero-setup default, which starts the embedded sandbox in the background, on a data directory of its own
(`XDG_DATA_HOME`) that is either fresh for every start (a first run: the sandbox seeds its demo data) or kept
from an earlier run. The design holds the zero-setup default to the same target as the rest.

    python -m bench.startup [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Callable
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
    parameters: Callable[[], StdioServerParameters]  # called for each start: a fresh data directory, say
    tools: int  # the tools/list answer must list this many, or the measurement is wrong


async def time_to_tools_list(contender: Contender, log: Path) -> float:
    parameters = contender.parameters()
    with log.open("a") as errors:
        start = time.perf_counter()
        async with Client(stdio_client(parameters, errlog=errors), cache=None) as client:
            tools = await client.list_tools()
            elapsed = milliseconds_since(start)
    if len(tools.tools) != contender.tools:
        raise RuntimeError(f"{contender.name}: {len(tools.tools)} tools listed, expected {contender.tools}")
    return elapsed


async def seed_zero_setup(data_home: Path, log: Path) -> None:
    """Run the zero-setup default once through a tool call, which waits until its sandbox has seeded."""
    with log.open("a") as errors:
        parameters = dynamics_mcp_parameters({"XDG_DATA_HOME": str(data_home)})
        async with Client(stdio_client(parameters, errlog=errors), cache=None) as client:
            result = await client.call_tool("list_environments", {})
    if result.is_error:
        raise RuntimeError(f"the zero-setup default did not start its sandbox: {result.content}")


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
        log = work / "servers.log"
        kept = work / "kept-data"
        asyncio.run(seed_zero_setup(kept, log))
        fresh = (work / f"fresh-data-{number}" for number in itertools.count())
        with SandboxProcess(work / "sandbox") as sandbox:
            configured = dynamics_mcp_parameters(
                {"DATAVERSE_URL": sandbox.url(), "DATAVERSE_ACCESS_TOKEN": sandbox.token()}
            )
            minimal = minimal_server_parameters(write_minimal_server(work))
            from tools import TOOL_NAMES  # every toolset is offered by default

            tools = len(TOOL_NAMES)
            contenders = [
                Contender("minimal MCPServer, one tool", lambda: minimal, 1),
                Contender("dynamics-mcp serve (DATAVERSE_URL)", lambda: configured, tools),
                Contender(
                    "dynamics-mcp serve (zero-setup, first run: seeds)",
                    lambda: dynamics_mcp_parameters({"XDG_DATA_HOME": str(next(fresh))}),
                    tools,
                ),
                Contender(
                    "dynamics-mcp serve (zero-setup, data kept)",
                    lambda: dynamics_mcp_parameters({"XDG_DATA_HOME": str(kept)}),
                    tools,
                ),
            ]
            timings = asyncio.run(measure(contenders, runs, log))
    report(timings, contenders[0].name, runs)


if __name__ == "__main__":
    main()
