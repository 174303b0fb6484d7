"""1,000 creates: in one write_records call, against 1,000 create_record calls, in one run against the sandbox.

The sandbox runs in its own process. Each way runs in a fresh worker process (this module with `--worker`),
configured by `DATAVERSE_URL` and `DATAVERSE_ACCESS_TOKEN`, with an in-memory MCP client and the real server: it
first warms the metadata cache (describe_table of the tables it writes), then clears the sandbox's request log,
times its calls, reads the log back (the HTTP requests the service received), and reads its own peak resident set
size; it also times how long it awaited the Web API's answers (the sandbox's own work, and loopback HTTP).
write_records runs three ways: creates of one table (CreateMultiple), creates that bind to a row created in
the same set (one `$batch` change set), and not atomically (`$batch` requests of 100 with continue-on-error).

    python -m bench.bulk [--writes N]
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
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Final, Literal

from ._figures import print_table, ratio
from ._sandbox_process import SandboxProcess

Way = Literal["single", "multiple", "change_set", "alone"]
WAYS: Final[dict[Way, str]] = {
    "single": "create_record, one call per row",
    "multiple": "write_records: one table (CreateMultiple)",
    "change_set": "write_records: bound to a row of the set (change set)",
    "alone": "write_records atomic=false ($batch of 100)",
}
TARGET: Final = 10.0


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def creates(way: Way, count: int) -> list[dict[str, Any]]:
    """`count` creates as write_records takes them; for the change set, an account and contacts bound to it."""
    if way != "change_set":
        return [{"action": "create", "table": "account", "values": {"name": f"Bulk {n}"}} for n in range(count)]
    account = str(uuid.uuid4())
    parent = {"table": "account", "id": account}
    first = {"action": "create", "table": "account", "id": account, "values": {"name": "Bulk parent"}}
    rest = [
        {"action": "create", "table": "contact", "values": {"lastname": f"Bulk {n}", "parentcustomerid": parent}}
        for n in range(count - 1)
    ]
    return [first, *rest]


# -- the worker: one way, in its own process ---------------------------------------------------------------------


async def run_worker(way: Way, count: int) -> dict[str, Any]:
    import httpx2
    from mcp import Client

    from server import build_server, load_settings

    control = os.environ["DATAVERSE_URL"] + "/_sandbox/requests"
    waited = [0.0]  # seconds spent waiting for the Web API's answers
    send = httpx2.AsyncClient.send

    async def timed_send(self: httpx2.AsyncClient, request: httpx2.Request, **options: Any) -> httpx2.Response:
        start = time.perf_counter()
        try:
            return await send(self, request, **options)
        finally:
            if "/api/data/" in request.url.path:
                waited[0] += time.perf_counter() - start

    httpx2.AsyncClient.send = timed_send  # type: ignore[method-assign]
    async with Client(build_server(load_settings(None)), cache=None) as client, httpx2.AsyncClient() as http:
        for table in ("account", "contact"):  # the metadata cache, as a session that described its tables has it
            await call(client, "describe_table", {"table": table})
        await http.delete(control)
        waited[0] = 0.0
        start = time.perf_counter()
        if way == "single":
            for write in creates(way, count):
                await call(client, "create_record", {"table": write["table"], "values": write["values"]})
        else:
            result = await call(client, "write_records", {"writes": creates(way, count), "atomic": way != "alone"})
            if result["written"] != count:
                raise RuntimeError(f"write_records wrote {result['written']} of {count}: {result}")
        seconds = time.perf_counter() - start
        log = (await http.get(control)).json()
    requests = Counter(f"{record['method']} {record['path'].rsplit('/', 1)[-1]}" for record in log)
    figures = {"seconds": seconds, "service": waited[0], "peak_mb": peak_rss_mb(), "requests": len(log)}
    return figures | {"by_kind": dict(requests)}


async def call(client: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    content: dict[str, Any] = result.structured_content
    return content


# -- the driver -----------------------------------------------------------------------------------------------


def measure(way: Way, sandbox: SandboxProcess, count: int) -> dict[str, Any]:
    environment = os.environ | {"DATAVERSE_URL": sandbox.url(), "DATAVERSE_ACCESS_TOKEN": sandbox.token()}
    command = [sys.executable, "-m", "bench.bulk", "--worker", way, "--writes", str(count)]
    finished = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, env=environment, capture_output=True, text=True, timeout=900, check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(f"the {way} worker failed:\n{finished.stderr}")
    figures: dict[str, Any] = json.loads(finished.stdout.splitlines()[-1])
    return figures


def report(results: dict[Way, dict[str, Any]], count: int) -> None:
    baseline = results["single"]["seconds"]
    rows = [
        [
            WAYS[way],
            f"{figures['seconds']:.2f}",
            f"{figures['service']:.2f}",
            ratio(baseline, figures["seconds"]),
            str(figures["requests"]),
            ", ".join(f"{n} {kind}" for kind, n in sorted(figures["by_kind"].items())),
            f"{figures['peak_mb']:.1f}",
        ]
        for way, figures in results.items()
    ]
    print(f"{count:,} creates, in memory over MCP, against the sandbox in its own process")
    print_table(["way", "seconds", "awaiting the service", "faster", "HTTP requests", "of which", "peak RSS MB"], rows)
    best = baseline / results["multiple"]["seconds"]
    verdict = "meets" if best >= TARGET else "misses"
    print(f"one write_records call is {best:.1f}x faster than {count:,} create_record calls: {verdict} >= {TARGET:g}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writes", type=int, default=1000, help="creates per way (default: 1,000; at most 1,000)")
    parser.add_argument("--worker", choices=list(WAYS), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        print(json.dumps(asyncio.run(run_worker(arguments.worker, arguments.writes))), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as directory, SandboxProcess(Path(directory)) as sandbox:
        results: dict[Way, dict[str, Any]] = {}
        for way, description in WAYS.items():
            print(f"{description}...", flush=True)
            results[way] = measure(way, sandbox, arguments.writes)
    report(results, arguments.writes)


if __name__ == "__main__":
    main()
