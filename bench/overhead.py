"""Latency of each read tool over the bare Web API requests it makes, in memory and over stdio, in one run.

The sandbox runs in its own process. A fresh server's first call of each tool, in the order of `CALLS`, sends
exactly the requests that answer it (the calls before it have cached the table list and the table's metadata);
those requests are recorded as sent (URL, headers, token) and replayed with a plain `httpx2.AsyncClient` as the
baseline: one after the other, each body decoded as JSON. Once warm, `list_tables` and `describe_table` send
nothing (the metadata cache answers them), so their baseline is the requests an uncached caller needs.

    python -m bench.overhead [--runs N] [--quick] [--only CALL] [--in-memory]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx2
from mcp import Client
from mcp.client.stdio import stdio_client

from server import build_server, load_settings

from ._figures import median, milliseconds_since, print_table, ratio
from ._recorded_requests import RecordedRequest, recording_requests, send_bare
from ._sandbox_process import SandboxProcess
from ._servers import dynamics_mcp_parameters, load_minimal_server, minimal_server_parameters, write_minimal_server

TARGET: Final = 1.2
FEW_COLUMNS: Final = ["name", "accountnumber", "revenue", "address1_city", "primarycontactid"]
CALLS: Final[tuple[tuple[str, str, dict[str, Any]], ...]] = (
    ("list_tables", "list_tables", {"search": "account"}),
    ("describe_table", "describe_table", {"table": "account"}),
    ("query_records", "query_records", {"table": "account", "select": FEW_COLUMNS, "top": 10}),
    ("query_records (all columns)", "query_records", {"table": "account", "top": 10}),
    ("get_record", "get_record", {"table": "account", "key": {"accountnumber": "A-1001"}, "select": FEW_COLUMNS}),
)


@dataclass
class Timings:
    bare: list[float] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)
    stdio: list[float] = field(default_factory=list)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> None:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")


async def timed(action: Awaitable[object]) -> float:
    start = time.perf_counter()
    await action
    return milliseconds_since(start)


@contextlib.asynccontextmanager
async def stdio_server(sandbox: SandboxProcess, log: Path) -> AsyncIterator[Client]:
    """`dynamics-mcp serve` as an IDE starts it, configured by environment variables."""
    environment = {"DATAVERSE_URL": sandbox.url(), "DATAVERSE_ACCESS_TOKEN": sandbox.token()}
    parameters = dynamics_mcp_parameters(environment)
    with log.open("w") as errors:
        async with Client(stdio_client(parameters, errlog=errors), cache=None) as client:
            yield client


@dataclass(frozen=True)
class Options:
    runs: int
    only: str | None = None  # time this call alone
    stdio: bool = True  # also over stdio; off leaves only in-process work for a profiler


async def measure(sandbox: SandboxProcess, options: Options, work: Path) -> tuple[dict[str, Timings], Timings]:
    """Per call: the bare requests, the tool in memory and over stdio; and the minimal server's echo for scale."""
    settings = load_settings(None, url=sandbox.url(), access_token=sandbox.token())
    minimal = write_minimal_server(work)
    timed_calls = [(name, tool, arguments) for name, tool, arguments in CALLS if options.only in (None, name)]
    timings = {name: Timings() for name, _, _ in timed_calls}
    floor = Timings()
    baselines: dict[str, list[RecordedRequest]] = {}
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(timeout=30))
        memory = await stack.enter_async_context(Client(build_server(settings), cache=None))
        minimal_memory = await stack.enter_async_context(Client(load_minimal_server(minimal), cache=None))
        stdio = minimal_stdio = None
        if options.stdio:
            stdio = await stack.enter_async_context(stdio_server(sandbox, work / "serve.log"))
            minimal_stdio = await stack.enter_async_context(Client(minimal_server_parameters(minimal), cache=None))
        for name, tool, arguments in CALLS:  # warm-up: each first call records its requests
            with recording_requests() as recorded:
                await call(memory, tool, arguments)
            baselines[name] = recorded
            if stdio is not None:
                await call(stdio, tool, arguments)
            await send_bare(http, recorded)
        for _ in range(options.runs):
            for name, tool, arguments in timed_calls:
                timings[name].bare.append(await timed(send_bare(http, baselines[name])))
                timings[name].memory.append(await timed(call(memory, tool, arguments)))
                if stdio is not None:
                    timings[name].stdio.append(await timed(call(stdio, tool, arguments)))
            floor.memory.append(await timed(call(minimal_memory, "echo", {"text": "ping"})))
            if minimal_stdio is not None:
                floor.stdio.append(await timed(call(minimal_stdio, "echo", {"text": "ping"})))
    for name, requests in baselines.items():
        if name in timings:
            print(f"{name}: {len(requests)} request(s): " + ", ".join(shorten(request.url) for request in requests))
    return timings, floor


def shorten(url: str) -> str:
    """The path under the Web API root, its middle elided when long."""
    path = httpx2.URL(url).path.split("/api/data/", 1)[-1].partition("/")[2]
    return path if len(path) <= 60 else f"{path[:20]}…{path[-36:]}"


def milliseconds(samples: list[float]) -> str:
    return f"{median(samples):.2f}" if samples else "-"


def ratio_of(samples: list[float], baseline: list[float]) -> str:
    return ratio(median(samples), median(baseline)) if samples else "-"


def row(name: str, timing: Timings) -> list[str]:
    memory = [milliseconds(timing.memory), ratio_of(timing.memory, timing.bare)]
    stdio = [milliseconds(timing.stdio), ratio_of(timing.stdio, timing.bare)]
    return [name, milliseconds(timing.bare), *memory, *stdio]


def report(timings: dict[str, Timings], floor: Timings, runs: int) -> None:
    rows = [row(name, timing) for name, timing in timings.items()]
    rows.append(["(minimal server's echo)", "-", milliseconds(floor.memory), "-", milliseconds(floor.stdio), "-"])
    print()
    print(f"median of {runs} runs, milliseconds; target: tool / bare <= {TARGET}x")
    print_table(["tool", "bare ms", "in-memory ms", "ratio", "stdio ms", "ratio"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100, help="timed calls per tool and path (default: 100)")
    parser.add_argument("--quick", action="store_true", help="20 runs")
    parser.add_argument("--only", choices=[name for name, _, _ in CALLS], help="time this call alone (after warm-up)")
    parser.add_argument("--in-memory", action="store_true", help="leave out stdio (to profile in-process work)")
    arguments = parser.parse_args()
    options = Options(20 if arguments.quick else arguments.runs, arguments.only, stdio=not arguments.in_memory)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as directory, SandboxProcess(Path(directory)) as sandbox:
        timings, floor = asyncio.run(measure(sandbox, options, Path(directory)))
    report(timings, floor, options.runs)


if __name__ == "__main__":
    main()
