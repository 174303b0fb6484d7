"""Small helpers for talking to the sandbox's Web API in tests."""

from __future__ import annotations

from typing import Any

from sandbox import Sandbox

ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}


def api(sandbox: Sandbox, environment: str = "contoso") -> str:
    return f"{sandbox.environments[environment].url}/api/data/v9.2"


def auth(sandbox: Sandbox, user: str = "admin", environment: str = "contoso", **extra: str) -> dict[str, str]:
    return {**ODATA_HEADERS, "Authorization": f"Bearer {sandbox.token(user, environment)}", **extra}


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]
