"""Read-only mode at the one place every request passes: a read-only client sends no write, however reached."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import pytest

from dataverse import NOTHING_WRITTEN, DataverseClient, ODataQuery, WriteRefused
from sandbox import Sandbox
from server._app import open_environments

from ..tools.support import settings_for
from .support import RotatingTokens

WRITES: dict[str, Callable[[DataverseClient, str], Awaitable[Any]]] = {
    "create": lambda client, row_id: client.create("account", {"name": "Read-only", "accountid": row_id}),
    "update": lambda client, row_id: client.update("account", row_id, {"name": "Read-only"}),
    "upsert": lambda client, row_id: client.upsert("account", row_id, {"name": "Read-only"}),
    "delete": lambda client, row_id: client.delete("account", row_id),
}


def sent_writes(sandbox: Sandbox) -> list[str]:
    return [record.method for record in sandbox.request_log.records if record.method not in ("GET", "HEAD")]


async def first_account_id(client: DataverseClient) -> str:
    async for page in client.query("account", ODataQuery(select=["accountid"], top=1)):
        return str(page.rows[0]["accountid"])
    raise AssertionError("the sandbox has accounts")


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_read_only_client_refuses_each_write_before_asking_for_a_token(
    sandbox: Sandbox, http: httpx2.AsyncClient, write: str
) -> None:
    tokens = RotatingTokens([sandbox.token()])
    client = DataverseClient(http, sandbox.environments["contoso"].url, tokens, read_only=True)
    row_id = await first_account_id(client)  # reads still work
    asked = tokens.calls
    with pytest.raises(WriteRefused) as refused:
        await WRITES[write](client, row_id)
    assert "read-only" in str(refused.value) and NOTHING_WRITTEN in str(refused.value)
    assert not refused.value.may_have_written
    assert tokens.calls == asked
    assert sent_writes(sandbox) == []


async def test_a_request_that_says_it_only_reads_is_sent_by_a_read_only_transport(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    client = DataverseClient(
        http, sandbox.environments["contoso"].url, RotatingTokens([sandbox.token()]), read_only=True
    )
    url = client.transport.url("WhoAmI")
    with pytest.raises(WriteRefused):
        await client.transport.send("POST", url, repeatability="unsafe")
    assert sent_writes(sandbox) == []
    outcome = await client.transport.send("POST", url, repeatability="unsafe", reads=True)
    assert outcome.response.json()["UserId"]
    assert sent_writes(sandbox) == ["POST"]


async def test_a_read_only_server_builds_clients_that_refuse_writes(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    async with AsyncExitStack() as stack:
        environments = await open_environments(settings_for(sandbox, read_only=True), http, stack)
        client = (await environments.open(None)).client
        with pytest.raises(WriteRefused):
            await client.create("account", {"name": "Reached another way"})
    assert sent_writes(sandbox) == []
