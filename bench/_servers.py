"""The servers measured, started as an IDE starts them: `dynamics-mcp serve`, and the yardstick, a minimal
MCPServer with one tool written out as a script at run time."""

from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path
from typing import Final

from mcp import StdioServerParameters
from mcp.server import MCPServer

SOURCE: Final = '''\
from mcp.server import MCPServer

server = MCPServer("minimal")


@server.tool()
async def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run("stdio")
'''


def dynamics_mcp_parameters(environment: dict[str, str]) -> StdioServerParameters:
    """`dynamics-mcp serve` from this interpreter's environment, with these variables (and no other settings)."""
    command = shutil.which("dynamics-mcp", path=str(Path(sys.executable).parent)) or "dynamics-mcp"
    return StdioServerParameters(command=command, args=["serve"], env=environment)


def write_minimal_server(directory: Path) -> Path:
    path = directory / "minimal_server.py"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def minimal_server_parameters(script: Path) -> StdioServerParameters:
    """The script run over stdio by this interpreter, as an IDE would start it."""
    return StdioServerParameters(command=sys.executable, args=[str(script)])


def load_minimal_server(script: Path) -> MCPServer:
    """The script's server object, for an in-memory client."""
    server = runpy.run_path(str(script))["server"]
    assert isinstance(server, MCPServer)
    return server
