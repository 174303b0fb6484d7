"""The write tools: create_record, update_record, upsert_record, delete_record.

Values are checked against the table's metadata before anything is sent (`_values.py`). Every write is
audit-logged on `dynamics_mcp.audit` with the user, environment, table, id and tool, never the values.
A delete is confirmed by the user through MCP elicitation when the client supports it, otherwise by an
explicit `confirm: true`.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    DeclinedElicitation,
    Elicit,
    Resolve,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from dataverse import InvalidQuery, Written

from ._arguments import AlternateKey, EnvironmentName, Etag, RowId, RowIdOrNone, TableName, Values
from ._errors import reported_as_tool_errors
from ._output import shape_row
from ._read import open_table, state
from ._values import request_body

audit = logging.getLogger("dynamics_mcp.audit")

CREATE: Final = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
CHANGE: Final = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)


class WriteResult(BaseModel):
    table: str
    id: str
    created: bool | None = None
    row: dict[str, Any] | None = None


class DeleteResult(BaseModel):
    table: str
    id: str
    deleted: bool


class DeleteConfirmation(BaseModel):
    """What the user is asked before a row is deleted."""

    confirm: bool = Field(description="Delete this row? This cannot be undone.")


def log_write(ctx: Context[Any, Any], tool: str, environment: str, table: str, row_id: str) -> None:
    audit.info(
        "%s table=%s id=%s environment=%s user=%s", tool, table, row_id, environment, state(ctx).environments.caller
    )


def result(table: str, written: Written) -> WriteResult:
    row = shape_row(written.row, keep_nulls=True) if written.row is not None else None
    return WriteResult(table=table, id=written.id, created=written.created, row=row)


async def ask_to_delete(
    ctx: Context[Any, Any], table: str, id: str, confirm: bool = False
) -> DeleteConfirmation | Elicit[DeleteConfirmation]:
    """Confirmation for delete_record: `confirm: true`, or the user's answer through elicitation."""
    if confirm:
        return DeleteConfirmation(confirm=True)  # injected as an accepted answer
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        raise ToolError(
            "Deleting needs confirmation and this client cannot ask the user, so nothing was deleted: ask them, "
            "then call delete_record again with confirm: true."
        )
    return Elicit(f"Delete the {table} row {id}? This cannot be undone.", DeleteConfirmation)


Confirmation = AcceptedElicitation[DeleteConfirmation] | DeclinedElicitation | CancelledElicitation


async def create_record(
    ctx: Context[Any, Any],
    table: TableName,
    values: Values,
    environment: EnvironmentName = None,
) -> WriteResult:
    """Create a row; returns its id. E.g. table="lead", values={"subject": "Demo"}."""
    with reported_as_tool_errors(writing=True):
        target, metadata = await open_table(ctx, environment, table)
        body = await request_body(target.client, metadata, values, creating=True)
        written = await target.client.create(metadata.logical_name, body)
    log_write(ctx, "create_record", target.name, metadata.logical_name, written.id)
    return result(metadata.logical_name, written)


async def update_record(
    ctx: Context[Any, Any],
    table: TableName,
    values: Values,
    id: RowIdOrNone = None,
    key: AlternateKey = None,
    etag: Etag = None,
    environment: EnvironmentName = None,
) -> WriteResult:
    """Change columns of an existing row, found by id or alternate key."""
    with reported_as_tool_errors(writing=True):
        target, metadata = await open_table(ctx, environment, table)
        row_key = _key(id, key)
        body = await request_body(target.client, metadata, values, creating=False)
        written = await target.client.update(
            metadata.logical_name,
            row_key,
            body,
            etag=etag,
        )
    log_write(ctx, "update_record", target.name, metadata.logical_name, written.id)
    return result(metadata.logical_name, written)


async def upsert_record(
    ctx: Context[Any, Any],
    table: TableName,
    values: Values,
    id: RowIdOrNone = None,
    key: AlternateKey = None,
    mode: Literal["create_or_update", "create_only", "update_only"] = "create_or_update",
    environment: EnvironmentName = None,
) -> WriteResult:
    """Create the row with this id or key, or update it if it exists; created says which (null: unknown)."""
    with reported_as_tool_errors(writing=True):
        target, metadata = await open_table(ctx, environment, table)
        row_key = _key(id, key)
        body = await request_body(target.client, metadata, values, creating=mode != "update_only")
        written = await target.client.upsert(
            metadata.logical_name,
            row_key,
            body,
            mode=mode,
        )
    log_write(ctx, "upsert_record", target.name, metadata.logical_name, written.id)
    return result(metadata.logical_name, written)


async def delete_record(
    ctx: Context[Any, Any],
    table: TableName,
    id: RowId,
    confirmation: Annotated[Confirmation, Resolve(ask_to_delete)],
    etag: Etag = None,
    confirm: Annotated[bool, Field(description="true once the user agreed")] = False,
    environment: EnvironmentName = None,
) -> DeleteResult:
    """Delete one row by id; the user is asked to confirm first."""
    if not isinstance(confirmation, AcceptedElicitation) or not confirmation.data.confirm:
        return DeleteResult(table=table, id=str(id), deleted=False)
    with reported_as_tool_errors(writing=True):
        target, metadata = await open_table(ctx, environment, table)
        await target.client.delete(metadata.logical_name, id, etag=etag)
    log_write(ctx, "delete_record", target.name, metadata.logical_name, str(id))
    return DeleteResult(table=metadata.logical_name, id=str(id), deleted=True)


WRITE_TOOL_FUNCTIONS: Final = (
    (create_record, CREATE),
    (update_record, CHANGE),
    (upsert_record, CHANGE),
    (delete_record, CHANGE),
)


def _key(id: Any, key: dict[str, str | int] | None) -> Any:
    if (id is None) == (key is None):
        raise InvalidQuery("Give either id or key, not both.")
    return id if id is not None else key
