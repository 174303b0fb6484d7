"""The link tool: link_records links two rows through a relationship, or unlinks them.

A relationship is named by its schema name or by either of its navigation properties (any case); the side of
`table` decides the request (`dataverse.associate`): a lookup of the row is set or cleared, a 1:N collection sets
or clears the other row's lookup, an N:N link is added or removed. Both tables pass the table policy before
anything is sent. An unlink first checks that the rows are linked, so a result always says what changed. Every
attempt is audit-logged as a write is (`_audit.py`); unlinking deletes no row, so nobody is asked to confirm it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from dataverse import Navigation, TableMetadata, associate, disassociate, is_associated, navigations

from ._arguments import EnvironmentName, RowId, TableName
from ._audit import audited
from ._errors import reported_as_tool_errors

# Unlinking removes a link and linking may replace a lookup's value: destructive; a repeat changes nothing more.
LINK: Final = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
MAX_LISTED: Final = 25  # relationships named in an error
_KINDS: Final = {"many_to_one": "lookup", "one_to_many": "1:N", "many_to_many": "N:N"}

# The table's own navigation property first, then its partner's, the relationship's schema name, and last the
# lookup column: a self-referential relationship (account_parent_account) is named from both of its ends.
_NAMES: Final[tuple[Callable[[Navigation], str], ...]] = (
    lambda link: link.name,
    lambda link: link.partner,
    lambda link: link.relationship,
    lambda link: link.column or "",
)

RelationshipName = Annotated[str, Field(description="Schema or navigation name, e.g. accountleads_association")]


class LinkResult(BaseModel):
    table: str
    id: str
    relationship: str
    target_table: str
    target_id: str
    linked: bool


async def link_records(
    ctx: Context[Any, Any],
    table: TableName,
    id: RowId,
    relationship: RelationshipName,
    target_table: TableName,
    target_id: RowId,
    unlink: bool = False,
    environment: EnvironmentName = None,
) -> LinkResult:
    """Link two rows through a relationship (lookup, 1:N or N:N); unlink=true removes the link, never a row."""
    with (
        reported_as_tool_errors(writing=True),
        audited(ctx, "link_records", table=table, id=id, environment=environment) as attempt,
    ):
        target, metadata, access = await attempt.open(environment, table)
        other = await target.client.resolve_table(target_table)
        access.check(other.logical_name)
        link = _navigation(metadata, relationship, other.logical_name, access.allows)
        client, name, other_name = target.client, metadata.logical_name, other.logical_name
        if not unlink:
            await attempt.write(associate(client, name, id, link.name, other_name, target_id))
        elif await is_associated(client, name, id, link.name, other_name, target_id):
            await attempt.write(disassociate(client, name, id, link.name, other_name, target_id))
        else:
            raise ToolError(f"{name} row {id} and {other_name} row {target_id} are not linked through {link.name}.")
    return LinkResult(
        table=name,
        id=str(id),
        relationship=link.relationship,
        target_table=other_name,
        target_id=str(target_id),
        linked=not unlink,
    )


def _navigation(table: TableMetadata, wanted: str, target_table: str, allows: Callable[[str], bool]) -> Navigation:
    """The navigation property of `table` that `wanted` names and that reaches `target_table`."""
    candidates = [link for link in navigations(table) if allows(link.target_table)]
    name = wanted.strip().lower()
    for named in _NAMES:
        matches = [link for link in candidates if named(link).lower() == name]
        if matches:
            break
    reaching = [link for link in matches if link.target_table == target_table]
    if reaching:
        return reaching[0]
    if matches:
        found = matches[0]
        problem = f"{found.relationship} links {table.logical_name} to {found.target_table}, not {target_table}."
    else:
        problem = f"{table.logical_name} has no relationship {wanted!r}."
    raise ToolError(f"{problem} {_listing(table, candidates, target_table)}")


def _listing(table: TableMetadata, candidates: list[Navigation], target_table: str) -> str:
    """'Relationships of account with lead: accountleads_association (N:N), ...', the closest choices first."""
    reaching = [link for link in candidates if link.target_table == target_table]
    shown = reaching or candidates
    if not shown:
        return f"{table.logical_name} has no relationship you can use."
    ordered = sorted(shown, key=lambda link: link.name)
    names = [f"{link.name} ({_KINDS[link.kind]}→{link.target_table})" for link in ordered]
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    subject = f"{table.logical_name} with {target_table}" if reaching else table.logical_name
    return f"Relationships of {subject}: {', '.join(names[:MAX_LISTED])}{more}."
