"""What the server allows: read-only mode, and table allow and deny lists applied to every tool."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp.server.mcpserver.exceptions import ToolError

WRITE_TOOLS = frozenset({"create_record", "update_record", "upsert_record", "delete_record"})


@dataclass(frozen=True)
class Policy:
    read_only: bool = False
    allowed_tables: frozenset[str] = field(default_factory=frozenset)  # empty: every table
    denied_tables: frozenset[str] = field(default_factory=frozenset)

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
