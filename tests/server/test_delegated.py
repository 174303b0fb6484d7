"""A signed-in user on stdio with no environment configured: their environments come from Global Discovery."""

from __future__ import annotations

from mcp import Client

from sandbox import Sandbox
from server import build_server, load_settings

from ..tools.support import structured

MCP_CLIENT_APP = "c0000000-0000-4000-8000-000000000004"


async def test_a_delegated_user_works_in_the_environments_discovery_lists(sandbox: Sandbox) -> None:
    settings = load_settings(
        None,
        auth="password",
        username="alice",
        password=sandbox.identity.secrets.passwords["alice"],
        client_id=MCP_CLIENT_APP,
        tenant_id=sandbox.authority.rsplit("/", 1)[1],
        authority_host=sandbox.identity.base_url,
        ca_bundle=sandbox.ca_file,
        discovery_url=sandbox.discovery_url,
    )
    async with Client(build_server(settings)) as client:
        listed = structured(await client.call_tool("list_environments", {}))["environments"]
        rows = structured(
            await client.call_tool(
                "query_records", {"environment": "fabrikam", "table": "account", "select": ["ownerid"]}
            )
        )["rows"]
    assert sorted(environment["url"] for environment in listed) == sorted(
        environment.url for environment in sandbox.environments.values()
    )
    assert rows and {row["ownerid"]["name"] for row in rows} == {"Alice Anders"}
