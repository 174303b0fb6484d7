"""The Global Discovery service lists the environments a user may use."""

from __future__ import annotations

import httpx2

from sandbox import Sandbox

from .support import ODATA_HEADERS


async def instances(sandbox: Sandbox, http: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await http.get(
        sandbox.discovery_url + "/api/discovery/v2.0/Instances",
        headers={**ODATA_HEADERS, "Authorization": f"Bearer {token}"},
    )


async def test_each_user_sees_the_environments_they_belong_to(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    admin = (await instances(sandbox, http, sandbox.discovery_token("admin"))).json()["value"]
    bob = (await instances(sandbox, http, sandbox.discovery_token("bob"))).json()["value"]
    erin = (await instances(sandbox, http, sandbox.discovery_token("erin"))).json()["value"]
    assert {instance["UrlName"] for instance in admin} == {"contoso", "fabrikam"}
    assert [instance["Url"] for instance in bob] == [sandbox.environments["contoso"].url]
    assert erin == []
    assert all(instance["IsUserSysAdmin"] for instance in admin)
    assert {
        "Id",
        "UniqueName",
        "FriendlyName",
        "ApiUrl",
        "Version",
        "EnvironmentId",
        "TenantId",
        "State",
    } <= set(admin[0])


async def test_discovery_wants_a_token_for_itself(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    response = await instances(sandbox, http, sandbox.token("admin", "contoso"))
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
