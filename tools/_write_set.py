"""The write_records tool: many creates, updates, upserts and deletes in one call, all or nothing by default.

Every write is checked as its single-write tool checks it (table policy, values against metadata, lookups and
the tables they bind to) before anything is sent; one bad write and nothing is sent, the error naming each bad
write by its index. What reaches the service, and the guarantees, are the client's (`dataverse.WriteSetResult`,
docs/bulk-writes.md). A set holding deletes is confirmed like delete_record, naming how many rows of which
tables; scopes and policy are checked before the user is asked. Every write is its own audit line.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
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
from pydantic import BaseModel, ConfigDict, Field

from dataverse import (
    DataverseError,
    InvalidQuery,
    RowWrite,
    ServiceError,
    TableMetadata,
    UnknownTable,
    WriteSetResult,
    end_sentence,
)

from ._arguments import EnvironmentName, TableName
from ._audit import WriteAttempt, audited_each
from ._errors import reported_as_tool_errors, unknown_columns
from ._policy import TableAccess, TableRefused
from ._read import OpenTable, state
from ._state import AppState, Environment
from ._values import request_body

WRITE_SET: Final = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
MAX_LISTED: Final = 10  # bad writes named in one error; the rest are counted
MAX_SENTENCE: Final = 240  # characters of a failure's error in a result


class Write(BaseModel):
    # No docstring: it would be the schema's description, and tools/list has a byte budget. One write of a set,
    # its fields as the single-write tools take them.
    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "update", "upsert", "delete"]
    table: TableName
    id: uuid.UUID | None = None
    key: dict[str, str | int] | None = None
    values: dict[str, Any] | None = None
    etag: str | None = None


class WriteFailure(BaseModel):
    index: int
    table: str
    id: str | None = None
    outcome: Literal["not written", "unknown"]
    error: str


class WritesResult(BaseModel):
    written: int
    not_written: int
    unknown: int
    created: list[str]  # ids of the rows creates made, in write order
    failures: list[WriteFailure] | None = None  # each write that failed or may have been applied
    note: str | None = None


class WritesConfirmation(BaseModel):
    """What the user is asked before a set that deletes rows runs."""

    confirm: bool = Field(description="Run these writes? Deleted rows cannot be restored.")


Confirmation = AcceptedElicitation[WritesConfirmation] | DeclinedElicitation | CancelledElicitation


@dataclass(frozen=True)
class Checked:
    """The writes, each checked and ready to send, in the environment they go to."""

    environment: Environment
    writes: list[RowWrite]
    tables: list[TableMetadata]


async def ask_to_write(
    ctx: Context[AppState, Any], writes: list[Write], confirm: bool = False, environment: str | None = None
) -> WritesConfirmation | Elicit[WritesConfirmation]:
    """Confirmation for a set that deletes rows: `confirm: true`, or the user's answer through elicitation.

    Before anyone is asked, the whole set is checked as the tool body checks it (scopes, policy, values).
    """
    if not any(write.action == "delete" for write in writes):
        return WritesConfirmation(confirm=True)
    with (
        reported_as_tool_errors(writing=True),
        audited_each(ctx, "write_records", _names(writes), environment=environment, checks_only=True) as attempts,
    ):
        checked = await check_writes(ctx, writes, attempts, environment)
        if confirm:
            return WritesConfirmation(confirm=True)
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            for attempt in attempts:
                attempt.reason = "unconfirmed"
            raise ToolError(
                "These writes delete rows, which needs the user's confirmation, and this client cannot ask them: "
                "ask the user, then call write_records again with confirm: true."
            )
    # Resolved names and counts only: the question must not carry text the model chose.
    deleted = Counter(
        table.logical_name
        for write, table in zip(checked.writes, checked.tables, strict=True)
        if write.action == "delete"
    )
    rows = " and ".join(f"{count} {table} row{'s' if count > 1 else ''}" for table, count in deleted.items())
    others = len(writes) - deleted.total()
    besides = f", with {others} other write{'s' if others > 1 else ''}" if others else ""
    return Elicit(f"Delete {rows} in {checked.environment.name}{besides}? This cannot be undone.", WritesConfirmation)


async def write_records(
    ctx: Context[AppState, Any],
    writes: Annotated[list[Write], Field(min_length=1)],
    confirmation: Annotated[Confirmation, Resolve(ask_to_write)],
    atomic: Annotated[bool, Field(description="false: each write alone")] = True,
    confirm: Annotated[bool, Field(description="true once the user agreed")] = False,
    environment: EnvironmentName = None,
) -> WritesResult:
    """Many creates, updates, upserts, deletes in one call, all or nothing; each takes its tool's arguments. A
    create may set its id for later writes' lookups."""
    with (
        reported_as_tool_errors(writing=True),
        audited_each(ctx, "write_records", _names(writes), environment=environment) as attempts,
    ):
        checked = await check_writes(ctx, writes, attempts, environment)
        if not isinstance(confirmation, AcceptedElicitation) or not confirmation.data.confirm:
            for attempt in attempts:
                attempt.decline()
            return WritesResult(
                written=0,
                not_written=len(writes),
                unknown=0,
                created=[],
                note="The user declined: nothing was written.",
            )

        async def progress(settled: int, total: int) -> None:
            await ctx.report_progress(settled, total, f"{settled} of {total} writes settled")

        for attempt in attempts:
            attempt.stage = "writing"
        result = await checked.environment.client.write_set(checked.writes, atomic=atomic, progress=progress)
        for attempt, outcome in zip(attempts, result.outcomes, strict=True):
            attempt.settle(outcome.outcome, outcome.error or result.error)
    return _result(checked, result)


async def check_writes(
    ctx: Context[AppState, Any], writes: list[Write], attempts: list[WriteAttempt], environment: str | None
) -> Checked:
    """Every write checked against the policy and the tables' metadata; a ToolError naming each bad one."""
    app = state(ctx)
    if len(writes) > app.policy.max_writes:
        raise ToolError(
            f"writes holds {len(writes)} writes; this server takes at most {app.policy.max_writes} in one call: "
            "split them into several calls."
        )
    target: Environment | None = None
    checked: dict[int, tuple[RowWrite, TableMetadata]] = {}
    problems: dict[int, ToolError | DataverseError | LookupError] = {}
    opened: dict[str, OpenTable] = {}  # by the table as written: open each once
    for index, (write, attempt) in enumerate(zip(writes, attempts, strict=True)):
        try:
            if write.table in opened:
                target, metadata, access = attempt.opened(opened[write.table])
            else:
                target, metadata, access = opened[write.table] = await attempt.open(environment, write.table)
            row_write = await _checked(target, access, metadata, write)
        except (ToolError, DataverseError, LookupError) as problem:
            if isinstance(problem, DataverseError) and not isinstance(problem, InvalidQuery | UnknownTable):
                raise  # the service or the network failed: nothing is wrong with the write
            problems[index] = problem
            continue
        if row_write.action == "create":
            attempt.identify(str(row_write.key))
        checked[index] = (row_write, metadata)
    problems |= _order_problems(checked)
    if problems:
        raise _refusal(sorted(problems.items()), len(writes))
    assert target is not None
    return Checked(target, [write for write, _ in checked.values()], [table for _, table in checked.values()])


async def _checked(target: Environment, access: TableAccess, metadata: TableMetadata, write: Write) -> RowWrite:
    """One write as the client sends it, or a ToolError saying what is wrong with it."""
    action, values = write.action, write.values or {}
    if action == "delete" and values:
        raise ToolError("a delete takes no values.")
    if action != "delete" and not values:
        raise ToolError(f"values is empty: an {action} needs at least one column and its value.")
    if write.etag is not None and action not in ("update", "delete"):
        raise ToolError(f"etag is for updates and deletes, not for an {action}.")
    body = {}
    if action != "delete":
        body = await request_body(target.client, access, metadata, values, creating=action in ("create", "upsert"))
    if action == "create":
        if write.key is not None:
            raise ToolError("a create takes its new row's id, not a key.")
        given = body.pop(metadata.primary_id, None)
        if given is not None and write.id is not None and uuid.UUID(str(given)) != write.id:
            raise ToolError(f"id and values.{metadata.primary_id} name different rows.")
        row_id = write.id or (uuid.UUID(str(given)) if given is not None else uuid.uuid4())
        return RowWrite("create", metadata.logical_name, row_id, body)
    if (write.id is None) == (write.key is None):
        raise ToolError("give the row's id, or its alternate key as key (not both).")
    key: Any = write.id
    if write.key is not None:
        unknown = [name for name in write.key if name.lower() not in metadata.columns]
        if unknown:
            raise unknown_columns(metadata, unknown)
        key = {name.lower(): value for name, value in write.key.items()}
    return RowWrite(action, metadata.logical_name, key, body, write.etag)


def _order_problems(checked: dict[int, tuple[RowWrite, TableMetadata]]) -> dict[int, ToolError]:
    """A row created in the set exists only once its create ran: each create comes once, and before the writes
    that bind to it or change it."""
    created: dict[tuple[str, str], int] = {}  # (entity set, id) -> the index of the write that creates it
    problems: dict[int, ToolError] = {}
    for index, (write, table) in checked.items():
        row = (table.entity_set_name.lower(), str(write.key))
        if write.action == "create" and row in created:
            problems[index] = ToolError(
                f"writes[{created[row]}] already creates the {table.logical_name} row {write.key}."
            )
        elif write.action == "create":
            created[row] = index
    for index, (write, table) in checked.items():
        referred = [_bound(value) for name, value in write.values.items() if name.endswith("@odata.bind")]
        if write.action != "create" and isinstance(write.key, uuid.UUID):
            referred.append((table.entity_set_name.lower(), str(write.key)))
        later = [created[row] for row in referred if row is not None and created.get(row, -1) > index]
        if later and index not in problems:
            problems[index] = ToolError(
                f"it refers to the row writes[{later[0]}] creates, which comes later: create it first."
            )
    return problems


def _bound(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str) or "(" not in value:
        return None
    entity_set, _, row_id = value.strip("/").rstrip(")").partition("(")
    return entity_set.lower(), row_id.lower()


def _refusal(problems: list[tuple[int, BaseException]], count: int) -> ToolError:
    """One error naming each bad write (the first `MAX_LISTED`) by its index: nothing was sent."""
    listed = [f"writes[{index}]: {end_sentence(_first_sentence(problem))}" for index, problem in problems[:MAX_LISTED]]
    more = len(problems) - MAX_LISTED
    if more > 0:
        listed.append(f"And {more} more.")
    bad = "is" if len(problems) == 1 else "are"
    text = f"{len(problems)} of {count} writes {bad} refused, so none was sent. " + " ".join(listed)
    refused = any(isinstance(problem, TableRefused) for _, problem in problems)
    return TableRefused(text) if refused else ToolError(text)


def _first_sentence(problem: BaseException) -> str:
    if isinstance(problem, DataverseError):
        return problem.message
    return str(problem.args[0] if problem.args else problem)


def _names(writes: Sequence[Write]) -> list[tuple[str, object]]:
    return [(write.table, write.id if write.id is not None else write.key) for write in writes]


def _result(checked: Checked, result: WriteSetResult) -> WritesResult:
    counts = Counter(outcome.outcome for outcome in result.outcomes)
    failures = [
        WriteFailure(
            index=index,
            table=write.table,
            id=outcome.id,
            outcome=outcome.outcome,
            error=_sentence(outcome.error or result.error),
        )
        for index, (write, outcome) in enumerate(zip(checked.writes, result.outcomes, strict=True))
        if outcome.outcome == "unknown" or (outcome.outcome == "not written" and outcome.error is not None)
    ]
    return WritesResult(
        written=counts["written"],
        not_written=counts["not written"],
        unknown=counts["unknown"],
        created=[
            outcome.id
            for write, outcome in zip(checked.writes, result.outcomes, strict=True)
            if write.action == "create" and outcome.outcome == "written" and outcome.id
        ],
        failures=failures or None,
        note=str(result.error) if result.error is not None else None,
    )


def _sentence(error: DataverseError | None) -> str:
    """A write's own failure in one sentence: Dataverse's code and message, or what went wrong."""
    if error is None:
        return ""
    text = error.message
    if isinstance(error, ServiceError):
        text = f"{error.code_text or error.status}: {text}"
    if error.written and error.written != "Nothing was written.":
        text = f"{end_sentence(text)} {error.written}"
    text = end_sentence(text)
    return text if len(text) <= MAX_SENTENCE else text[: MAX_SENTENCE - 1] + "…"
