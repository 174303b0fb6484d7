"""The write tools: create_record, update_record, upsert_record, delete_record.

Values are checked against the table's metadata before anything is sent (`_values.py`). Every attempted write
is audit-logged with its outcome, never its values (`_audit.py`). A delete is confirmed by the user through MCP
elicitation when the client supports it, otherwise by an explicit `confirm: true`; the caller's scopes and the
table policy are checked before anyone is asked.
"""

from __future__ import annotations

import uuid
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
from ._audit import audited
from ._errors import reported_as_tool_errors
from ._output import shape_row
from ._policy import TableAccess
from ._values import request_body

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


def result(table: str, written: Written, access: TableAccess) -> WriteResult:
    row = shape_row(written.row, access.allows, keep_nulls=True) if written.row is not None else None
    return WriteResult(table=table, id=written.id, created=written.created, row=row)


async def ask_to_delete(
    ctx: Context[Any, Any], table: str, id: uuid.UUID, confirm: bool = False, environment: str | None = None
) -> DeleteConfirmation | Elicit[DeleteConfirmation]:
    """Confirmation for delete_record: `confirm: true`, or the user's answer through elicitation.

    It runs before the tool body, so it first checks what the body would: a caller without the scope, or a
    table the policy denies, is refused without asking the user anything.
    """
    with (
        reported_as_tool_errors(writing=True),
        audited(ctx, "delete_record", table=table, id=id, environment=environment, checks_only=True) as attempt,
    ):
        target, metadata, _ = await attempt.open(environment, table)
        if confirm:
            return DeleteConfirmation(confirm=True)  # injected as an accepted answer
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            attempt.reason = "unconfirmed"
            raise ToolError(
                "Deleting needs the user's confirmation and this client cannot ask them: ask the user, then call "
                "delete_record again with confirm: true."
            )
    # Resolved names only: the question must not carry text the model chose.
    return Elicit(
        f"Delete the {metadata.logical_name} row {id} in {target.name}? This cannot be undone.", DeleteConfirmation
    )


Confirmation = AcceptedElicitation[DeleteConfirmation] | DeclinedElicitation | CancelledElicitation


async def create_record(
    ctx: Context[Any, Any],
    table: TableName,
    values: Values,
    environment: EnvironmentName = None,
) -> WriteResult:
    """Create a row; returns its id. E.g. table="lead", values={"subject": "Demo"}."""
    with (
        reported_as_tool_errors(writing=True),
        audited(ctx, "create_record", table=table, environment=environment) as attempt,
    ):
        target, metadata, access = await attempt.open(environment, table)
        body = await request_body(target.client, access, metadata, values, creating=True)
        # The row's id is chosen here rather than by the client, so that even a lost answer is audited with it.
        attempt.identify(body.setdefault(metadata.primary_id, str(uuid.uuid4())))
        written = await attempt.write(target.client.create(metadata.logical_name, body))
    return result(metadata.logical_name, written, access)


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
    with (
        reported_as_tool_errors(writing=True),
        audited(ctx, "update_record", table=table, id=id, environment=environment) as attempt,
    ):
        target, metadata, access = await attempt.open(environment, table)
        row_key = _key(id, key)
        body = await request_body(target.client, access, metadata, values, creating=False)
        written = await attempt.write(target.client.update(metadata.logical_name, row_key, body, etag=etag))
        attempt.identify(written.id)
    return result(metadata.logical_name, written, access)


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
    with (
        reported_as_tool_errors(writing=True),
        audited(ctx, "upsert_record", table=table, id=id, environment=environment) as attempt,
    ):
        target, metadata, access = await attempt.open(environment, table)
        row_key = _key(id, key)
        body = await request_body(target.client, access, metadata, values, creating=mode != "update_only")
        written = await attempt.write(target.client.upsert(metadata.logical_name, row_key, body, mode=mode))
        attempt.identify(written.id)
    return result(metadata.logical_name, written, access)


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
    with (
        reported_as_tool_errors(writing=True),
        audited(ctx, "delete_record", table=table, id=id, environment=environment) as attempt,
    ):
        target, metadata, _ = await attempt.open(environment, table)
        if not isinstance(confirmation, AcceptedElicitation) or not confirmation.data.confirm:
            attempt.decline()
            return DeleteResult(table=metadata.logical_name, id=str(id), deleted=False)
        await attempt.write(target.client.delete(metadata.logical_name, id, etag=etag))
    return DeleteResult(table=metadata.logical_name, id=str(id), deleted=True)


WRITE_TOOL_FUNCTIONS: Final = (
    (create_record, CREATE),
    (update_record, CHANGE),
    (upsert_record, CHANGE),
    (delete_record, CHANGE),
)


def _key(id: Any, key: dict[str, str | int] | None) -> Any:
    if id is not None and key is not None:
        raise InvalidQuery("Give either id or key, not both.")
    if id is None and key is None:
        raise InvalidQuery("Give the row's id, or its alternate key as key.")
    return id if id is not None else key
