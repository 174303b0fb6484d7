"""The audit log of writes: one line on `dynamics_mcp.audit` for every attempted write, whatever became of it.

    create_record outcome=written table=lead id=0f8e5a2c-... environment=contoso user=alice@contoso.com
    delete_record outcome="not written" reason=declined table=account id=5d1c07b4-... environment=contoso user=...
    update_record outcome=unknown reason=failed table=account id=5d1c07b4-... environment=contoso user=...
    create_record outcome="not written" reason=invalid table='acount\\nfake line' id=- environment=- user=...
    write_records outcome=written table=contact id=77c8ba72-... environment=contoso user=...   (one per write)
    run_action outcome=written action=QualifyLead table=lead id=0f8e5a2c-... environment=contoso user=...

Outcomes: `written`; `"not written"`; `unknown` when the service may have applied the write (its answer was
lost after every retry, or the call was interrupted while the request was out). A write that did not happen
says why: `refused` (the caller's scopes, the table policy, read-only mode, the service's security roles),
`invalid` (an argument, name or value was rejected), `unconfirmed` (nobody confirmed a delete), `declined` (the
user said no or cancelled), `failed` (the service or the network failed), `interrupted` (the call was cancelled
or broke off).

A line names the tool, table, row, environment and caller, never values nor error text (which may quote
values). Names the model typed are logged quoted, escaped and cut short until they resolve to a real table or
environment, so a name can never end a line or forge one. run_action logs the actions it runs or refuses, and no
line for a function (a read).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from dataverse import (
    NOTHING_WRITTEN,
    DataverseError,
    InvalidQuery,
    PermissionDenied,
    UnknownTable,
    ValidationFailed,
    WriteRefused,
)

from ._policy import TableRefused
from ._read import OpenTable, open_table
from ._state import AppState

audit = logging.getLogger("dynamics_mcp.audit")

Outcome = Literal["written", "not written", "unknown"]
Reason = Literal["refused", "invalid", "unconfirmed", "declined", "failed", "interrupted"]
Stage = Literal["checking", "writing", "written", "declined"]
T = TypeVar("T")

UNTRUSTED_LENGTH: Final = 64  # characters of a name the model typed that reach the log
_PLAIN: Final = re.compile(r"[\w.@:/+-]{1,256}", re.ASCII)
_INVALID: Final = (InvalidQuery, UnknownTable, ValidationFailed, LookupError, ToolError)


class WriteAttempt:
    """One call of a write tool as the audit log sees it; `audited` writes its line when the call ends."""

    def __init__(
        self,
        ctx: Context[AppState, Any],
        tool: str,
        table: str | None,
        id: object = None,
        environment: str | None = None,
        action: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.tool = tool
        self.table = "-" if table is None else _untrusted(table)
        self.action = None if action is None else _untrusted(action)
        # False once the call turns out to write nothing by its nature (run_action of a function): no line then.
        self.is_write = True
        # Each name is kept as its log field: quoted until it is resolved or checked.
        self.id = "-" if id is None else str(id) if isinstance(id, uuid.UUID) else _untrusted(str(id))
        self.environment = "-" if environment is None else _untrusted(environment)
        # Why the call stops, for a refusal the tool raises itself (e.g. `unconfirmed`).
        self.reason: Reason | None = None
        self.stage: Stage = "checking"
        self.settled: tuple[Outcome, Reason | None] | None = None  # one write of a set, as the client reported it

    async def open(self, environment: str | None, table: str) -> OpenTable:
        """`open_table`, naming the environment and table from here on; its tool errors are refusals."""
        try:
            found = await open_table(self.ctx, environment, table)
        except ToolError:
            self.reason = "refused"  # the caller's scopes or the table policy: the names were not checked yet
            raise
        return self.opened(found)

    def opened(self, found: OpenTable) -> OpenTable:
        """What `open` found for another write of the same call, for this one: the names it logs from here on."""
        self.environment, self.table = _field(found.target.name), _field(found.metadata.logical_name)
        return found

    def resolved(self, *, environment: str | None = None, table: str | None = None, action: str | None = None) -> None:
        """Names checked or resolved by the tool itself, logged as they are from here on."""
        if environment is not None:
            self.environment = _field(environment)
        if table is not None:
            self.table = _field(table)
        if action is not None:
            self.action = _field(action)

    def identify(self, row_id: str) -> None:
        """The row's id, once known (a GUID this server made or the service returned)."""
        self.id = _field(row_id)

    async def write(self, request: Awaitable[T]) -> T:
        """Await the request that writes: while it is out, an unclear failure leaves the outcome unknown."""
        self.stage = "writing"
        result = await request
        self.stage = "written"
        return result

    def decline(self) -> None:
        """The user declined or cancelled the confirmation: the call ends without writing."""
        self.stage = "declined"

    def settle(self, outcome: Outcome, error: BaseException | None = None) -> None:
        """What became of this write, once a request carrying several writes answered; `error` its own failure."""
        if outcome == "written":
            self.stage = "written"
            return
        reason: Reason = "failed"
        if isinstance(error, WriteRefused | PermissionDenied):
            reason = "refused"
        self.settled = (outcome, reason)

    def ending(self, error: BaseException | None) -> tuple[Outcome, Reason | None]:
        """The outcome of the call, left normally (`error` None) or by `error`."""
        if self.stage == "written":
            return "written", None
        if self.settled is not None:
            return self.settled
        if error is None:
            # A tool must `write` or `decline`; one that did neither cannot say what happened.
            return ("not written", "declined") if self.stage == "declined" else ("unknown", None)
        if isinstance(error, DataverseError):
            if error.may_have_written or error.written not in (None, NOTHING_WRITTEN):
                return "unknown", "failed"
            if isinstance(error, WriteRefused | PermissionDenied):
                return "not written", "refused"
            return "not written", "invalid" if isinstance(error, _INVALID) else "failed"
        if self.stage == "writing":
            return "unknown", "interrupted"  # cancelled or crashed while the request may have been sent
        if self.reason is not None:
            return "not written", self.reason
        if isinstance(error, TableRefused):
            return "not written", "refused"
        if isinstance(error, _INVALID):
            return "not written", "invalid"
        return "not written", "failed" if isinstance(error, Exception) else "interrupted"

    def log(self, outcome: Outcome, reason: Reason | None) -> None:
        if not self.is_write:
            return
        audit.info(
            "%s outcome=%s%s%s table=%s id=%s environment=%s user=%s",
            self.tool,
            '"not written"' if outcome == "not written" else outcome,
            f" reason={reason}" if reason else "",
            f" action={self.action}" if self.action is not None else "",
            self.table,
            self.id,
            self.environment,
            _field(self._caller()),
        )

    def _caller(self) -> str:
        try:
            return self.ctx.request_context.lifespan_context.environments.caller
        except Exception:  # the line is written even when the caller cannot be named; it must not mask the error
            return "-"


@contextmanager
def audited(
    ctx: Context[AppState, Any],
    tool: str,
    *,
    table: str | None,
    id: object = None,
    environment: str | None = None,
    checks_only: bool = False,
    action: str | None = None,
) -> Iterator[WriteAttempt]:
    """Audit the write tool call run in the block: one line when it ends, however it ends.

    Open the table with `attempt.open`, send the write with `attempt.write(...)`, or `attempt.decline()`.
    `checks_only`: the block only checks before the write is confirmed (a resolver that asks the user); it logs
    only when it stops the call, and the tool body's block logs every other ending.
    """
    attempt = WriteAttempt(ctx, tool, table, id, environment, action)
    try:
        yield attempt
    except BaseException as error:
        attempt.log(*attempt.ending(error))
        raise
    if not checks_only:
        attempt.log(*attempt.ending(None))


@contextmanager
def audited_each(
    ctx: Context[AppState, Any],
    tool: str,
    writes: Sequence[tuple[str, object]],
    *,
    environment: str | None = None,
    checks_only: bool = False,
) -> Iterator[list[WriteAttempt]]:
    """`audited` for a call that carries several writes, given as (table, id): one line for each write."""
    attempts = [WriteAttempt(ctx, tool, table, row_id, environment) for table, row_id in writes]
    try:
        yield attempts
    except BaseException as error:
        for attempt in attempts:
            attempt.log(*attempt.ending(error))
        raise
    if not checks_only:
        for attempt in attempts:
            attempt.log(*attempt.ending(None))


def _untrusted(text: str) -> str:
    """A name the model typed, for a log line: quoted and escaped, so never taken for a resolved name."""
    return ascii(text[:UNTRUSTED_LENGTH])


def _field(text: str) -> str:
    """A name this server resolved or checked, as one log field: quoted only if it holds more than a name."""
    return text if _PLAIN.fullmatch(text) else ascii(text)
