"""The actions toolset: list_actions finds the environment's actions and functions, run_action calls one.

Operations come from the environment's CSDL `$metadata` (`DataverseClient.operations`). Before anything is sent:
- the action lists (`DYNAMICS_MCP_ALLOWED_ACTIONS`, `DYNAMICS_MCP_DENIED_ACTIONS`) allow the operation, actions
  and functions alike; read-only mode refuses every action and still runs functions;
- the table policy allows the bound table, every entity-typed parameter's table (a row `{"table", "id"}`, a bare
  id where the type names one table, or a new row's values, checked like create_record's with their lookups),
  and every table a string parameter names (`EntityNames` of RetrieveTotalRecordCount, `TargetEntityName`);
- the parameters fit the declaration (`dataverse.check_parameters`: one error listing the declared ones).
An action is a write: the user confirms it through elicitation (or `confirm: true`) unless it is listed in
`DYNAMICS_MCP_TRUSTED_ACTIONS`, and every attempt is one audit line with its outcome. A function is a read: never
confirmed, never audited, retried like a read. Entity results come back as rows (`shape_row`), bounded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

from dataverse import (
    DataverseClient,
    DataverseError,
    EntityReference,
    EntityValues,
    Operation,
    OperationCatalog,
    OperationType,
    TableSummary,
    check_parameters,
)

from ._arguments import EnvironmentName
from ._audit import WriteAttempt, audited
from ._errors import reported_as_tool_errors
from ._output import Budget, fit, json_size, shape_row
from ._policy import ActionAccess, ActionRefused, PolicyError, TableAccess
from ._read import READ, state
from ._state import AppState, Environment
from ._values import request_body

logger = logging.getLogger(__name__)

RUN: Final = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
# In read-only mode run_action runs functions only.
RUN_FUNCTIONS: Final = READ
TOOL: Final = "run_action"
MAX_LISTED: Final = 40
MAX_ROWS: Final = 100
MAX_BYTES: Final = 60_000
# String parameters that name tables (RetrieveTotalRecordCount's EntityNames, InitializeFrom's TargetEntityName):
# what they name is that table's data, so the table policy applies to them.
_TABLE_NAME_SUFFIXES: Final = ("entityname", "entitynames", "entitylogicalname")


class ActionItem(BaseModel):
    name: str
    kind: Literal["action", "function"]
    bound: str | None = None  # "lead row" (give table and id) or "account set" (give table)
    parameters: dict[str, str]
    returns: str | None = None


class ActionList(BaseModel):
    actions: list[ActionItem]
    note: str | None = None


class ActionResult(BaseModel):
    name: str
    ran: bool
    rows: list[dict[str, Any]] | None = None
    value: Any = None
    note: str | None = None


class ActionConfirmation(BaseModel):
    """What the user is asked before an action runs."""

    confirm: bool = Field(description="Run this action? Its changes may not be undone.")


Confirmation = AcceptedElicitation[ActionConfirmation] | DeclinedElicitation | CancelledElicitation
Parameters = Annotated[
    dict[str, Any] | None,
    Field(description='Declared names; a row as {"table","id"} or new row values'),
]


@dataclass(frozen=True)
class Prepared:
    """An operation call, checked and ready to send."""

    environment: Environment
    operation: Operation
    table: TableSummary | None
    id: uuid.UUID | None
    values: dict[str, Any]
    access: TableAccess
    trusted: bool


async def list_actions(
    ctx: Context[AppState, Any],
    search: str | None = None,
    table: str | None = None,
    environment: EnvironmentName = None,
) -> ActionList:
    """Find actions (they write) and functions (they read) to call with run_action."""
    app = state(ctx)
    with reported_as_tool_errors():
        target = await app.environments.open(environment)
        access = await app.access(target)
        catalog = await target.client.operations()
        actions = _action_access(app, target, catalog)
        wanted = None
        if table is not None:
            wanted = (await target.client.resolve_table(table)).logical_name
            access.check(wanted)
    words = (search or "").lower().split()
    found = [
        item
        for operation in sorted(catalog, key=lambda operation: (operation.name, operation.table or ""))
        if actions.allows(operation.name)
        and not (app.policy.read_only and operation.is_action)
        and all(word in operation.name.lower() for word in words)
        and (wanted is None or _concerns(operation, wanted))
        and (item := _item(operation, catalog, access)) is not None
    ]
    listed, cut = fit((item.model_dump(exclude_none=True) for item in found[:MAX_LISTED]), Budget(MAX_LISTED, 20_000))
    note = None
    if cut or len(found) > len(listed):
        note = f"{len(found) - len(listed)} more; narrow with search or table."
    return ActionList(actions=found[: len(listed)], note=note)


async def ask_to_run(
    ctx: Context[AppState, Any],
    name: str,
    table: str | None = None,
    id: uuid.UUID | None = None,
    parameters: dict[str, Any] | None = None,
    confirm: bool = False,
    environment: str | None = None,
) -> ActionConfirmation | Elicit[ActionConfirmation]:
    """Confirmation for run_action: none for a function or a trusted action; else `confirm: true`, or the user's
    answer through elicitation, asked only once everything the call would send has been checked."""
    with (
        _reported(lambda: attempt.is_write),
        audited(ctx, TOOL, table=table, id=id, environment=environment, checks_only=True, action=name) as attempt,
    ):
        prepared = await _prepare(ctx, attempt, name, table, id, parameters or {}, environment)
        if not prepared.operation.is_action or prepared.trusted or confirm:
            return ActionConfirmation(confirm=True)
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            attempt.reason = "unconfirmed"
            raise ToolError(
                f"Running {prepared.operation.name} needs the user's confirmation and this client cannot ask them: "
                "ask the user, then call run_action again with confirm: true."
            )
    return Elicit(_question(prepared), ActionConfirmation)


async def run_action(
    ctx: Context[AppState, Any],
    name: str,
    confirmation: Annotated[Confirmation, Resolve(ask_to_run)],
    table: str | None = None,
    id: uuid.UUID | None = None,
    parameters: Parameters = None,
    confirm: Annotated[bool, Field(description="true once the user agreed")] = False,
    environment: EnvironmentName = None,
) -> ActionResult:
    """Run an operation from list_actions; a bound one takes table (and id if row-bound). The user confirms
    actions."""
    with (
        _reported(lambda: attempt.is_write),
        audited(ctx, TOOL, table=table, id=id, environment=environment, action=name) as attempt,
    ):
        prepared = await _prepare(ctx, attempt, name, table, id, parameters or {}, environment)
        operation = prepared.operation
        if not isinstance(confirmation, AcceptedElicitation) or not confirmation.data.confirm:
            attempt.decline()
            return ActionResult(name=operation.name, ran=False, note="The user declined: the action did not run.")
        client = prepared.environment.client
        call = client.invoke(
            operation.name,
            prepared.values,
            table=prepared.table.logical_name if prepared.table else None,
            id=prepared.id,
        )
        result = await (attempt.write(call) if operation.is_action else call)
        tables = await client.list_tables()
    return _result(operation, result.value, prepared.access, tables)


# -- checking a call -------------------------------------------------------------------------------------------


@contextmanager
def _reported(writing: Callable[[], bool]) -> Iterator[None]:
    """Failures as tool errors, outside the audit (which sees the client's own errors); those of an action, or of
    a call not yet known to be a function (`writing()`), say what was written."""
    try:
        yield
    except (DataverseError, LookupError, ToolError) as error:
        with reported_as_tool_errors(writing=writing()):
            raise error from None


def _action_access(app: AppState, target: Environment, catalog: OperationCatalog) -> ActionAccess:
    if not app.policy.lists_actions:
        return ActionAccess()
    try:
        return app.policy.resolve_actions(target.name, catalog)
    except PolicyError as error:
        logger.error("The action policy cannot be applied to %s: %s", target.name, error)
        raise ActionRefused(
            f"The actions of environment {target.name} are refused: this server's action allow, deny or trusted "
            "list names an operation it does not have. An administrator must fix the server's configuration."
        ) from None


async def _prepare(
    ctx: Context[AppState, Any],
    attempt: WriteAttempt,
    name: str,
    table: str | None,
    id: uuid.UUID | None,
    parameters: dict[str, Any],
    environment: str | None,
) -> Prepared:
    """The call checked: environment, operation, policies, bound table and row, parameters; nothing sent."""
    app = state(ctx)
    try:
        target = await app.environments.open(environment)
        attempt.resolved(environment=target.name)
        access = await app.access(target)
        catalog = await target.client.operations()
        declared = catalog.named(name)[0]
        attempt.is_write = declared.is_action
        attempt.resolved(action=declared.name)
        _action_access(app, target, catalog).check(declared.name)
    except ActionRefused:
        attempt.reason = "refused"
        raise
    if declared.is_action and app.policy.read_only:
        attempt.reason = "refused"
        raise ActionRefused(f"This server is read-only: the action {declared.name} was refused; functions still run.")
    summary = None
    if table is not None:
        summary = await target.client.resolve_table(table)
        access.check(summary.logical_name)
        attempt.resolved(table=summary.logical_name)
    elif id is not None:
        raise ToolError("id names a row of table: give table too.")
    operation = catalog.choose(declared.name, summary.logical_name if summary else None, row=id is not None)
    given = {
        parameter_name: await _value(target.client, access, catalog, operation.parameter(parameter_name), value)
        for parameter_name, value in parameters.items()
    }
    values = check_parameters(operation, catalog, given)
    trusted = _action_access(app, target, catalog).trusted
    return Prepared(target, operation, summary, id, values, access, declared.name in trusted)


async def _value(
    client: DataverseClient, access: TableAccess, catalog: OperationCatalog, parameter: Any, value: Any
) -> Any:
    """A parameter's value with its rows and table names resolved and checked against the table policy; a value
    of the wrong shape is left for `check_parameters` to name."""
    if parameter is None:
        return value
    kind: OperationType = parameter.type
    if kind.collection and isinstance(value, list):
        single = OperationType(kind.name, kind.kind)
        return [await _single(client, access, catalog, parameter.name, single, item) for item in value]
    return await _single(client, access, catalog, parameter.name, kind, value)


async def _single(
    client: DataverseClient, access: TableAccess, catalog: OperationCatalog, name: str, kind: OperationType, value: Any
) -> Any:
    if kind.name == "Edm.String" and isinstance(value, str) and name.lower().endswith(_TABLE_NAME_SUFFIXES):
        named = (await client.resolve_table(value)).logical_name
        access.check(named)
        return named
    if kind.kind != "entity":
        return value
    one_table = kind.name not in catalog.base_types
    if isinstance(value, str) and one_table:
        value = {"table": kind.name, "id": value}
    if isinstance(value, dict) and set(value) == {"table", "id"}:
        summary = await client.resolve_table(str(value["table"]))
        access.check(summary.logical_name)
        try:
            return EntityReference(summary.logical_name, uuid.UUID(str(value["id"])))
        except ValueError:
            raise ToolError(f"{name}: {value['id']!r} is not a row id (a GUID).") from None
    if isinstance(value, dict) and one_table:
        access.check(kind.name)
        metadata = await client.table(kind.name)
        return EntityValues(kind.name, await request_body(client, access, metadata, value, creating=True))
    if isinstance(value, dict):
        raise ToolError(f'{name} takes an existing row of any table: give {{"table": ..., "id": ...}}.')
    return value


def _question(prepared: Prepared) -> str:
    """The confirmation question, from resolved names only: never text the model chose."""
    operation = prepared.operation
    where = ""
    if prepared.table is not None:
        row = f" row {prepared.id}" if prepared.id is not None else "s"
        where = f" on the {prepared.table.logical_name}{row}"
    named = []
    for parameter, value in prepared.values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, EntityReference):
                named.append(f"{parameter}: {item.table} row {item.id}")
            elif isinstance(item, EntityValues):
                links = [str(link) for key, link in item.values.items() if key.endswith("@odata.bind") and link]
                linked = f" linked to {', '.join(links)}" if links else ""
                named.append(f"{parameter}: a new {item.table} row{linked}")
    rows = f" ({'; '.join(named)})" if named else ""
    return f"Run the action {operation.name}{where} in {prepared.environment.name}{rows}? It may not be undoable."


# -- listing and results ---------------------------------------------------------------------------------------


def _concerns(operation: Operation, table: str) -> bool:
    return operation.table == table or any(parameter.type.name == table for parameter in operation.parameters)


def _item(operation: Operation, catalog: OperationCatalog, access: TableAccess) -> ActionItem | None:
    """An operation as listed; None when the table policy refuses its table or a table it requires."""
    if operation.table is not None and operation.table not in catalog.base_types and not access.allows(operation.table):
        return None
    parameters = {}
    for parameter in operation.parameters:
        kind = parameter.type
        if kind.kind == "entity" and kind.name not in catalog.base_types and not access.allows(kind.name):
            if not parameter.nullable:
                return None
            continue  # an optional parameter the policy refuses is left out
        parameters[parameter.name] = str(kind) + (" (optional)" if parameter.nullable else "")
    bound = f"{operation.table} {'row' if operation.bound_to_row else 'set'}" if operation.table else None
    return ActionItem(
        name=operation.name,
        kind=operation.kind,
        bound=bound,
        parameters=parameters,
        returns=str(operation.returns) if operation.returns is not None else None,
    )


def _result(operation: Operation, body: Any, access: TableAccess, tables: list[TableSummary]) -> ActionResult:
    """The answer shaped: entity results as rows (a refused table's row as its table and id only), bounded."""
    returns = operation.returns
    if returns is None or body is None:
        return ActionResult(name=operation.name, ran=True)
    if returns.kind == "entity":
        items = body.get("value") if returns.collection and isinstance(body, dict) else [body]
        shaped = (_row(row, returns.name, access, tables) for row in items or () if isinstance(row, dict))
        rows, cut = fit(shaped, Budget(MAX_ROWS, MAX_BYTES))
        note = f"Showing the first {len(rows)} rows." if cut else None
        return ActionResult(name=operation.name, ran=True, rows=rows, note=note)
    value = _plain(body.get("value") if isinstance(body, dict) and "value" in body else body, access, tables)
    if json_size(value) > MAX_BYTES:
        return ActionResult(
            name=operation.name, ran=True, note=f"The result is over {MAX_BYTES:,} bytes of JSON and was left out."
        )
    return ActionResult(name=operation.name, ran=True, value=value)


def _row(row: dict[str, Any], declared: str, access: TableAccess, tables: list[TableSummary]) -> dict[str, Any]:
    """A returned row with its table; a new row's `@odata.bind` values (InitializeFrom's) are kept where they
    point at an allowed table, so that the row can be created as it came."""
    odata_type = str(row.get("@odata.type") or "")
    table = odata_type.rpartition(".")[2] if odata_type else declared
    if not access.allows(table):
        key = next((found.primary_id for found in tables if found.logical_name == table), f"{table}id")
        return {"table": table, "id": row.get(key)}
    by_set = {found.entity_set_name: found.logical_name for found in tables}
    binds = {
        key: value
        for key, value in row.items()
        if key.endswith("@odata.bind")
        and isinstance(value, str)
        and access.allows(by_set.get(value.strip("/").partition("(")[0], ""))
    }
    return {"table": table, **shape_row(row, access.allows), **binds}


def _plain(value: Any, access: TableAccess, tables: list[TableSummary]) -> Any:
    """A complex or primitive result without its OData annotations; a row inside it (known by its `@odata.type`)
    is shaped as a row, so the table policy applies to it as to any row."""
    if isinstance(value, dict):
        odata_type = str(value.get("@odata.type") or "")
        table = odata_type.rpartition(".")[2]
        if table and any(found.logical_name == table for found in tables):
            return _row(value, table, access, tables)
        return {key: _plain(item, access, tables) for key, item in value.items() if "@" not in key}
    if isinstance(value, list):
        return [_plain(item, access, tables) for item in value]
    return value
