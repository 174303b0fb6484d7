"""200 concurrent tool calls over streamable HTTP from 10 users: throughput, latency percentiles, errors.

The sandbox (Web API and identity provider) and the server each run in their own process, the server as
deployed: `dynamics-mcp serve --transport http`, on-behalf-of against the sandbox's identity provider. Each
user holds a token for the server (minted with the sandbox's identity key, as its identity provider would
issue it), opens one MCP client, and sends its share of the calls at once. The first round includes every
user's on-behalf-of exchange and metadata load (cold); the later rounds are warm. A result whose rows belong to
another user counts as an error.

    python -m bench.load [--runs N] [--calls 200] [--users 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sandbox import USERS, IdentitySecrets, SigningKey, find_user, mint_token, read_endpoints

from ._figures import median, print_table
from ._sandbox_process import SandboxProcess

MCP_SERVER_APP: Final = "c0000000-0000-4000-8000-000000000003"
CALL: Final = ("query_records", {"table": "account", "select": ["name", "ownerid"], "top": 10})


def contoso_users(count: int) -> list[str]:
    users = [user.name for user in USERS if user.role_in("contoso") and user.application_id is None]
    if count > len(users):
        raise SystemExit(f"the sandbox has {len(users)} users in contoso; --users {count} is too many")
    return users[:count]


@contextmanager
def http_server(data_dir: Path) -> Iterator[str]:
    """`dynamics-mcp serve --transport http` configured as an operator would, stopped on exit."""
    endpoints = read_endpoints(data_dir)
    authority = str(endpoints["authority"])
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("DATAVERSE_", "AZURE_"))},
        "DATAVERSE_URL": endpoints["environments"]["contoso"],
        "AZURE_TENANT_ID": str(endpoints["tenant"]),
        "AZURE_CLIENT_ID": MCP_SERVER_APP,
        "AZURE_CLIENT_SECRET": IdentitySecrets.load_or_create(data_dir).client_secrets[MCP_SERVER_APP],
        "AZURE_AUTHORITY_HOST": authority.rsplit("/", 1)[0],
        "SSL_CERT_FILE": str(endpoints["ca"]),
    }
    command = [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            found = re.search(r"streamable HTTP at (\S+)", line)
            if found:
                break
        else:
            raise RuntimeError("the server exited before listening")
        # Keep reading what it logs, so that a full pipe never blocks the server mid-measurement.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def one_round(url: str, tokens: dict[str, str], calls: int) -> tuple[list[float], int, float]:
    """Every user's share of `calls` at once; returns latencies (ms), errors, and the round's wall time (s)."""
    latencies: list[float] = []
    errors = 0
    per_user = calls // len(tokens)

    async def user_session(user: str, token: str) -> None:
        nonlocal errors
        person = find_user(user)
        assert person is not None
        sees_own_rows_only = person.role_in("contoso") == "Salesperson"
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):

            async def call() -> None:
                nonlocal errors
                started = time.perf_counter()
                result = await client.call_tool(*CALL)
                latencies.append((time.perf_counter() - started) * 1000)
                rows: list[dict[str, Any]] = (result.structured_content or {}).get("rows", [])
                # A salesperson sees only the rows they own; an administrator or a reader sees everyone's.
                foreign = sees_own_rows_only and any(row["ownerid"]["name"] != person.full_name for row in rows)
                errors += bool(result.is_error or foreign)

            await asyncio.gather(*(call() for _ in range(per_user)))

    started = time.perf_counter()
    await asyncio.gather(*(user_session(user, token) for user, token in tokens.items()))
    return latencies, errors, time.perf_counter() - started


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(url: str, tokens: dict[str, str], calls: int, runs: int) -> list[list[str]]:
    rows = []
    for run in range(runs + 1):
        latencies, errors, wall = await one_round(url, tokens, calls)
        rows.append(
            [
                "cold (first round)" if run == 0 else f"warm {run}",
                str(len(latencies)),
                str(errors),
                f"{len(latencies) / wall:.0f}",
                f"{median(latencies):.0f}",
                f"{percentile(latencies, 0.95):.0f}",
                f"{percentile(latencies, 0.99):.0f}",
                f"{wall:.2f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm rounds after the cold one (default 3)")
    parser.add_argument("--calls", type=int, default=200, help="tool calls per round (default 200)")
    parser.add_argument("--users", type=int, default=10, help="distinct signed-in users (default 10)")
    arguments = parser.parse_args()
    users = contoso_users(arguments.users)
    with tempfile.TemporaryDirectory(prefix="dynamics-mcp-bench-") as directory:
        data_dir = Path(directory)
        with SandboxProcess(data_dir):
            endpoints = read_endpoints(data_dir)
            key = SigningKey.load_or_create(data_dir)
            authority = str(endpoints["authority"])
            tokens = {
                user: mint_token(key, user, f"api://{MCP_SERVER_APP}", authority, lifetime=3600) for user in users
            }
            with http_server(data_dir) as url:
                rows = asyncio.run(measure(url, tokens, arguments.calls, arguments.runs))
    print(f"{arguments.calls} concurrent query_records calls per round from {len(users)} users over streamable HTTP")
    headers = ["round", "calls", "errors", "calls/s", "p50 ms", "p95 ms", "p99 ms", "wall s"]
    print_table(headers, rows)
    errors = sum(int(row[2]) for row in rows)
    print(f"errors: {errors} (target: none)")


if __name__ == "__main__":
    main()
