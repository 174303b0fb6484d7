"""The MCP tools: argument models, policy (read-only, allow/deny lists, confirmation), LLM-facing output."""

from ._cursor import CursorExpired, Cursors
from ._policy import WRITE_TOOLS, Policy, PolicyError
from ._schema import effective_hints
from ._state import AppState, Environment, Environments, choose_environment
from ._toolset import TOOL_NAMES, TOOLSETS, build_tools

__all__ = [
    "TOOLSETS",
    "TOOL_NAMES",
    "WRITE_TOOLS",
    "AppState",
    "CursorExpired",
    "Cursors",
    "Environment",
    "Environments",
    "Policy",
    "PolicyError",
    "build_tools",
    "choose_environment",
    "effective_hints",
]
