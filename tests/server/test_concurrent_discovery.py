"""Global Discovery under concurrency: one user's cold calls share one request; two users never share one."""

from __future__ import annotations

import anyio
from mcp import Client

from sandbox import Sandbox
from server._http import running

from ..tools.support import structured
from .test_http import connect, http_settings, sign_in

OBJECT_IDS = {"alice": "a0000000-0000-4000-8000-000000000002", "bob": "a0000000-0000-4000-8000-000000000003"}


async def test_a_users_concurrent_cold_calls_make_one_discovery_request_of_their_own(sandbox: Sandbox) -> None:
    tokens = {user: await sign_in(sandbox, user) for user in OBJECT_IDS}
    found: dict[str, list[list[str]]] = {user: [] for user in OBJECT_IDS}

    async def list_environments(client: Client, user: str) -> None:
        listed = structured(await client.call_tool("list_environments", {}))["environments"]
        found[user].append(sorted(environment["url"] for environment in listed))

    async def ten_calls_of(url: str, user: str) -> None:
        async with connect(url, tokens[user]) as client, anyio.create_task_group() as calls:
            for _ in range(10):
                calls.start_soon(list_environments, client, user)

    async with running(http_settings(sandbox, environments=False)) as url:
        sandbox.request_log.records.clear()
        async with anyio.create_task_group() as users:
            for user in OBJECT_IDS:
                users.start_soon(ten_calls_of, url, user)
    discovery = [record for record in sandbox.request_log.as_json() if record["path"].endswith("/Instances")]
    contoso, fabrikam = sandbox.environments["contoso"].url, sandbox.environments["fabrikam"].url
    assert sorted(record["object_id"] for record in discovery) == sorted(OBJECT_IDS.values())
    assert found == {"alice": [sorted([contoso, fabrikam])] * 10, "bob": [[contoso]] * 10}
