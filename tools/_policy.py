"""What the server allows: read-only mode, table allow and deny lists applied to every tool, and the scopes
a signed-in caller's token must carry for a given tool (HTTP)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from mcp.server.mcpserver.exceptions import ToolError

WRITE_TOOLS = frozenset({"create_record", "update_record", "upsert_record", "delete_record"})


@dataclass(frozen=True)
class Policy:
    read_only: bool = False
    allowed_tables: frozenset[str] = field(default_factory=frozenset)  # empty: every table
    denied_tables: frozenset[str] = field(default_factory=frozenset)
    tool_scopes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # tool -> scopes it needs

    def allows_table(self, logical_name: str) -> bool:
        name = logical_name.lower()
        if name in self.denied_tables:
            return False
        return not self.allowed_tables or name in self.allowed_tables

    def check_table(self, logical_name: str) -> None:
        """Raise the tool error for a table this server may not touch."""
        if not self.allows_table(logical_name):
            raise ToolError(
                f"The table '{logical_name}' is not available through this server (its allow or deny list). "
                "Use list_tables to see the tables you can use."
            )

    def check_scopes(self, tool: str, granted: Collection[str] | None) -> None:
        """Raise the tool error when a signed-in caller's token lacks a scope this tool needs.

        `granted` is None when no caller signs in (stdio): the configured identity is trusted as a whole.
        """
        needed = self.tool_scopes.get(tool, frozenset())
        missing = sorted(needed - set(granted)) if granted is not None else []
        if missing:
            raise ToolError(
                f"{tool} needs the scope {', '.join(missing)}, which your sign-in did not grant; nothing was done. "
                "Ask an administrator to grant it to you (or your client app), then sign in again."
            )
