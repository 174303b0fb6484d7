"""The tool set: the nine tools' names, and the tools a policy allows, with compact schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

from ._errors import CheckedTool
from ._policy import Policy
from ._query import query_records
from ._read import READ, describe_table, get_record, list_environments, list_tables
from ._schema import compact_tool
from ._write import WRITE_TOOL_FUNCTIONS

TOOL_NAMES: Final = (
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

READ_TOOL_FUNCTIONS: Final[tuple[tuple[Callable[..., Any], ToolAnnotations], ...]] = (
    (list_environments, READ),
    (list_tables, READ),
    (describe_table, READ),
    (query_records, READ),
    (get_record, READ),
)


def build_tools(policy: Policy) -> list[Tool]:
    """The tools the policy allows, with compact schemas; in read-only mode the write tools do not exist."""
    functions = READ_TOOL_FUNCTIONS if policy.read_only else READ_TOOL_FUNCTIONS + WRITE_TOOL_FUNCTIONS
    return [
        compact_tool(CheckedTool.from_function(function, annotations=annotations))
        for function, annotations in functions
    ]
