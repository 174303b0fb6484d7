"""Small helpers for talking to the sandbox's Web API in tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx2

from sandbox import Sandbox

ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}


def api(sandbox: Sandbox, environment: str = "contoso") -> str:
    return f"{sandbox.environments[environment].url}/api/data/v9.2"


def auth(sandbox: Sandbox, user: str = "admin", environment: str = "contoso", **extra: str) -> dict[str, str]:
    return {**ODATA_HEADERS, "Authorization": f"Bearer {sandbox.token(user, environment)}", **extra}


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


async def ask(
    sandbox: Sandbox,
    http: httpx2.AsyncClient,
    entity_set: str,
    option: str,
    text: str,
    user: str = "admin",
    **headers: str,
) -> httpx2.Response:
    """`GET <entity set>?<option>=<text>` as `user` (e.g. `$apply`, `fetchXml`)."""
    url = api(sandbox) + f"/{entity_set}?{option}=" + quote(text, safe="")
    return await http.get(url, headers=auth(sandbox, user, **headers))


async def rows_of(
    sandbox: Sandbox, http: httpx2.AsyncClient, entity_set: str, option: str, text: str, user: str = "admin"
) -> list[dict[str, Any]]:
    """The rows `ask` answers, which must be a success."""
    response = await ask(sandbox, http, entity_set, option, text, user)
    assert response.status_code == 200, response.text
    value: list[dict[str, Any]] = response.json()["value"]
    return value
