"""The Global Discovery service: which environments the signed-in user can reach.

`GET <discovery>/api/discovery/v2.0/Instances` with a token for the discovery service itself
(scope `<discovery base URL>/user_impersonation`). Each cloud has its own host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httpx2

from ._tokens import TokenProvider
from ._transport import Transport, service_url

# Global Discovery hosts by cloud, keyed by the Entra ID authority host that signs users in there.
DISCOVERY_BY_AUTHORITY: Final = {
    "login.microsoftonline.com": "https://globaldisco.crm.dynamics.com",  # commercial and GCC
    "login.microsoftonline.us": "https://globaldisco.crm9.dynamics.com",  # US Government (GCC High)
    "login.chinacloudapi.cn": "https://globaldisco.crm.dynamics.cn",  # operated by 21Vianet
}
# Other clouds whose discovery host is not the commercial one (authority shared with GCC High).
DISCOVERY_HOSTS: Final = {
    "public": "https://globaldisco.crm.dynamics.com",
    "gcc": "https://globaldisco.crm9.dynamics.com",
    "gcc-high": "https://globaldisco.crm.microsoftdynamics.us",
    "dod": "https://globaldisco.crm.appsplatform.us",
    "china": "https://globaldisco.crm.dynamics.cn",
}
DEFAULT_DISCOVERY_URL: Final = DISCOVERY_HOSTS["public"]


@dataclass(frozen=True)
class Instance:
    """An environment the user can use."""

    id: str
    unique_name: str
    url_name: str
    friendly_name: str
    url: str
    api_url: str
    version: str
    state: int
    environment_id: str | None
    tenant_id: str | None
    region: str | None
    purpose: str | None


def discovery_scope(discovery_url: str) -> str:
    return f"{discovery_url.rstrip('/')}/user_impersonation"


async def list_instances(http: httpx2.AsyncClient, discovery_url: str, tokens: TokenProvider) -> list[Instance]:
    """The environments the token's user may use, from Global Discovery."""
    transport = Transport(http, f"{service_url(discovery_url)}/api/discovery/v2.0", tokens)
    outcome = await transport.send("GET", transport.url("Instances"), repeatability="safe")
    return [
        Instance(
            id=str(item["Id"]),
            unique_name=str(item.get("UniqueName") or ""),
            url_name=str(item.get("UrlName") or ""),
            friendly_name=str(item.get("FriendlyName") or item.get("UniqueName") or ""),
            url=str(item["Url"]),
            api_url=str(item.get("ApiUrl") or item["Url"]),
            version=str(item.get("Version") or ""),
            state=int(item.get("State") or 0),
            environment_id=item.get("EnvironmentId"),
            tenant_id=item.get("TenantId"),
            region=item.get("Region"),
            purpose=item.get("Purpose"),
        )
        for item in outcome.response.json().get("value") or []
    ]
