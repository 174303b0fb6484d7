"""The read tools: list_environments, list_tables, describe_table, query_records, get_record."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from dataverse import DataverseClient, Expand, InvalidQuery, ODataQuery, Page, TableMetadata, fetch_entity

from ._arguments import AlternateKey, Columns, EnvironmentName, RowIdOrNone, TableName
from ._errors import reported_as_tool_errors, unknown_columns
from ._output import Budget, decode_cursor, encode_cursor, fit, shape_row, table_description
from ._state import AppState, Environment

READ: Final = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
MAX_BYTES: Final = 60_000
_EXPAND: Final = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\(([^()]*)\))?\s*$")


class EnvironmentItem(BaseModel):
    name: str
    url: str
    friendly_name: str | None = None


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


class QueryResult(BaseModel):
    rows: list[dict[str, Any]]
    count: int | None = None
    cursor: str | None = None
    truncated: str | None = None


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


async def open_table(
    ctx: Context[AppState, Any], environment: str | None, table: str
) -> tuple[Environment, TableMetadata]:
    app = state(ctx)
    target = await app.environments.open(environment)
    summary = await target.client.resolve_table(table)
    app.policy.check_table(summary.logical_name)
    return target, await target.client.table(summary.logical_name)


def check_columns(table: TableMetadata, columns: list[str]) -> None:
    unknown = [name for name in columns if name.lower() not in table.columns]
    if unknown:
        raise unknown_columns(table, unknown)


def parse_expand(app: AppState, table: TableMetadata, expand: list[str]) -> list[Expand]:
    """`primarycontactid` or `primarycontactid(fullname,emailaddress1)`, checked against the relationships."""
    parsed = []
    navigations = {r.referencing_navigation: r.referenced_table for r in table.many_to_one}
    navigations |= {r.referenced_navigation: r.referencing_table for r in table.one_to_many}
    for item in expand:
        match = _EXPAND.match(item)
        if not match or match.group(1) not in navigations:
            known = ", ".join(sorted(navigations)[:20])
            raise InvalidQuery(f"{item!r} is not a navigation property of {table.logical_name}; some are: {known}.")
        app.policy.check_table(navigations[match.group(1)])
        parsed.append(Expand(match.group(1), names(match.group(2))))
    return parsed


async def list_environments(ctx: Context[AppState, Any]) -> EnvironmentList:
    """The Dataverse environments you can use."""
    with reported_as_tool_errors():
        environments = await state(ctx).environments.all()
    return EnvironmentList(
        environments=[EnvironmentItem(name=e.name, url=e.url, friendly_name=e.friendly_name) for e in environments]
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
    with reported_as_tool_errors():
        target = await app.environments.open(environment)
        tables = await target.client.list_tables()
    words = (search or "").lower().split()
    found = [
        table
        for table in sorted(tables, key=lambda table: table.logical_name)
        if app.policy.allows_table(table.logical_name)
        and (include_system or not (table.is_intersect or table.is_activity))
        and all(any(word in name.lower() for name in table.names()) for word in words)
    ]
    start = int(decode_cursor(cursor).get("o", 0)) if cursor else 0
    page = found[start : start + page_size]
    more = start + page_size < len(found)
    return TableList(
        tables=[
            TableItem(
                name=t.logical_name, entity_set=t.entity_set_name, display_name=t.display_name, custom=t.is_custom
            )
            for t in page
        ],
        cursor=encode_cursor({"o": start + page_size}) if more else None,
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
        target, metadata = await open_table(ctx, environment, table)
        choices = await target.client.choices(metadata.logical_name)
    described = table_description(
        metadata,
        choices,
        columns=columns,
        include_relationships=include_relationships,
        include_keys=include_keys,
    )
    return TableDescription(**described)


async def query_records(
    ctx: Context[AppState, Any],
    table: TableName | None = None,
    select: Columns = None,
    filter: Annotated[str | None, Field(description="OData filter, e.g. name eq 'Contoso' and revenue gt 1000")] = None,
    orderby: Annotated[str | None, Field(description="e.g. createdon desc")] = None,
    top: Annotated[int | None, Field(ge=1, le=5000)] = None,
    expand: Annotated[
        list[str] | None, Field(description="Lookups to include, e.g. primarycontactid(fullname)")
    ] = None,
    count: bool = False,
    fetchxml: Annotated[str | None, Field(description="Instead of the OData parts")] = None,
    page_size: Annotated[int, Field(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Field(description="From the last result: next page")] = None,
    environment: EnvironmentName = None,
) -> QueryResult:
    """Query rows with OData parts or FetchXML, e.g. table="account", filter="contains(name,'Contoso')"."""
    app = state(ctx)
    with reported_as_tool_errors():
        if cursor:
            resume = decode_cursor(cursor)
            environment = resume.get("e", environment)
            table = resume.get("t", table)
        if not table and fetchxml:
            table = fetch_entity(fetchxml)
        if not table:
            raise InvalidQuery("Give table (or fetchxml, or the cursor of an earlier result).")
        target, metadata = await open_table(ctx, environment, table)
        if cursor:
            return await _continue(ctx, target, metadata, decode_cursor(cursor))
        columns = names(select)
        check_columns(metadata, columns)
        if fetchxml is not None:
            _check_fetch_tables(app, fetchxml)
            resume = {"x": fetchxml, "p": 1, "c": None, "s": 0, "n": page_size}
        else:
            query = ODataQuery(
                select=[metadata.columns[c.lower()].property_name for c in columns],
                filter=filter,
                orderby=_orderby(metadata, orderby),
                top=top,
                expand=parse_expand(app, metadata, expand or []),
                count=count,
            )
            # Encoded as httpx2 encodes params, without parsing the URL once more than the request will.
            params = urlencode(query.params())
            url = target.client.transport.url(metadata.entity_set_name) + (f"?{params}" if params else "")
            resume = {"u": url, "s": 0, "n": page_size}
        resume |= {"e": target.name, "t": metadata.logical_name, "k": bool(columns)}
        return await _continue(ctx, target, metadata, resume)


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
        target, metadata = await open_table(ctx, environment, table)
        if (id is None) == (key is None):
            raise InvalidQuery("Give either id or key, not both.")
        columns = names(select)
        check_columns(metadata, columns)
        selected = [metadata.columns[c.lower()].property_name for c in columns]
        row = await target.client.get(metadata.logical_name, id if id is not None else key or {}, select=selected)
    return Record(row=shape_row(row, keep_nulls=bool(columns)), etag=row.get("@odata.etag"))


READ_TOOL_FUNCTIONS: Final = (
    (list_environments, READ),
    (list_tables, READ),
    (describe_table, READ),
    (query_records, READ),
    (get_record, READ),
)


def _orderby(table: TableMetadata, orderby: str | None) -> list[tuple[str, bool]]:
    order = []
    for part in (orderby or "").split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidQuery(f"orderby {part.strip()!r} is not 'column [asc|desc]'.")
        check_columns(table, [words[0]])
        order.append((table.columns[words[0].lower()].property_name, len(words) == 2 and words[1].lower() == "desc"))
    return order


def _check_fetch_tables(app: AppState, fetchxml: str) -> None:
    for name in re.findall(r"<(?:entity|link-entity)\b[^>]*\bname\s*=\s*[\"']([^\"']+)[\"']", fetchxml):
        app.policy.check_table(name)


async def _continue(
    ctx: Context[AppState, Any], target: Environment, table: TableMetadata, resume: dict[str, Any]
) -> QueryResult:
    """Collect one result's rows from where `resume` points, within the row and byte budget."""
    client: DataverseClient = target.client
    page_size = int(resume.get("n", 50))
    positions: list[tuple[dict[str, Any], dict[str, Any]]] = []
    count = None
    while len(positions) < page_size:
        page = await _service_page(client, table, resume, page_size)
        count = page.count if count is None else count
        skip = int(resume.get("s", 0))
        for index, row in enumerate(page.rows[skip:], start=skip):
            positions.append((shape_row(row, keep_nulls=bool(resume.get("k"))), {**resume, "s": index}))
        following = _following(resume, page)
        await ctx.report_progress(len(positions), page_size)
        if following is None:
            resume = {}
            break
        resume = following
    rows, cut = fit((row for row, _ in positions), Budget(page_size, MAX_BYTES))
    if len(positions) > len(rows):
        resume = positions[len(rows)][1]
    notice = None
    if cut and len(rows) < page_size:
        notice = f"Stopped at {len(rows)} rows to stay under {MAX_BYTES} bytes; select fewer columns or pass cursor."
    return QueryResult(rows=rows, count=count, cursor=encode_cursor(resume) if resume else None, truncated=notice)


async def _service_page(client: DataverseClient, table: TableMetadata, resume: dict[str, Any], page_size: int) -> Page:
    """The service page `resume` points at: a FetchXML page and cookie, or an OData URL."""
    if "x" in resume:
        return await client.fetch_page(table.entity_set_name, resume["x"], int(resume["p"]), resume.get("c"), page_size)
    return await client.continue_query(str(resume["u"]), page_size=page_size)


def _following(resume: dict[str, Any], page: Page) -> dict[str, Any] | None:
    if "x" in resume:
        if not page.more_records:
            return None
        return {**resume, "p": int(resume["p"]) + 1, "c": page.paging_cookie, "s": 0}
    if page.next_link is None:
        return None
    return {**resume, "u": page.next_link, "s": 0}
