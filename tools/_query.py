"""query_records: OData parts or FetchXML, checked against the table policy as they will be sent, paged by cursor.

The policy is applied to what the service will read, not to what the text seems to say: every table of the
parsed FetchXML tree (which is the tree sent), every navigation path of `$filter` (lambda variables followed to
their collection), every `$expand`. A cursor holds the query's arguments, not a URL; each resumed page builds and
checks the query again, and the client adds only the service's paging token to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from dataverse import (
    DataverseClient,
    Expand,
    FetchQuery,
    InvalidQuery,
    ODataQuery,
    Position,
    TableMetadata,
    filter_paths,
    rewrite_lookup_names,
)

from ._arguments import Columns, EnvironmentName, TableName
from ._errors import reported_as_tool_errors, unknown_columns
from ._output import Budget, fit, json_size, shape_row
from ._policy import TableAccess
from ._read import names, state
from ._state import AppState, Environment

MAX_BYTES: Final = 60_000
DEFAULT_PAGE_SIZE: Final = 50
TOOL: Final = "query_records"
NOT_ODATA: Final = frozenset({"fetchxml", "page_size"})


class QueryResult(BaseModel):
    rows: list[dict[str, Any]]
    count: int | None = None
    cursor: str | None = None
    truncated: str | None = None


@dataclass(frozen=True)
class QueryArguments:
    """The arguments that define a query: what a cursor carries, and what arguments given with it must match."""

    select: tuple[str, ...] = ()
    filter: str | None = None
    orderby: str | None = None
    top: int | None = None
    expand: tuple[str, ...] = ()
    count: bool = False
    apply: str | None = None
    fetchxml: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE

    def to_json(self) -> dict[str, Any]:
        """Only what differs from the defaults: cursors stay short."""
        default = QueryArguments()
        return {name: value for name, value in asdict(self).items() if value != getattr(default, name)}

    @classmethod
    def from_json(cls, data: Any) -> QueryArguments:
        if not isinstance(data, dict) or not set(data) <= {field.name for field in fields(cls)}:
            raise InvalidQuery("That cursor is not valid here.")
        values = {name: tuple(value) if isinstance(value, list) else value for name, value in data.items()}
        return cls(**values)  # type: ignore[arg-type]  # the server's own signed state

    def contradictions(self, given: dict[str, Any]) -> list[str]:
        """The given arguments (None: not given) that differ from this query's."""
        return [name for name, value in given.items() if value is not None and value != getattr(self, name)]


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
    count: bool | None = None,
    apply: Annotated[str | None, Field(description="Aggregate, e.g. groupby((ownerid),aggregate($count as n))")] = None,
    fetchxml: Annotated[str | None, Field(description="Instead of the OData parts")] = None,
    page_size: Annotated[int | None, Field(ge=1, le=500)] = None,
    cursor: Annotated[str | None, Field(description="From the last result: next page")] = None,
    environment: EnvironmentName = None,
) -> QueryResult:
    """Query rows with OData parts or FetchXML, e.g. table="account", filter="contains(name,'Contoso')"."""
    app = state(ctx)
    columns = tuple(names(select)) if select is not None else None
    expanded = tuple(expand) if expand is not None else None
    given: dict[str, Any] = {
        "select": columns,
        "filter": filter,
        "orderby": orderby,
        "top": top,
        "expand": expanded,
        "count": count,
        "apply": apply,
        "fetchxml": fetchxml,
        "page_size": page_size,
    }
    with reported_as_tool_errors():
        position: Position | None = None
        skip = 0
        if cursor:
            resume = app.cursors.open(cursor, caller=app.environments.caller_id, tool=TOOL)
            target = await app.environments.open(str(resume.get("e")))
            arguments = QueryArguments.from_json(resume.get("a"))
            logical_name = str(resume.get("t"))
            position = Position.from_json(resume["p"]) if resume.get("p") is not None else None
            skip = int(resume.get("s") or 0)
            await _check_same_query(app, target, logical_name, arguments, given, table, environment)
        else:
            arguments = _new_query(given)
            logical_name = table or (FetchQuery.parse(fetchxml).entity if fetchxml is not None else "")
            if not logical_name:
                raise InvalidQuery("Give table (or fetchxml, or the cursor of an earlier result).")
            target = await app.environments.open(environment)
        access = await app.access(target)
        summary = await target.client.resolve_table(logical_name)
        access.check(summary.logical_name)
        metadata = await target.client.table(summary.logical_name)
        query = await build_query(target.client, access, metadata, arguments)
        return await _collect(ctx, app, target, access, metadata, arguments, query, position, skip)


def _new_query(given: dict[str, Any]) -> QueryArguments:
    """The arguments of a query without a cursor; FetchXML and OData parts exclude each other."""
    odata_parts = [name for name, value in given.items() if value is not None and name not in NOT_ODATA]
    if given["fetchxml"] is not None and odata_parts:
        raise InvalidQuery(
            f"fetchxml replaces the OData parts, but {', '.join(odata_parts)} came with it: "
            "give either fetchxml or select/filter/orderby/top/expand/count/apply."
        )
    others = [name for name in odata_parts if name != "apply"]
    if given["apply"] is not None and others:
        raise InvalidQuery(
            f"apply aggregates on its own, but {', '.join(others)} came with it: filter inside it, e.g. "
            'apply="filter(statecode eq 0)/groupby((ownerid),aggregate($count as n))".'
        )
    return QueryArguments(
        select=given["select"] or (),
        filter=given["filter"],
        orderby=given["orderby"],
        top=given["top"],
        expand=given["expand"] or (),
        count=bool(given["count"]),
        apply=given["apply"],
        fetchxml=given["fetchxml"],
        page_size=given["page_size"] or DEFAULT_PAGE_SIZE,
    )


async def _check_same_query(
    app: AppState,
    target: Environment,
    logical_name: str,
    arguments: QueryArguments,
    given: dict[str, Any],
    table: str | None,
    environment: str | None,
) -> None:
    """A cursor passed with arguments of another query is an error, never silently one or the other."""
    contradicting = arguments.contradictions(given)
    if table and (await target.client.resolve_table(table)).logical_name != logical_name:
        contradicting.insert(0, "table")
    if environment and (await app.environments.open(environment)).url != target.url:
        contradicting.insert(0, "environment")
    if contradicting:
        raise ToolError(
            f"The cursor continues a query of {logical_name} in {target.name}, and {', '.join(contradicting)} "
            "asks for another: pass the cursor alone (or with that query's arguments), or run the new query "
            "without a cursor."
        )


async def build_query(
    client: DataverseClient, access: TableAccess, table: TableMetadata, arguments: QueryArguments
) -> ODataQuery | FetchQuery:
    """The query to send, checked column by column and table by table against the policy."""
    if arguments.fetchxml is not None:
        return await _checked_fetch(client, access, table, arguments.fetchxml)
    columns = list(arguments.select)
    check_columns(table, columns)
    # What is checked is what is sent: lookups named by their logical name are rewritten first.
    text = rewrite_lookup_names(arguments.filter, table.columns) if arguments.filter else None
    apply = rewrite_lookup_names(arguments.apply, table.columns) if arguments.apply else None
    for sent in (text, apply):
        if sent:  # $apply's groupby and filter name paths as $filter does
            await _check_filter(client, access, table, sent)
    return ODataQuery(
        select=[table.columns[column.lower()].property_name for column in columns],
        filter=text,
        orderby=_orderby(table, arguments.orderby),
        top=arguments.top,
        expand=_expand(access, table, arguments.expand),
        count=arguments.count,
        extra={"$apply": apply} if apply else {},
    )


async def _checked_fetch(
    client: DataverseClient, access: TableAccess, table: TableMetadata, fetchxml: str
) -> FetchQuery:
    """The parsed FetchXML with each table name resolved and allowed; that very tree is what is sent."""
    query = FetchQuery.parse(fetchxml)
    resolved: dict[str, str] = {}
    for name in query.tables():
        logical_name = (await client.resolve_table(name)).logical_name
        access.check(logical_name)
        resolved[name] = logical_name
    if resolved[query.entity] != table.logical_name:
        raise InvalidQuery(
            f"The fetchxml reads {resolved[query.entity]}, not {table.logical_name}: "
            "leave table out, or make them agree."
        )
    return query.with_tables(resolved.__getitem__)


async def _check_filter(client: DataverseClient, access: TableAccess, table: TableMetadata, text: str) -> None:
    """Every navigation path of the filter must reach allowed tables only; an unknown step is refused."""
    for path in filter_paths(text):
        current = table
        for index, segment in enumerate(path):
            target = current.navigation_target(segment)
            if target is not None:
                access.check(target)
                if index + 1 < len(path) and path[index + 1] not in ("any", "all"):
                    current = await client.table(target)
                continue
            if len(path) == 1 or current.has_property(segment) or segment in ("any", "all"):
                break
            raise InvalidQuery(
                f"filter: in {'/'.join(path)!r}, {segment!r} is neither a column nor a relationship of "
                f"{current.logical_name}. Use describe_table with include_relationships for the names."
            )


def check_columns(table: TableMetadata, columns: list[str]) -> None:
    unknown = [name for name in columns if name.lower() not in table.columns]
    if unknown:
        raise unknown_columns(table, unknown)


def _expand(access: TableAccess, table: TableMetadata, expand: tuple[str, ...]) -> list[Expand]:
    """`primarycontactid` or `primarycontactid(fullname,emailaddress1)`, checked against the relationships."""
    parsed = []
    for item in expand:
        navigation, _, rest = item.strip().partition("(")
        navigation = navigation.strip()
        target = table.navigation_target(navigation)
        columns = rest.removesuffix(")") if rest.endswith(")") else None
        if target is None or (rest and (columns is None or "(" in columns or ")" in columns)):
            known = ", ".join(sorted(r.referencing_navigation for r in table.many_to_one)[:20])
            raise InvalidQuery(f"{item!r} is not a navigation property of {table.logical_name}; some are: {known}.")
        access.check(target)
        parsed.append(Expand(navigation, names(columns)))
    return parsed


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


async def _collect(
    ctx: Context[AppState, Any],
    app: AppState,
    target: Environment,
    access: TableAccess,
    table: TableMetadata,
    arguments: QueryArguments,
    query: ODataQuery | FetchQuery,
    position: Position | None,
    skip: int,
) -> QueryResult:
    """One result's rows from `position` (skipping `skip` rows of that page), within the row and byte budget."""
    page_size = arguments.page_size
    keep_nulls = bool(arguments.select)
    found: list[tuple[dict[str, Any], Position | None, int]] = []  # each row, and where it is in the service's pages
    count = None
    following: tuple[Position | None, int] | None = None  # where the next result starts; None: nothing follows
    while following is None or len(found) < page_size:
        page = await target.client.read_page(table.logical_name, query, page_size=page_size, position=position)
        count = page.count if count is None else count
        for index, row in enumerate(page.rows[skip:], start=skip):
            shaped = shape_row(row, access.allows, table=table, select=arguments.select, keep_nulls=keep_nulls)
            found.append((shaped, position, index))
        await ctx.report_progress(len(found), page_size)
        if page.next is None:
            following = None
            break
        position, skip = page.next, 0
        following = (position, 0)
    rows, cut = fit((row for row, _, _ in found), Budget(page_size, MAX_BYTES))
    if len(found) > len(rows):
        _, at, index = found[len(rows)]
        following = (at, index)
    notice = None
    if cut and len(rows) < page_size:
        notice = (
            f"Stopped at {len(rows)} rows ({json_size(rows):,} bytes of JSON) to stay under {MAX_BYTES:,} bytes; "
            "select fewer columns or pass cursor."
        )
    cursor = None
    if following is not None:
        at, index = following
        state = {
            "e": target.name,
            "t": table.logical_name,
            "a": arguments.to_json(),
            "p": at.to_json() if at else None,
            "s": index,
        }
        cursor = app.cursors.seal(state, caller=app.environments.caller_id, tool=TOOL)
    return QueryResult(rows=rows, count=count, cursor=cursor, truncated=notice)
