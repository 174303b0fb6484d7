"""Streamable HTTP for many users: each caller signs in, and Dataverse sees them, never their token.

Real HTTP on loopback end to end: the MCP `Client` over streamable HTTP, the server in this process,
real MSAL exchanging tokens on-behalf-of with the sandbox's identity provider over TLS, the sandbox Web API.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from auth import Authority, PasswordCredential
from sandbox import Sandbox
from server import ServerSettings, load_settings
from server._http import running

from ..tools.support import error_text, structured

MCP_SERVER_APP = "c0000000-0000-4000-8000-000000000003"
MCP_CLIENT_APP = "c0000000-0000-4000-8000-000000000004"
CONTOSO_USERS = ["admin", "alice", "bob", "carol", "frank", "grace", "heidi", "ivan", "judy", "kevin"]
FULL_NAMES = {"alice": "Alice Anders", "bob": "Bob Baker", "frank": "Frank Fisher", "grace": "Grace Gomez"}


def tenant(sandbox: Sandbox) -> str:
    return sandbox.authority.rsplit("/", 1)[1]


def http_settings(sandbox: Sandbox, *, environments: bool = True, **overrides: Any) -> ServerSettings:
    """The server's own app registration in the sandbox tenant, as an operator configures it."""
    configured = [{"name": "contoso", "url": sandbox.environments["contoso"].url}] if environments else []
    return load_settings(
        None,
        environments=configured,
        tenant_id=tenant(sandbox),
        client_id=MCP_SERVER_APP,
        client_secret=sandbox.identity.secrets.client_secrets[MCP_SERVER_APP],
        authority_host=sandbox.identity.base_url,
        ca_bundle=sandbox.ca_file,
        discovery_url=sandbox.discovery_url,
        **overrides,
    )


async def sign_in(sandbox: Sandbox, user: str) -> str:
    """A user's token for the MCP server, obtained by the client app with real MSAL."""
    credential = PasswordCredential(
        MCP_CLIENT_APP,
        user,
        sandbox.identity.secrets.passwords[user],
        Authority(sandbox.identity.base_url, tenant(sandbox)),
        ca_bundle=str(sandbox.ca_file),
    )
    try:
        return (await credential.token(f"api://{MCP_SERVER_APP}/user_impersonation")).token
    finally:
        credential.close()


@asynccontextmanager
async def connect(url: str, token: str | None, mode: str = "2026-07-28") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def dataverse_requests(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [record for record in sandbox.request_log.as_json() if record["site"] != "discovery"]


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_each_user_sees_only_their_own_rows(sandbox: Sandbox, mode: str) -> None:
    alice, bob = await sign_in(sandbox, "alice"), await sign_in(sandbox, "bob")
    owners: dict[str, set[str]] = {}
    async with running(http_settings(sandbox)) as url:

        async def owners_seen_by(user: str, token: str) -> None:
            async with connect(url, token, mode) as client:
                result = await client.call_tool("query_records", {"table": "account", "select": ["name", "ownerid"]})
                owners[user] = {row["ownerid"]["name"] for row in structured(result)["rows"]}

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(owners_seen_by, "alice", alice)
            tasks.start_soon(owners_seen_by, "bob", bob)
    assert owners == {"alice": {"Alice Anders"}, "bob": {"Bob Baker"}}


async def test_a_user_without_write_privilege_gets_a_clear_error_and_nothing_is_written(
    sandbox: Sandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    carol, alice = await sign_in(sandbox, "carol"), await sign_in(sandbox, "alice")
    caplog.set_level(logging.INFO, logger="dynamics_mcp.audit")
    async with running(http_settings(sandbox)) as url:
        async with connect(url, carol) as client:
            refused = error_text(
                await client.call_tool("create_record", {"table": "account", "values": {"name": "Carol's try"}})
            )
        async with connect(url, alice) as client:
            created = structured(
                await client.call_tool("create_record", {"table": "account", "values": {"name": "Alice's lead"}})
            )
    assert "prvCreateAccount" in refused and "privilege" in refused.lower()
    found = await http.get(
        f"{sandbox.environments['contoso'].url}/api/data/v9.2/accounts",
        params={"$filter": "name eq 'Carol''s try'"},
        headers={"Authorization": f"Bearer {sandbox.token('admin')}"},
    )
    assert found.json()["value"] == []
    audit = [record.getMessage() for record in caplog.records if record.name == "dynamics_mcp.audit"]
    assert [line.split(" id=")[0] for line in audit] == [
        'create_record outcome="not written" reason=refused table=account',
        "create_record outcome=written table=account",
    ]
    assert audit[0].endswith(" environment=contoso user=carol@contoso.example")
    assert audit[1].endswith(f" id={created['id']} environment=contoso user=alice@contoso.example")


def _claims(sandbox: Sandbox, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "aud": f"api://{MCP_SERVER_APP}",
        "iss": sandbox.identity.issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "oid": "a0000000-0000-4000-8000-000000000002",
        "tid": tenant(sandbox),
        "scp": "user_impersonation",
        "azp": MCP_CLIENT_APP,
    }
    return {**claims, **changes}


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    return ".".join((header, payload, ("A" if signature[0] != "A" else "B") + signature[1:]))


def _foreign_key_token(sandbox: Sandbox) -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = _claims(sandbox, iss="https://login.example.invalid/other/v2.0")
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "someone-else"})


REFUSED = {
    "no token": lambda sandbox, valid: None,
    "expired": lambda sandbox, valid: sandbox.signing_key.sign(_claims(sandbox, exp=int(time.time()) - 600)),
    "not yet valid": lambda sandbox, valid: sandbox.signing_key.sign(_claims(sandbox, nbf=int(time.time()) + 600)),
    "for another audience": lambda sandbox, valid: sandbox.token("alice"),
    "from another issuer": lambda sandbox, valid: sandbox.signing_key.sign(
        _claims(sandbox, iss="https://login.example.invalid/other/v2.0")
    ),
    "signed by another key": lambda sandbox, valid: _foreign_key_token(sandbox),
    "with a tampered signature": lambda sandbox, valid: _tampered(valid),
    "from another tenant": lambda sandbox, valid: sandbox.signing_key.sign(
        _claims(sandbox, tid="99999999-0000-4000-8000-000000000000")
    ),
    "of an app, not a user": lambda sandbox, valid: sandbox.signing_key.sign(_claims(sandbox, scp=None, roles=[])),
    "not a JWT": lambda sandbox, valid: "not-a-token",
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_bad_token_gets_401_naming_the_metadata_and_dataverse_sees_nothing(
    sandbox: Sandbox, http: httpx2.AsyncClient, case: str
) -> None:
    token = REFUSED[case](sandbox, await sign_in(sandbox, "alice"))
    sandbox.request_log.records.clear()
    async with running(http_settings(sandbox)) as url:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_tables", "arguments": {}}}
        response = await http.post(f"{url}/mcp", json=body, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert dataverse_requests(sandbox) == []


async def test_a_key_the_authority_publishes_later_is_accepted_without_restart(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sandbox._tokens import SigningKey

    rotated, unknown = (SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048)) for _ in range(2))
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

    async def status(url: str, token: str) -> int:
        response = await http.post(f"{url}/mcp", json=body, headers={**headers, "Authorization": f"Bearer {token}"})
        return response.status_code

    async with running(http_settings(sandbox)) as url:
        before = await status(url, sandbox.signing_key.sign(_claims(sandbox)))
        sandbox.identity.announced_keys.append(rotated)
        published = await status(url, rotated.sign(_claims(sandbox)))
        unpublished = await status(url, unknown.sign(_claims(sandbox)))
    assert (before, published, unpublished) == (200, 200, 401)


async def test_protected_resource_metadata_and_health(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    async with running(http_settings(sandbox)) as url:
        metadata = (await http.get(f"{url}/.well-known/oauth-protected-resource/mcp")).json()
        health = await http.get(f"{url}/healthz")
    assert metadata["resource"] == f"{url}/mcp"
    assert metadata["authorization_servers"] == [sandbox.identity.issuer]
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_dataverse_only_ever_receives_on_behalf_of_tokens(sandbox: Sandbox) -> None:
    tokens = {user: await sign_in(sandbox, user) for user in ("alice", "bob")}
    sandbox.request_log.records.clear()
    async with running(http_settings(sandbox, environments=False)) as url:
        for token in tokens.values():
            async with connect(url, token) as client:
                structured(await client.call_tool("list_environments", {}))
                structured(
                    await client.call_tool("query_records", {"table": "contact", "top": 3, "environment": "contoso"})
                )
    records = sandbox.request_log.as_json()
    assert {record["site"] for record in records} >= {"discovery", "contoso"}
    incoming = {hashlib.sha256(token.encode()).hexdigest() for token in tokens.values()}
    assert all(record["token_sha256"] not in incoming for record in records)
    assert {record["client_id"] for record in records} == {MCP_SERVER_APP}
    assert {record["object_id"] for record in records} == {
        "a0000000-0000-4000-8000-000000000002",
        "a0000000-0000-4000-8000-000000000003",
    }


async def test_list_environments_comes_from_global_discovery_per_user(sandbox: Sandbox) -> None:
    found: dict[str, list[str]] = {}
    async with running(http_settings(sandbox, environments=False)) as url:
        for user in ("alice", "bob", "erin"):
            async with connect(url, await sign_in(sandbox, user)) as client:
                listed = structured(await client.call_tool("list_environments", {}))["environments"]
                found[user] = sorted(environment["url"] for environment in listed)
    contoso, fabrikam = sandbox.environments["contoso"].url, sandbox.environments["fabrikam"].url
    assert found == {"alice": sorted([contoso, fabrikam]), "bob": [contoso], "erin": []}


async def test_host_and_origin_must_name_the_server(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    token = await sign_in(sandbox, "alice")
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with running(http_settings(sandbox)) as url:
        rebound = await http.post(f"{url}/mcp", json=body, headers={**headers, "Host": "attacker.example"})
        cross_origin = await http.post(f"{url}/mcp", json=body, headers={**headers, "Origin": "https://evil.example"})
    assert rebound.status_code == 421
    assert cross_origin.status_code == 403


async def test_200_concurrent_calls_from_10_users_stay_apart(sandbox: Sandbox) -> None:
    tokens = {user: await sign_in(sandbox, user) for user in CONTOSO_USERS}
    for user in ("frank", "grace"):  # new hires own nothing yet: give them a row each, so a mix-up would show
        await sandbox_create(sandbox, user)
    mismatches: list[str] = []
    calls = 0
    async with running(http_settings(sandbox)) as url:

        async def session(user: str) -> None:
            nonlocal calls
            async with connect(url, tokens[user]) as client, anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(one_call, user, client)

        async def one_call(user: str, client: Client) -> None:
            nonlocal calls
            result = await client.call_tool("query_records", {"table": "account", "select": ["ownerid"], "top": 5})
            calls += 1
            owners = {row["ownerid"]["name"] for row in structured(result)["rows"]}
            if user in FULL_NAMES and owners != {FULL_NAMES[user]}:
                mismatches.append(user)

        async with anyio.create_task_group() as tasks:
            for user in CONTOSO_USERS:
                tasks.start_soon(session, user)
    assert calls == 200 and mismatches == []


async def sandbox_create(sandbox: Sandbox, user: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{sandbox.environments['contoso'].url}/api/data/v9.2/accounts",
            json={"name": f"{user}'s first account"},
            headers={"Authorization": f"Bearer {sandbox.token(user)}"},
        )
    assert response.status_code == 204


async def test_a_non_loopback_host_needs_callers_to_sign_in(sandbox: Sandbox) -> None:
    from server import ConfigurationError
    from server._http import http_app

    shared = load_settings(None, url=sandbox.environments["contoso"].url, access_token=sandbox.token("admin"))
    with pytest.raises(ConfigurationError, match="needs each caller to sign in"):
        http_app(shared, "0.0.0.0", 8000)  # noqa: S104 - the point: refused before anything binds


async def test_scopes_required_per_tool_and_for_the_whole_server(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    alice = await sign_in(sandbox, "alice")  # her token grants user_impersonation only
    per_tool = http_settings(sandbox, tool_scopes={"create_record": ["Records.Write"]})
    async with running(per_tool) as url, connect(url, alice) as client:
        refused = error_text(
            await client.call_tool("create_record", {"table": "account", "values": {"name": "Needs a scope"}})
        )
        allowed = structured(await client.call_tool("query_records", {"table": "account", "top": 1}))
    assert "create_record needs the scope Records.Write" in refused and "nothing was done" in refused
    assert len(allowed["rows"]) == 1
    assert not [record for record in sandbox.request_log.as_json() if record["method"] == "POST"]

    whole = http_settings(sandbox, required_scopes="Dataverse.Access")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {
        "Authorization": f"Bearer {alice}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with running(whole) as url:
        response = await http.post(f"{url}/mcp", json=body, headers=headers)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(("mode", "deleted"), [("2026-07-28", True), ("legacy", False)])
async def test_delete_is_confirmed_by_the_user_over_stateless_http(sandbox: Sandbox, mode: str, deleted: bool) -> None:
    """The 2026-07-28 protocol asks the user within the request; a legacy client without a session must confirm."""
    from ..tools.test_session import answering

    alice = await sign_in(sandbox, "alice")
    async with (
        running(http_settings(sandbox)) as url,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {alice}"}, timeout=30) as http,
        Client(
            streamable_http_client(f"{url}/mcp", http_client=http), mode=mode, elicitation_callback=answering("accept")
        ) as client,
    ):
        created = structured(await client.call_tool("create_record", {"table": "account", "values": {"name": "Gone"}}))
        result = await client.call_tool("delete_record", {"table": "account", "id": created["id"]})
        remaining = structured(
            await client.call_tool("query_records", {"table": "account", "filter": "name eq 'Gone'"})
        )
    if deleted:
        assert structured(result)["deleted"] is True and remaining["rows"] == []
    else:
        assert "call delete_record again with confirm: true" in error_text(result)
        assert [row["accountid"] for row in remaining["rows"]] == [created["id"]]


async def test_a_users_concurrent_cold_calls_make_one_exchange_and_one_metadata_request(sandbox: Sandbox) -> None:
    alice = await sign_in(sandbox, "alice")
    async with running(http_settings(sandbox)) as url, connect(url, alice) as client:
        exchanges_before = sandbox.identity.requests
        sandbox.request_log.records.clear()
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(client.call_tool, "describe_table", {"table": "contact"})
        exchanges = sandbox.identity.requests - exchanges_before
    metadata = [record for record in dataverse_requests(sandbox) if "LogicalName='contact'" in record["path"]]
    assert exchanges == 1
    assert len([record for record in metadata if record["path"].endswith("(LogicalName='contact')")]) == 1


async def test_a_cursor_replayed_by_another_user_is_refused(sandbox: Sandbox) -> None:
    alice, admin = await sign_in(sandbox, "alice"), await sign_in(sandbox, "admin")
    async with running(http_settings(sandbox)) as url:
        async with connect(url, admin) as client:
            first = structured(
                await client.call_tool("query_records", {"table": "account", "select": ["name"], "page_size": 2})
            )
        async with connect(url, alice) as client:
            replayed = error_text(await client.call_tool("query_records", {"cursor": first["cursor"]}))
        async with connect(url, admin) as client:
            resumed = structured(await client.call_tool("query_records", {"cursor": first["cursor"]}))
    assert "cursor is not valid" in replayed
    assert len(resumed["rows"]) == 2


async def test_a_table_list_naming_no_table_refuses_that_environments_tools_over_http(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Over HTTP nothing reaches Dataverse before a user does: the entry is found wrong on first use."""
    alice = await sign_in(sandbox, "alice")
    caplog.set_level(logging.ERROR)
    async with running(http_settings(sandbox, denied_tables="contcat")) as url, connect(url, alice) as client:
        refused = error_text(await client.call_tool("query_records", {"table": "account"}))
        listed = error_text(await client.call_tool("list_tables", {}))
    assert "tools of environment contoso are refused" in refused and "refused" in listed
    assert "contcat" not in refused  # the configuration is the operator's, not the model's
    logged = [record.getMessage() for record in caplog.records if "table policy" in record.getMessage()]
    assert len(logged) == 1 and "'contcat'" in logged[0] and "'contact'" in logged[0]


async def test_change_tokens_and_search_results_stay_with_their_user(sandbox: Sandbox) -> None:
    alice, admin = await sign_in(sandbox, "alice"), await sign_in(sandbox, "admin")
    async with running(http_settings(sandbox)) as url:
        async with connect(url, admin) as client:
            token = structured(await client.call_tool("list_changes", {"table": "product"}))["token"]
            structured(await client.call_tool("create_record", {"table": "account", "values": {"name": "Vexillary"}}))
            admins = structured(await client.call_tool("search_records", {"search": "Vexillary"}))
        async with connect(url, alice) as client:
            replayed = error_text(await client.call_tool("list_changes", {"table": "product", "since": token}))
            alices = structured(await client.call_tool("search_records", {"search": "Vexillary"}))
    assert "not valid" in replayed
    assert [hit["name"] for hit in admins["hits"]] == ["Vexillary"]
    assert alices["hits"] == []  # the service answers each user for what that user may read
