"""list_changes: the rows of a table created, updated and deleted since a point, for workflows that poll.

A table with change tracking is read through the service's delta tokens (`dataverse/_changes.py`): deletions are
seen. Any other table, and a `since` given as a date-time, is read by `modifiedon`: deletions are not seen, which
the result says. Either way the result ends with a token for next time; reading from a token is at-least-once
(a change may come twice, never not at all), which is why date-time tokens start a minute early.

A token is sealed like a cursor (signed, bound to the caller, naming its environment and table), but with a key
that outlives the process (`AppState.change_tokens`: a workflow keeps its token between runs) and under its own
tool name, so a cursor is never taken for a token or the other way round; it lives 90 days, longer than the
service keeps changes (7 days by default), so it is the service that says when a delta token has expired.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from dataverse import (
    ChangePosition,
    ChangeTrackingOff,
    InvalidQuery,
    ODataQuery,
    PermissionDenied,
    Position,
    TableMetadata,
)

from ._arguments import Columns, EnvironmentName, TableName
from ._cursor import CursorExpired
from ._errors import reported_as_tool_errors
from ._output import Budget, fit, shape_row
from ._query import check_columns
from ._read import OpenTable, names, open_table, state
from ._state import AppState

TOOL: Final = "list_changes"
SEALED_AS: Final = "list_changes token"  # what a token is sealed for: never a cursor, and the other way round
TOKEN_LIFETIME: Final = 90 * 24 * 3600.0
EARLY: Final = timedelta(minutes=1)  # a date-time token starts this much before the read it follows
DEFAULT_PAGE_SIZE: Final = 100
MAX_BYTES: Final = 60_000
DELTA: Final = "d"  # a token of the service's change tracking
DATES: Final = "t"  # a token of modifiedon


class ChangeList(BaseModel):
    changes: list[dict[str, Any]]
    token: str | None = None
    cursor: str | None = None
    note: str | None = None


async def list_changes(
    ctx: Context[AppState, Any],
    table: TableName,
    since: Annotated[str | None, Field(description="Token from the last call, or ISO date-time")] = None,
    select: Columns = None,
    page_size: Annotated[int | None, Field(ge=1, le=500)] = None,
    cursor: Annotated[str | None, Field(description="From the last result: next page")] = None,
    environment: EnvironmentName = None,
) -> ChangeList:
    """Rows created, updated and deleted since a point; without since, only a token for now."""
    app = state(ctx)
    caller = app.environments.caller_id
    with reported_as_tool_errors():
        opened = await open_table(ctx, environment, table)
        metadata = opened.metadata
        columns = tuple(names(select))
        check_columns(metadata, list(columns))
        if cursor:
            if since is not None:
                raise ToolError("Pass the cursor alone (it continues the same changes), or since without it.")
            resume = app.cursors.open(cursor, caller=caller, tool=TOOL)
            _check_same_table(resume, opened)
            if select is not None and tuple(resume.get("c") or ()) != columns:
                raise ToolError("The cursor continues changes with other columns: pass it without select.")
            return await _read(app, opened, resume)
        if since is None:
            return await _token_for_now(app, opened)
        moment = _date_time(since)
        if moment is None:
            try:
                start = app.change_tokens.open(since, caller=caller, tool=SEALED_AS)
            except CursorExpired:
                raise ToolError(
                    "That token has expired (tokens last 90 days): call list_changes without since for a new one."
                ) from None
            _check_same_table(start, opened)
        else:
            # From a date-time deletions are not visible; the token returned is where change tracking takes over.
            delta = await _delta_start(opened)
            start = {"m": DATES, "s": _iso(moment), **({"n": delta} if delta else {})}
        read = {**start, "c": list(columns), "z": page_size or DEFAULT_PAGE_SIZE}
        return await _read(app, opened, read)


def _date_time(text: str) -> datetime | None:
    """An ISO date-time (UTC unless it says otherwise), or None when `text` is not one (a `since` that is not, is a
    token)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(served: datetime | None) -> datetime:
    """The service's clock when it answered, or this machine's when it did not say."""
    return served or datetime.now(UTC)


def _environment_tag(opened: OpenTable) -> str:
    """The environment a token is for: a digest of its name, so the token stays short (whole in itself: a long one
    would be kept in the process, and a workflow's token must outlive it). The name, not the URL: the embedded
    sandbox serves each run on new ports."""
    return hashlib.sha256(opened.target.name.encode()).hexdigest()[:8]


def _check_same_table(sealed: dict[str, Any], opened: OpenTable) -> None:
    if sealed.get("e") != _environment_tag(opened):
        raise ToolError(
            f"That token or cursor is for another environment than {opened.target.name}: pass the environment it "
            "came from."
        )
    if sealed.get("t") != opened.metadata.logical_name:
        raise ToolError(
            f"That token or cursor is for {sealed.get('t')}, not {opened.metadata.logical_name}: pass the table it "
            "came from."
        )


async def _token_for_now(app: AppState, opened: OpenTable) -> ChangeList:
    """A token for this moment: the service's delta token where the table is tracked, else the service's clock."""
    delta = await _delta_start(opened)
    if delta is not None:
        return ChangeList(changes=[], token=_seal_token(app, opened, delta))
    client, metadata = opened.target.client, opened.metadata
    probe = ODataQuery(select=[metadata.primary_id])
    page = await client.read_page(metadata.logical_name, probe, page_size=1, annotations=False)
    token = _seal_token(app, opened, {"m": DATES, "s": _iso(_now(page.served_at) - EARLY)})
    return ChangeList(changes=[], token=token, note=_by_date(metadata))


async def _delta_start(opened: OpenTable) -> dict[str, Any] | None:
    """The service's delta token for now, or None where the table is not tracked for this caller."""
    metadata = opened.metadata
    if not metadata.summary.change_tracking:
        return None
    try:
        deltatoken, served = await opened.target.client.current_change_token(metadata.logical_name)
    except (PermissionDenied, ChangeTrackingOff):
        # "The calling user must have organization level read access to the table" (Microsoft's page); or the
        # definitions read earlier were older than the table's settings.
        return None
    return {"m": DELTA, "k": deltatoken, "s": _iso(_now(served))}


def _by_date(metadata: TableMetadata) -> str:
    """Why a table's changes are read by date, deletions unseen."""
    if not metadata.summary.change_tracking:
        return f"{metadata.logical_name} has no change tracking, so deleted rows are not seen."
    return (
        f"The service does not track {metadata.logical_name}'s changes for you (it needs read access to all its "
        "rows): changes are read by date, so deleted rows are not seen."
    )


def _seal_token(app: AppState, opened: OpenTable, state: dict[str, Any]) -> str:
    sealed = {"e": _environment_tag(opened), "t": opened.metadata.logical_name, **state}
    return app.change_tokens.seal(sealed, caller=app.environments.caller_id, tool=SEALED_AS, lifetime=TOKEN_LIFETIME)


async def _read(app: AppState, opened: OpenTable, read: dict[str, Any]) -> ChangeList:
    """One page of changes as `read` (a token's state with the columns and page size, or a cursor's) describes."""
    metadata = opened.metadata
    columns = [str(column) for column in read.get("c") or ()]
    page_size = int(read.get("z") or DEFAULT_PAGE_SIZE)
    since = _date_time(str(read["s"])) or datetime.now(UTC)  # always one: the server wrote it
    reader = _read_delta if read.get("m") == DELTA else _read_dates
    budget = Budget(page_size, MAX_BYTES)
    changes, following, next_token = await reader(opened, read, columns, page_size, since)
    skip = int(read.get("i") or 0)
    shown, cut = fit(changes[skip:], budget)
    if cut and read.get("p") is None and not skip:
        # The first page again, a fifth shorter than what fitted, and every later page as long: the service may
        # count pages in rows, so their length is chosen once, on the first page.
        page_size = max(1, len(shown) * 4 // 5)
        read = {**read, "z": page_size}
        changes, following, next_token = await reader(opened, read, columns, page_size, since)
        shown, cut = fit(changes, budget)
    if cut:  # a later page longer than the first: the rest of it comes with the next cursor
        following, skip = read.get("p"), skip + len(shown)
    else:
        skip = 0
    more = cut or following is not None
    note = None
    if read.get("m") != DELTA:
        note = _by_date(metadata)
        if next_token.get("m") == DELTA:
            note = "Read by date: deleted rows are not seen; from the token on they are."
    if not more:
        return ChangeList(changes=shown, token=_seal_token(app, opened, next_token), note=note)
    state = {**read, "e": _environment_tag(opened), "t": metadata.logical_name, "p": following, "i": skip}
    if read.get("m") == DATES:
        state["n"] = next_token  # fixed by the first page's clock
    cursor = app.cursors.seal(state, caller=app.environments.caller_id, tool=TOOL)
    return ChangeList(changes=shown, cursor=cursor, note=note)


# The changes of one service page, where the next page starts (None: this is the last), the token for next time.
ReadPage = tuple[list[dict[str, Any]], Any, dict[str, Any]]


async def _read_delta(
    opened: OpenTable, read: dict[str, Any], columns: list[str], page_size: int, since: datetime
) -> ReadPage:
    """The service's changes since the token: created or updated (by `createdon`), then deleted."""
    metadata = opened.metadata
    position = ChangePosition.from_json(read["p"]) if read.get("p") is not None else None
    sent = _with(metadata, columns, "createdon")
    page = await opened.target.client.read_changes(
        metadata.logical_name, sent, deltatoken=str(read["k"]), position=position, page_size=page_size
    )
    changes = []
    for change in page.changes:
        if change.row is None:
            changes.append({"change": "deleted", "id": change.id})
            continue
        created = _is_after(change.row.get("createdon"), since)
        changes.append(_entry("created" if created else "updated", change.id, change.row, opened, columns))
    following = page.next.to_json() if page.next else None
    return changes, following, {"m": DELTA, "k": page.deltatoken, "s": _iso(_now(page.served_at))}


async def _read_dates(
    opened: OpenTable, read: dict[str, Any], columns: list[str], page_size: int, since: datetime
) -> ReadPage:
    """Rows whose `modifiedon` is at or after `since`, oldest change first; created when `createdon` is too."""
    metadata = opened.metadata
    if "modifiedon" not in metadata.columns:
        raise InvalidQuery(f"{metadata.logical_name} has no modifiedon column, so its changes cannot be listed.")
    position = Position.from_json(read["p"]) if read.get("p") is not None else None
    query = ODataQuery(
        select=_with(metadata, columns, "createdon", "modifiedon"),
        filter=f"modifiedon ge {_iso(since)}",
        orderby=[("modifiedon", False), (metadata.primary_id, False)],
    )
    client = opened.target.client
    page = await client.read_page(metadata.logical_name, query, page_size=page_size, position=position)
    changes = [
        _entry(
            "created" if _is_after(row.get("createdon"), since) else "updated",
            str(row.get(metadata.primary_id)),
            row,
            opened,
            columns,
        )
        for row in page.rows
    ]
    following = page.next.to_json() if page.next else None
    # The first page's clock (a minute early) is where the next read starts, unless a token was chosen already.
    return changes, following, read.get("n") or {"m": DATES, "s": _iso(_now(page.served_at) - EARLY)}


def _with(metadata: TableMetadata, columns: list[str], *needed: str) -> list[str]:
    """The columns to ask for: the ones wanted (all: none named) and those the tool needs itself."""
    if not columns:
        return []
    wanted = [metadata.columns[column.lower()].property_name for column in columns]
    return wanted + [name for name in needed if name in metadata.columns and name not in wanted]


def _is_after(value: Any, since: datetime) -> bool:
    moment = _date_time(value) if isinstance(value, str) else None
    return moment is not None and moment >= since


def _entry(kind: str, row_id: str, row: dict[str, Any], opened: OpenTable, columns: list[str]) -> dict[str, Any]:
    shaped = shape_row(row, opened.access.allows, table=opened.metadata, select=columns, keep_nulls=bool(columns))
    shaped.pop(opened.metadata.primary_id, None)
    return {"change": kind, "id": row_id, **shaped}
