"""The read tools: list_environments, list_tables, describe_table, query_records, get_record."""

from __future__ import annotations

from typing import Annotated, Any, Final, NamedTuple

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from dataverse import InvalidQuery, TableMetadata

from ._arguments import AlternateKey, Columns, EnvironmentName, RowIdOrNone, TableName
from ._errors import reported_as_tool_errors, unknown_columns
from ._output import shape_row, table_description
from ._policy import TableAccess
from ._state import AppState, Environment, default_environment

READ: Final = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)


class EnvironmentItem(BaseModel):
    name: str
    url: str
    friendly_name: str | None = None
    # `"default": true` on the environment used when none is named, only when there are several; absent otherwise.
    # Left out of the output schema, as the key explains itself: tools/list is at its size budget.
    default: SkipJsonSchema[bool] = Field(False, exclude_if=lambda is_default: not is_default)


class EnvironmentList(BaseModel):
    environments: list[EnvironmentItem]


class TableItem(BaseModel):
    name: str
    entity_set: str
    display_name: str | None = None
    custom: bool = False


class TableList(BaseModel):
    tables: list[TableItem]
    cursor: str | None = None


class TableDescription(BaseModel):
    table: str
    entity_set: str
    display_name: str | None = None
    primary_id: str
    primary_name: str | None = None
    columns: dict[str, str]
    note: str | None = None
    keys: dict[str, list[str]] | None = None
    relationships: dict[str, str] | None = None


class Record(BaseModel):
    row: dict[str, Any]
    etag: str | None = None


def state(ctx: Context[AppState, Any]) -> AppState:
    """The server's state, once the caller is known to hold the scopes this tool needs."""
    app = ctx.request_context.lifespan_context
    access = get_access_token()
    tool = str((ctx.request_context.params or {}).get("name", ""))
    app.policy.check_scopes(tool, access.scopes if access else None)
    return app


def names(columns: list[str] | str | None) -> list[str]:
    if columns is None:
        return []
    items = columns.split(",") if isinstance(columns, str) else columns
    return [item.strip() for item in items if item.strip()]


class OpenTable(NamedTuple):
    """A table a tool works on: its environment, its metadata, and the table policy of that environment."""

    target: Environment
    metadata: TableMetadata
    access: TableAccess


async def open_table(ctx: Context[AppState, Any], environment: str | None, table: str) -> OpenTable:
    """The environment and the table's metadata, once the policy allows the table (nothing is read before)."""
    app = state(ctx)
    target = await app.environments.open(environment)
    access = await app.access(target)
    summary = await target.client.resolve_table(table)
    access.check(summary.logical_name)
    return OpenTable(target, await target.client.table(summary.logical_name), access)


async def list_environments(ctx: Context[AppState, Any]) -> EnvironmentList:
    """The Dataverse environments you can use."""
    app = state(ctx)
    with reported_as_tool_errors():
        environments = await app.environments.all()
    default = default_environment(environments, app.environments.default) if len(environments) > 1 else None
    return EnvironmentList(
        environments=[
            EnvironmentItem(name=e.name, url=e.url, friendly_name=e.friendly_name, default=e is default)
            for e in environments
        ]
    )


async def list_tables(
    ctx: Context[AppState, Any],
    search: Annotated[str | None, Field(description="Words of the name")] = None,
    include_system: bool = False,
    page_size: Annotated[int, Field(ge=1, le=500)] = 100,
    cursor: str | None = None,
    environment: EnvironmentName = None,
) -> TableList:
    """Find tables by name, e.g. search="opportunity"."""
    app = state(ctx)
    arguments = {"search": search or "", "system": include_system, "n": page_size}
    with reported_as_tool_errors():
        start = 0
        if cursor:
            resume = app.cursors.open(cursor, caller=app.environments.caller_id, tool="list_tables")
            if resume.get("a") != arguments or (environment and environment != resume.get("e")):
                raise InvalidQuery(
                    "The cursor continues a list_tables call with other arguments: pass the same search, "
                    "include_system, page_size and environment, or call again without the cursor."
                )
            environment, start = str(resume.get("e")), int(resume.get("o") or 0)
        target = await app.environments.open(environment)
        access = await app.access(target)
        tables = await target.client.list_tables()
    words = (search or "").lower().split()
    found = [
        table
        for table in sorted(tables, key=lambda table: table.logical_name)
        if access.allows(table.logical_name)
        and (include_system or not (table.is_intersect or table.is_activity or table.is_private))
        and all(any(word in name.lower() for name in table.names()) for word in words)
    ]
    page = found[start : start + page_size]
    more = start + page_size < len(found)
    following = {"e": target.name, "a": arguments, "o": start + page_size}
    return TableList(
        tables=[
            TableItem(
                name=t.logical_name, entity_set=t.entity_set_name, display_name=t.display_name, custom=t.is_custom
            )
            for t in page
        ],
        cursor=app.cursors.seal(following, caller=app.environments.caller_id, tool="list_tables") if more else None,
    )


async def describe_table(
    ctx: Context[AppState, Any],
    table: TableName,
    columns: Annotated[list[str] | None, Field(description="Only these, with all choices")] = None,
    include_relationships: bool = False,
    include_keys: bool = False,
    environment: EnvironmentName = None,
) -> TableDescription:
    """A table's columns (type, limits, label, choices); call before filtering or writing."""
    with reported_as_tool_errors():
        target, metadata, access = await open_table(ctx, environment, table)
        choices = await target.client.choices(metadata.logical_name)
    described = table_description(
        metadata,
        choices,
        access.allows,
        columns=columns,
        include_relationships=include_relationships,
        include_keys=include_keys,
    )
    return TableDescription(**described)


async def get_record(
    ctx: Context[AppState, Any],
    table: TableName,
    id: RowIdOrNone = None,
    key: AlternateKey = None,
    select: Columns = None,
    environment: EnvironmentName = None,
) -> Record:
    """One row by id or alternate key, with its etag."""
    with reported_as_tool_errors():
        if id is not None and key is not None:
            raise InvalidQuery("Give either id or key, not both.")
        if id is None and key is None:
            raise InvalidQuery("Give the row's id, or its alternate key as key.")
        target, metadata, access = await open_table(ctx, environment, table)
        columns = names(select)
        unknown = [name for name in columns if name.lower() not in metadata.columns]
        if unknown:
            raise unknown_columns(metadata, unknown)
        selected = [metadata.columns[c.lower()].property_name for c in columns]
        row = await target.client.get(metadata.logical_name, id if id is not None else key or {}, select=selected)
    shaped = shape_row(row, access.allows, table=metadata, select=columns, keep_nulls=bool(columns))
    return Record(row=shaped, etag=row.get("@odata.etag"))
