"""search_records: relevance search across tables through Dataverse search, inside the table policy.

A table the policy refuses is never asked for: the search names its tables (`entities`) whenever the policy
refuses any, as the tables the index holds that the policy allows, and a hit of another table is dropped all the
same. A hit shows the primary name only (the search is asked for no other column), and the matched words of each
column. Where search is off, named tables fall back to a primary-name `contains` query, and the result says so.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from dataverse import (
    DataverseClient,
    InvalidQuery,
    ODataQuery,
    SearchDisabled,
    SearchHit,
    TableSummary,
    filter_paths,
    literal,
)

from ._arguments import EnvironmentName
from ._errors import reported_as_tool_errors
from ._policy import TableAccess
from ._read import state

DEFAULT_TOP: Final = 10
MAX_TOP: Final = 100
_HIGHLIGHT: Final = re.compile(r"\{/?crmhit\}")
_SEARCH_SYNTAX: Final = re.compile(r'["*+|()\\-]')  # simple search syntax, left out of the fallback's contains


class Hit(BaseModel):
    table: str
    id: str
    name: str | None = None
    score: float | None = None
    # The matched words of each column, each match between ** and **.
    highlights: dict[str, str] | None = None


class SearchResults(BaseModel):
    hits: list[Hit]
    note: str | None = None


async def search_records(
    ctx: Context[Any, Any],
    search: Annotated[str, Field(min_length=1, max_length=100)],
    tables: list[str] | None = None,
    filter: Annotated[str | None, Field(description="OData filter")] = None,
    top: Annotated[int | None, Field(ge=1, le=MAX_TOP)] = None,
    environment: EnvironmentName = None,
) -> SearchResults:
    """Relevance search across tables (Dataverse search), e.g. search="Fabrikam"."""
    app = state(ctx)
    with reported_as_tool_errors():
        target = await app.environments.open(environment)
        client = target.client
        access = await app.access(target)
        named = [await _allowed(client, access, name) for name in tables or ()]
        if filter:
            _check_search_filter(filter)
        try:
            asked = named or await _searchable(client, access)
            found = await client.search(
                search, tables=[table.logical_name for table in asked], filter=filter, top=top or DEFAULT_TOP
            )
        except SearchDisabled as error:
            if not named:
                raise ToolError(f"{error} Or name tables: their primary names are then searched instead.") from None
            return await _by_primary_name(client, named, search, filter, top or DEFAULT_TOP, error)
        summaries = {summary.logical_name: summary for summary in await client.list_tables()}
        hits = [
            _hit(hit, summaries.get(hit.table.lower()), highlights)
            for hit in found.hits
            if access.allows(hit.table) and (highlights := await _readable_matches(client, access, hit)) is not None
        ]
    return SearchResults(hits=hits)


async def _readable_matches(client: DataverseClient, access: TableAccess, hit: SearchHit) -> dict[str, str] | None:
    """The hit's highlighted matches, without those in lookups to refused tables (a lookup is searched by the name
    of the row it points to, that table's data); None when the hit matched through such lookups only."""
    highlights = {
        column: " … ".join(_HIGHLIGHT.sub("**", text) for text in texts) for column, texts in hit.highlights.items()
    }
    if access.allowed is None and not access.denied:
        return highlights
    columns = (await client.table(hit.table)).columns
    refused = {
        name
        for name in highlights
        if (column := columns.get(name.lower())) is not None
        and column.is_lookup
        and not all(access.allows(target) for target in column.targets)
    }
    kept = {name: text for name, text in highlights.items() if name not in refused}
    return None if refused and not kept else kept


def _check_search_filter(text: str) -> None:
    """A search filter names the searched tables' own columns: a path through a relationship (which could reach a
    table the policy refuses) is refused before anything is sent."""
    paths = [path for path in filter_paths(text) if len(path) > 1]
    if paths:
        raise InvalidQuery(
            f"filter: {'/'.join(paths[0])!r} goes through a relationship; a search filter takes the tables' own "
            "columns, e.g. statecode eq 0."
        )


async def _allowed(client: DataverseClient, access: TableAccess, name: str) -> TableSummary:
    summary = await client.resolve_table(name)
    access.check(summary.logical_name)
    return summary


async def _searchable(client: DataverseClient, access: TableAccess) -> list[TableSummary]:
    """Every indexed table when the policy refuses none (the search then names none); else the allowed ones."""
    if access.allowed is None and not access.denied:
        return []
    indexed = {table.name for table in await client.indexed_tables()}
    tables = [summary for summary in await client.list_tables() if summary.logical_name in indexed]
    allowed = [summary for summary in tables if access.allows(summary.logical_name)]
    if not allowed:
        raise ToolError("None of the tables Dataverse search indexes is available through this server.")
    return allowed


def _hit(hit: SearchHit, table: TableSummary | None, highlights: dict[str, str]) -> Hit:
    name = hit.attributes.get(table.primary_name) if table and table.primary_name else None
    return Hit(
        table=hit.table,
        id=hit.id,
        name=None if name is None else str(name),
        score=None if hit.score is None else round(hit.score, 2),
        highlights=highlights or None,
    )


async def _by_primary_name(
    client: DataverseClient,
    tables: list[TableSummary],
    text: str,
    filter: str | None,
    top: int,
    disabled: SearchDisabled,
) -> SearchResults:
    """Search turned off: rows of the named tables whose primary name contains the words, as the result says."""
    words = " ".join(_SEARCH_SYNTAX.sub(" ", text).split())
    hits: list[Hit] = []
    for table in tables:
        if not table.primary_name or not words:
            continue
        condition = f"contains({table.primary_name},{literal(words)})"
        query = ODataQuery(
            select=[table.primary_name],
            filter=f"{condition} and ({filter})" if filter else condition,
            top=top,
        )
        page = await client.read_page(table.logical_name, query, page_size=top, annotations=False)
        hits += [
            Hit(table=table.logical_name, id=str(row[table.primary_id]), name=row.get(table.primary_name))
            for row in page.rows
        ]
    note = (
        f"Dataverse search is off in this environment ({disabled.hint}) These are rows whose primary name "
        f"contains {words!r}, not a relevance search."
    )
    return SearchResults(hits=hits[:top], note=note)
