"""The MCP tools: argument models, policy (read-only, allow/deny lists, confirmation), LLM-facing output."""

from mcp.server.mcpserver.tools import Tool

from ._policy import WRITE_TOOLS, Policy
from ._read import READ_TOOL_FUNCTIONS
from ._schema import compact_tool
from ._state import AppState, Environment, Environments, choose_environment
from ._write import WRITE_TOOL_FUNCTIONS

TOOL_NAMES = (
    "list_environments",
    "list_tables",
    "describe_table",
    "query_records",
    "get_record",
    "create_record",
    "update_record",
    "upsert_record",
    "delete_record",
)


def build_tools(policy: Policy) -> list[Tool]:
    """The tools the policy allows, with compact schemas; in read-only mode the write tools do not exist."""
    functions = READ_TOOL_FUNCTIONS if policy.read_only else READ_TOOL_FUNCTIONS + WRITE_TOOL_FUNCTIONS
    return [compact_tool(Tool.from_function(function, annotations=annotations)) for function, annotations in functions]


__all__ = [
    "TOOL_NAMES",
    "WRITE_TOOLS",
    "AppState",
    "Environment",
    "Environments",
    "Policy",
    "build_tools",
    "choose_environment",
]
