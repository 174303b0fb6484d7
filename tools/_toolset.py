"""The tools by toolset: their names, and the tools a policy offers, with compact schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

from ._actions import RUN, RUN_FUNCTIONS, list_actions, run_action
from ._changes import list_changes
from ._errors import CheckedTool
from ._link import LINK, link_records
from ._policy import Policy
from ._query import query_records
from ._read import READ, describe_table, get_record, list_environments, list_tables
from ._schema import compact_tool
from ._search import search_records
from ._write import WRITE_TOOL_FUNCTIONS
from ._write_set import WRITE_SET, write_records

ToolFunction = tuple[Callable[..., Any], ToolAnnotations]

READ_TOOL_FUNCTIONS: Final[tuple[ToolFunction, ...]] = (
    (list_environments, READ),
    (list_tables, READ),
    (describe_table, READ),
    (query_records, READ),
    (get_record, READ),
)

# DYNAMICS_MCP_TOOLSETS: the groups of tools a server offers, each as (offered in read-only mode, offered only when
# writes are allowed). Every conversation pays for the tools listed before any work, so a deployment offers the
# groups it needs. run_action is in both: read-only mode offers it as a read that runs functions only.
TOOLSETS: Final[dict[str, tuple[tuple[ToolFunction, ...], tuple[ToolFunction, ...]]]] = {
    "records": (READ_TOOL_FUNCTIONS, WRITE_TOOL_FUNCTIONS),
    "bulk": ((), ((write_records, WRITE_SET), (link_records, LINK))),
    "actions": (((list_actions, READ), (run_action, RUN_FUNCTIONS)), ((run_action, RUN),)),
    "search": (((search_records, READ),), ()),
    "changes": (((list_changes, READ),), ()),
}

TOOL_NAMES: Final = tuple(
    dict.fromkeys(function.__name__ for reads, writes in TOOLSETS.values() for function, _ in (*reads, *writes))
)


def build_tools(policy: Policy) -> list[Tool]:
    """The tools of the toolsets the policy offers, with compact schemas; in read-only mode no write tool exists."""
    functions: dict[str, ToolFunction] = {}
    for name, (reads, writes) in TOOLSETS.items():
        if policy.toolsets and name not in policy.toolsets:
            continue
        for function, hints in reads if policy.read_only else (*reads, *writes):
            functions[function.__name__] = (function, hints)  # a tool's write form replaces its read form
    return [
        compact_tool(CheckedTool.from_function(function, annotations=hints)) for function, hints in functions.values()
    ]
