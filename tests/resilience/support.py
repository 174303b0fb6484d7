"""The server against a sandbox that fails on purpose, and what the sandbox holds once the faults are gone."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
from mcp import types
from mcp.server.mcpserver import MCPServer

from dataverse import RetryPolicy
from sandbox import Sandbox
from server import build_server

from ..dataverse.support import RecordedSleep
from ..tools.support import error_text, settings_for

API = "/api/data/v9.2"


def instant_retries(max_attempts: int = 6) -> tuple[RetryPolicy, RecordedSleep]:
    """The default retry policy on a clock that records each wait instead of waiting."""
    sleep = RecordedSleep()
    return RetryPolicy(max_attempts=max_attempts, sleep=sleep, jitter=lambda: 0.5), sleep


def faulty_server(sandbox: Sandbox, retry: RetryPolicy, user: str = "admin", **overrides: Any) -> MCPServer[Any]:
    """The real server for `user` on the sandbox's contoso environment, with `retry` as its retry policy."""
    return build_server(settings_for(sandbox, user, **overrides), retry=retry)


def user_message(result: types.CallToolResult, *parts: str) -> str:
    """The error a user reads: it says each of `parts` and holds no token (every token is a JWT: eyJ...)."""
    message = error_text(result)
    for part in parts:
        assert part in message, message
    assert "Bearer" not in message and "eyJ" not in message, message
    return message


async def rows(sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, query: str) -> list[dict[str, Any]]:
    """The rows the sandbox holds, read as the administrator once every fault is cleared."""
    sandbox.faults.clear()
    response = await http.get(
        f"{sandbox.environments['contoso'].url}{API}/{entity_set}?{query}",
        headers={"Authorization": f"Bearer {sandbox.token()}"},
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["value"]
    return found


async def named(sandbox: Sandbox, http: httpx2.AsyncClient, name: str) -> list[dict[str, Any]]:
    """The accounts called `name`."""
    return await rows(sandbox, http, "accounts", f"$select=name,telephone1&$filter=name eq '{name}'")


async def first_account(sandbox: Sandbox, http: httpx2.AsyncClient) -> dict[str, Any]:
    return (await rows(sandbox, http, "accounts", "$select=name,telephone1&$orderby=name&$top=1"))[0]


def answered(sandbox: Sandbox, method: str) -> int:
    """How many `method` requests to the Web API the sandbox has finished (answered or dropped)."""
    return sum(1 for record in sandbox.request_log.records if record.method == method)


async def settled(sandbox: Sandbox, method: str, count: int) -> None:
    """Wait until the sandbox has finished `count` requests of `method`, even those the client gave up on."""
    with anyio.fail_after(10):
        await sandbox.request_log.wait_until(
            lambda records: sum(1 for record in records if record.method == method) >= count
        )
