"""What the server allows: read-only mode, table allow and deny lists applied to every tool, and the scopes
a signed-in caller's token must carry for a given tool (HTTP).

The lists are written by people (`contacts, Lead`): each entry is resolved like a tool's `table` argument
(logical, entity set or display name, any case) against each environment's tables, and an entry that names no
table there is a configuration error naming the closest real table, never a list that silently denies nothing.
What is checked is then always a logical name the service itself reported.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from mcp.server.mcpserver.exceptions import ToolError

from dataverse import OperationCatalog, TableSummary, UnknownTable, resolve_table_name

WRITE_TOOLS = frozenset(
    {"create_record", "update_record", "upsert_record", "delete_record", "write_records", "link_records", "run_action"}
)
MAX_WRITES = 1000  # writes in one write_records call: one $batch holds at most 1,000 requests


class TableRefused(ToolError):
    """The table policy refuses a table a call names or reaches; nothing was sent."""


class PolicyError(Exception):
    """An allow, deny or trusted list names a table or operation the environment does not have; the message says
    which."""


class ActionRefused(ToolError):
    """The action lists or read-only mode refuse an operation a call names; nothing was sent."""


@dataclass(frozen=True)
class TableAccess:
    """The table lists resolved against one environment: logical names only."""

    allowed: frozenset[str] | None = None  # None: every table not denied
    denied: frozenset[str] = frozenset()

    def allows(self, logical_name: str) -> bool:
        name = logical_name.lower()
        return name not in self.denied and (self.allowed is None or name in self.allowed)

    def check(self, logical_name: str) -> None:
        """Raise the tool error for a table this server may not touch."""
        if not self.allows(logical_name):
            raise TableRefused(
                f"The table '{logical_name}' is not available through this server (its allow or deny list). "
                "Use list_tables to see the tables you can use."
            )


@dataclass(frozen=True)
class ActionAccess:
    """The action lists resolved against one environment: operation names as the service declares them."""

    allowed: frozenset[str] | None = None  # None: every operation not denied
    denied: frozenset[str] = frozenset()
    trusted: frozenset[str] = frozenset()  # actions run without asking the user

    def allows(self, name: str) -> bool:
        return name not in self.denied and (self.allowed is None or name in self.allowed)

    def check(self, name: str) -> None:
        if not self.allows(name):
            raise ActionRefused(
                f"{name} is not available through this server (its action allow or deny list). "
                "Use list_actions to see the actions and functions you can use."
            )


@dataclass(frozen=True)
class Policy:
    read_only: bool = False
    allowed_tables: frozenset[str] = field(default_factory=frozenset)  # as configured; empty: every table
    denied_tables: frozenset[str] = field(default_factory=frozenset)
    tool_scopes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # tool -> scopes it needs
    max_writes: int = MAX_WRITES  # writes one write_records call may carry (DYNAMICS_MCP_MAX_WRITES)
    toolsets: frozenset[str] = field(default_factory=frozenset)  # the groups of tools offered; empty: all
    allowed_actions: frozenset[str] = field(default_factory=frozenset)  # actions and functions; empty: all
    denied_actions: frozenset[str] = field(default_factory=frozenset)
    trusted_actions: frozenset[str] = field(default_factory=frozenset)  # run without the user's confirmation

    @property
    def lists_tables(self) -> bool:
        return bool(self.allowed_tables or self.denied_tables)

    def resolve(self, environment: str, tables: Sequence[TableSummary]) -> TableAccess:
        """The lists as logical names of `tables`; PolicyError names every entry that matches no table."""
        problems: list[str] = []

        def resolved(entries: frozenset[str], setting: str) -> frozenset[str]:
            names = set()
            for entry in sorted(entries):
                try:
                    names.add(resolve_table_name(entry, tables).logical_name)
                except UnknownTable as unknown:
                    closest = f"; the closest is '{unknown.closest[0]}'" if unknown.closest else ""
                    problems.append(f"{setting} names '{entry}', which is no table of {environment}{closest}")
            return frozenset(names)

        allowed = resolved(self.allowed_tables, "DYNAMICS_MCP_ALLOWED_TABLES") if self.allowed_tables else None
        denied = resolved(self.denied_tables, "DYNAMICS_MCP_DENIED_TABLES")
        if problems:
            raise PolicyError(". ".join(problems) + ".")
        return TableAccess(allowed, denied)

    @property
    def lists_actions(self) -> bool:
        return bool(self.allowed_actions or self.denied_actions or self.trusted_actions)

    def resolve_actions(self, environment: str, catalog: OperationCatalog) -> ActionAccess:
        """The action lists as names `catalog` declares (any case); PolicyError names every entry that matches none."""
        problems: list[str] = []

        def resolved(entries: frozenset[str], setting: str) -> frozenset[str]:
            names = set()
            for entry in sorted(entries):
                declared = catalog.declared_name(entry)
                if declared is not None:
                    names.add(declared)
                    continue
                closest = catalog.closest(entry, 1)
                hint = f"; the closest is '{closest[0]}'" if closest else ""
                problems.append(f"{setting} names '{entry}', which is no action or function of {environment}{hint}")
            return frozenset(names)

        allowed = resolved(self.allowed_actions, "DYNAMICS_MCP_ALLOWED_ACTIONS") if self.allowed_actions else None
        denied = resolved(self.denied_actions, "DYNAMICS_MCP_DENIED_ACTIONS")
        trusted = resolved(self.trusted_actions, "DYNAMICS_MCP_TRUSTED_ACTIONS")
        if problems:
            raise PolicyError(". ".join(problems) + ".")
        return ActionAccess(allowed, denied, trusted)

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
