"""The token runs out mid-session: a renewable one is renewed once and the call goes on; a fixed one fails clearly."""

from __future__ import annotations

import httpx2
from mcp import Client

from sandbox import TENANT_ID, Sandbox
from server import build_server, load_settings

from ..tools.support import structured
from .support import faulty_server, first_account, instant_retries, user_message

INTEGRATION_APP = "c0000000-0000-4000-8000-000000000001"


async def test_an_expired_token_is_renewed_once_and_the_write_lands_once(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    secret = sandbox.identity.secrets.client_secrets[INTEGRATION_APP]
    settings = load_settings(
        None,
        url=sandbox.environments["contoso"].url,
        auth="client-secret",
        tenant_id=str(TENANT_ID),
        client_id=INTEGRATION_APP,
        client_secret=secret,
        authority_host=sandbox.identity.base_url,
        ca_bundle=sandbox.ca_file,
    )
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(build_server(settings, retry=retry)) as client:
        structured(await client.call_tool("get_record", {"table": "account", "id": account["accountid"]}))
        sandbox.expire_tokens()
        sandbox.request_log.records.clear()
        updated = structured(
            await client.call_tool(
                "update_record",
                {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0166"}},
            )
        )
    assert updated["id"] == account["accountid"]
    first, *rest = sandbox.request_log.records
    assert (first.method, first.status) == ("PATCH", 401)
    assert [(record.method, record.status) for record in rest] == [("PATCH", 200)]
    assert rest[0].token_sha256 != first.token_sha256  # sent again with a new token
    assert (await first_account(sandbox, http))["telephone1"] == "555-0166"


async def test_an_expired_token_that_cannot_be_renewed_fails_clearly_and_writes_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    account = await first_account(sandbox, http)
    retry, _ = instant_retries()
    async with Client(faulty_server(sandbox, retry)) as client:
        structured(await client.call_tool("get_record", {"table": "account", "id": account["accountid"]}))
        sandbox.expire_tokens()
        result = await client.call_tool(
            "update_record", {"table": "account", "id": account["accountid"], "values": {"telephone1": "555-0167"}}
        )
    user_message(result, "401", "The access token has expired.", "Nothing was written.", "sign in again")
    assert [record.status for record in sandbox.request_log.records if record.method == "PATCH"] == [401, 401]
    assert (await first_account(sandbox, http))["telephone1"] == account["telephone1"]
