"""Building the real server against a test sandbox, and reading tool results."""

from __future__ import annotations

import json
import os
from typing import Any

from mcp import types
from mcp.server.mcpserver import MCPServer

from sandbox import Sandbox
from server import ServerSettings, build_server, load_settings


def settings_for(sandbox: Sandbox, user: str = "admin", **overrides: Any) -> ServerSettings:
    """Settings naming the sandbox's contoso environment, as a user configures a real one."""
    environment = sandbox.environments["contoso"]
    return load_settings(
        None,
        environments=[{"name": "contoso", "url": environment.url, "access_token": sandbox.token(user)}],
        **overrides,
    )


def server_for(sandbox: Sandbox, user: str = "admin", **overrides: Any) -> MCPServer[Any]:
    return build_server(settings_for(sandbox, user, **overrides))


# The sandbox, and a Dataverse-conformant endpoint when DATAVERSE_URL and DATAVERSE_ACCESS_TOKEN are set for the run:
# tests parametrized over these check the client against shapes the sandbox did not choose.
ENDPOINTS = ["sandbox"] + (
    ["configured"] if os.environ.get("DATAVERSE_URL") and os.environ.get("DATAVERSE_ACCESS_TOKEN") else []
)


def endpoint_server(endpoint: str, sandbox: Sandbox) -> MCPServer[Any]:
    """The server for one of ENDPOINTS: the sandbox's, or the one the environment variables configure."""
    return server_for(sandbox) if endpoint == "sandbox" else build_server(load_settings(None))


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    # The same data is there as JSON text for clients that read only text.
    assert json.loads(text(result)) == result.structured_content
    return result.structured_content


def text(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    message = text(result)
    assert "Traceback" not in message
    return message
