"""The async Dataverse Web API client: metadata, queries and writes for one environment and one caller.

It sends through a given `httpx2.AsyncClient` (one pooled client per process) and a `Transport` that holds the
retry, token and concurrency policy. Writes follow Microsoft's Web API documentation: a create carries a
client-generated primary key, so a retry after an unclear failure can never duplicate the row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qs, quote, urlsplit

import anyio
import httpx2

from ._batch import RowWrite
from ._changes import ChangePage, ChangePosition, current_token, parse_http_date, read_changes
from ._csdl import OperationCatalog
from ._errors import DataverseError, NotFound, write_outcome
from ._fetchxml import FetchQuery, paging_cookie_from_annotation
from ._metadata import (
    CHOICE_CASTS,
    TABLE_PROPERTIES,
    Choice,
    SingleFlightCache,
    TableMetadata,
    TableSummary,
    label_text,
    resolve_table_name,
)
from ._odata import IDENTIFIER, InvalidQuery, LiteralValue, ODataQuery, identifier, key_segment, literal
from ._operations import OperationResult, invoke, read_catalog
from ._retry import RetryPolicy
from ._search import IndexedTable, SearchResult, indexed_tables, search, search_transport
from ._tokens import TokenProvider
from ._transport import DATAVERSE_CONCURRENCY_LIMIT, DEFAULT_API_VERSION, Transport, api_base_url
from ._write_set import Progress, WriteSet, WriteSetResult

Row = dict[str, Any]
RowKey = str | uuid.UUID | Mapping[str, LiteralValue]
UpsertMode = Literal["create_or_update", "create_only", "update_only"]
MAX_PAGE_SIZE: Final = 5000
ALL_ANNOTATIONS: Final = 'odata.include-annotations="*"'


@dataclass(frozen=True)
class WhoAmI:
    user_id: str
    business_unit_id: str
    organization_id: str


@dataclass(frozen=True)
class Position:
    """Where a query's next page starts, as the service said it; it can only name a page of the same query.

    `token` is the OData `$skiptoken` or the FetchXML paging cookie, `page` the page number, `delivered` the rows
    of the pages before it (a `top` is applied by the client, since the service ignores `$top` beside
    `odata.maxpagesize`).
    """

    token: str | None
    page: int
    delivered: int

    def to_json(self) -> list[Any]:
        return [self.token, self.page, self.delivered]

    @classmethod
    def from_json(cls, value: Any) -> Position:
        """A position handed back (e.g. inside a cursor), checked for shape."""
        match value:
            case [str() | None as token, int() as page, int() as delivered] if page >= 2 and delivered >= 0:
                return cls(token, page, delivered)
        raise InvalidQuery("That paging position is not one this client made.")


@dataclass(frozen=True)
class Page:
    """One page of a query: its rows, the total when asked for, and where the next page starts (None: last)."""

    rows: list[Row]
    count: int | None
    next: Position | None = None
    date: str | None = None  # the answer's Date header

    @property
    def served_at(self) -> datetime | None:
        """The service's clock when it answered (parsed only when asked: most reads never need it)."""
        return parse_http_date(self.date)


@dataclass(frozen=True)
class Written:
    """The outcome of a write: the row's id, and the row itself when it was asked for.

    `created` is None when an upsert was repeated after an unclear failure and the repeat found the row: the
    earlier attempt may have created it, or it existed before.
    """

    id: str
    row: Row | None = None
    created: bool | None = True


class DataverseClient:
    """One environment's Web API, as one caller."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        environment_url: str,
        tokens: TokenProvider,
        *,
        api_version: str = DEFAULT_API_VERSION,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DATAVERSE_CONCURRENCY_LIMIT,
        metadata_ttl: float = 3600.0,
        user_agent: str = "dynamics-mcp",
        read_only: bool = False,
    ) -> None:
        self.environment_url = environment_url.rstrip("/")
        self.transport = Transport(
            http,
            api_base_url(environment_url, api_version),
            tokens,
            retry=retry,
            max_concurrency=max_concurrency,
            user_agent=user_agent,
            read_only=read_only,
        )
        self._tables: SingleFlightCache[list[TableSummary]] = SingleFlightCache(metadata_ttl)
        self._metadata: SingleFlightCache[TableMetadata] = SingleFlightCache(metadata_ttl)
        self._choices: SingleFlightCache[dict[str, tuple[Choice, ...]]] = SingleFlightCache(metadata_ttl)
        self._operations: SingleFlightCache[OperationCatalog] = SingleFlightCache(metadata_ttl)
        self._indexed: SingleFlightCache[list[IndexedTable]] = SingleFlightCache(metadata_ttl)
        self.search_transport = search_transport(self.transport, self.environment_url)
        # (CreateMultiple, account): bulk messages the service said a table does not support (see `write_set`).
        self.unsupported_messages: set[tuple[str, str]] = set()

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None, **headers: str) -> Any:
        outcome = await self.transport.send(
            "GET", self.transport.url(path), repeatability="safe", params=params, headers=headers
        )
        return outcome.response.json()

    # -- identity and metadata -----------------------------------------------------------------------------

    async def whoami(self) -> WhoAmI:
        body = await self._get_json("WhoAmI")
        return WhoAmI(str(body["UserId"]), str(body["BusinessUnitId"]), str(body["OrganizationId"]))

    async def version(self) -> str:
        """The environment's Dataverse version (the RetrieveVersion function)."""
        body = await self._get_json("RetrieveVersion()")
        return str(body.get("Version", ""))

    async def list_tables(self) -> list[TableSummary]:
        """Every table of the environment (names, display names, primary columns), cached."""

        async def load() -> list[TableSummary]:
            body = await self._get_json("EntityDefinitions", {"$select": ",".join(TABLE_PROPERTIES)})
            return [TableSummary.from_json(item) for item in body["value"]]

        return await self._tables.get("tables", load)

    async def resolve_table(self, name: str) -> TableSummary:
        """A table by logical, entity set or display name; UnknownTable names the closest ones."""
        return resolve_table_name(name, await self.list_tables())

    async def table(self, name: str) -> TableMetadata:
        """A table's columns, keys and relationships in one request, cached and single-flight."""
        if IDENTIFIER.match(name) and name == name.lower():
            logical_name = name  # most likely a logical name: ask for it directly, one request
        else:
            logical_name = (await self.resolve_table(name)).logical_name

        async def load() -> TableMetadata:
            params = {
                "$select": ",".join(TABLE_PROPERTIES),
                # No $select inside Attributes: type-specific properties (MaxLength, Targets, MinValue...)
                # are not on the base AttributeMetadata type and may not be selected there.
                "$expand": "Attributes,Keys,ManyToOneRelationships,OneToManyRelationships,ManyToManyRelationships",
            }
            try:
                body = await self._get_json(f"EntityDefinitions(LogicalName={literal(logical_name)})", params)
            except NotFound:
                summary = await self.resolve_table(logical_name)  # raises UnknownTable with the closest names
                body = await self._get_json(f"EntityDefinitions(LogicalName={literal(summary.logical_name)})", params)
            return TableMetadata.from_json(body)

        return await self._metadata.get(logical_name, load)

    async def choices(self, table: str) -> dict[str, tuple[Choice, ...]]:
        """Each choice column's options (value and label), read through the typed attribute casts."""
        logical_name = (await self.table(table)).logical_name

        async def load() -> dict[str, tuple[Choice, ...]]:
            found: dict[str, tuple[Choice, ...]] = {}

            async def load_cast(cast: str) -> None:
                path = (
                    f"EntityDefinitions(LogicalName={literal(logical_name)})/Attributes/Microsoft.Dynamics.CRM.{cast}"
                )
                body = await self._get_json(path, {"$select": "LogicalName", "$expand": "OptionSet"})
                for attribute in body["value"]:
                    found[attribute["LogicalName"]] = _options(attribute.get("OptionSet") or {})

            async with anyio.create_task_group() as group:
                for cast in CHOICE_CASTS:
                    group.start_soon(load_cast, cast)
            return found

        return await self._choices.get(logical_name, load)

    # -- actions and functions ---------------------------------------------------------------------------

    async def operations(self) -> OperationCatalog:
        """The environment's actions and functions, read from its CSDL `$metadata` as it streams in; cached with a
        TTL, and concurrent cold calls share one download."""
        return await self._operations.get("operations", lambda: read_catalog(self.transport))

    async def invoke(
        self,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        table: str | None = None,
        id: str | uuid.UUID | None = None,
    ) -> OperationResult:
        """Call an action or function, bound to `table`'s row `id` (or to its set: no id) or unbound; see
        `_operations.py`. Parameters are checked against the declaration before anything is sent."""
        return await invoke(self, name, parameters or {}, table=table, row_id=id)

    # -- search ------------------------------------------------------------------------------------------

    async def search(
        self,
        text: str,
        *,
        tables: Sequence[str] = (),
        filter: str | None = None,
        top: int | None = None,
        count: bool = False,
    ) -> SearchResult:
        """Dataverse search (relevance, across tables); SearchDisabled when the environment has it off."""
        return await search(self.search_transport, text, tables=tables, filter=filter, top=top, count=count)

    async def indexed_tables(self) -> list[IndexedTable]:
        """The tables the search index holds, cached."""
        return await self._indexed.get("indexed", lambda: indexed_tables(self.search_transport))

    # -- reading rows --------------------------------------------------------------------------------------

    def _entity_path(self, entity_set: str, key: RowKey) -> str:
        return f"{identifier(entity_set, 'entity set')}({quote(key_segment(key), safe=chr(39) + '=,-')})"

    async def get(self, table: str, key: RowKey, *, select: list[str] | None = None, annotations: bool = True) -> Row:
        """One row by id or alternate key."""
        summary = await self.resolve_table(table)
        params = ODataQuery(select=select or ()).params()
        headers = {"Prefer": ALL_ANNOTATIONS} if annotations else {}
        body: Row = await self._get_json(self._entity_path(summary.entity_set_name, key), params, **headers)
        return body

    async def read_page(
        self,
        table: str,
        query: ODataQuery | FetchQuery,
        *,
        page_size: int = MAX_PAGE_SIZE,
        position: Position | None = None,
        annotations: bool = True,
    ) -> Page:
        """One page of a query: the first, or the one `position` (from the page before) names.

        Every request is built here from the query itself; a position adds only the service's paging token, so
        nothing handed back by a caller can change what a query reads.
        """
        summary = await self.resolve_table(table)
        entity_set = identifier(summary.entity_set_name, "entity set")
        if isinstance(query, FetchQuery):
            return await self._fetch_page(entity_set, query, page_size, position, annotations)
        top = query.top
        size = min(page_size, top) if top is not None else page_size
        # "Don't use $top with the Prefer: odata.maxpagesize request header. If you include both, $top is
        # ignored" (Page results using OData): the client stops after `top` rows itself.
        params = {name: value for name, value in query.params().items() if name != "$top"}
        if position is not None:
            if position.token is None:
                raise InvalidQuery("That paging position has no paging token.")
            params["$skiptoken"] = position.token
        outcome = await self.transport.send(
            "GET",
            self.transport.url(entity_set),
            repeatability="safe",
            params=params,
            headers={"Prefer": _prefer(size, annotations)},
        )
        body = outcome.response.json()
        delivered = position.delivered if position else 0
        rows = list(body.get("value") or [])
        if top is not None:
            rows = rows[: max(0, top - delivered)]
        next_link = body.get("@odata.nextLink")
        following = None
        if next_link and (top is None or delivered + len(rows) < top):
            token = self._skiptoken(str(next_link))
            following = Position(token, (position.page if position else 1) + 1, delivered + len(rows))
        date = outcome.response.headers.get("date")
        return Page(rows=rows, count=body.get("@odata.count"), next=following, date=date)

    def _skiptoken(self, next_link: str) -> str:
        """The paging token of an `@odata.nextLink`; the rest of the link is the query the client sent."""
        if not self.transport.is_own_url(next_link):
            raise DataverseError("The service returned a next-page link outside this environment; stopping.")
        tokens = parse_qs(urlsplit(next_link).query, keep_blank_values=True).get("$skiptoken")
        if not tokens:
            raise DataverseError("The service returned a next-page link without a $skiptoken; stopping.")
        return tokens[0]

    async def _fetch_page(
        self, entity_set: str, query: FetchQuery, page_size: int, position: Position | None, annotations: bool
    ) -> Page:
        page_number = position.page if position else 1
        paged = query.page_text(page_number, page_size, position.token if position else None)
        headers = {"Prefer": ALL_ANNOTATIONS} if annotations else {}
        body = await self._get_json(entity_set, {"fetchXml": paged}, **headers)
        rows = list(body.get("value") or [])
        following = None
        if body.get("@Microsoft.Dynamics.CRM.morerecords") and query.top is None:
            annotation = body.get("@Microsoft.Dynamics.CRM.fetchxmlpagingcookie")
            cookie = paging_cookie_from_annotation(annotation) if annotation else None
            following = Position(cookie, page_number + 1, (position.delivered if position else 0) + len(rows))
        return Page(rows=rows, count=body.get("@Microsoft.Dynamics.CRM.totalrecordcount"), next=following)

    async def query(
        self,
        table: str,
        query: ODataQuery | FetchQuery,
        *,
        page_size: int = MAX_PAGE_SIZE,
        annotations: bool = True,
    ) -> AsyncIterator[Page]:
        """Every page of a query (OData or FetchXML), to the last."""
        position: Position | None = None
        while True:
            page = await self.read_page(table, query, page_size=page_size, position=position, annotations=annotations)
            yield page
            if page.next is None:
                return
            position = page.next

    # -- change tracking -----------------------------------------------------------------------------------

    async def read_changes(
        self,
        table: str,
        select: Sequence[str],
        *,
        deltatoken: str | None,
        position: ChangePosition | None = None,
        page_size: int = MAX_PAGE_SIZE,
        annotations: bool = True,
    ) -> ChangePage:
        """One page of the rows of `table` created, updated or deleted since `deltatoken` (see `_changes.py`)."""
        summary = await self.resolve_table(table)
        return await read_changes(
            self.transport,
            summary,
            select,
            deltatoken=deltatoken,
            position=position,
            page_size=page_size,
            annotations=ALL_ANNOTATIONS if annotations else None,
        )

    async def current_change_token(self, table: str) -> tuple[str, datetime | None]:
        """A delta token for now, for a table with change tracking, and the service's clock then."""
        return await current_token(self.transport, await self.resolve_table(table))

    # -- writing rows --------------------------------------------------------------------------------------

    async def create(
        self, table: str, values: Mapping[str, Any], *, return_row: bool = False, select: list[str] | None = None
    ) -> Written:
        """Create a row with a client-generated id, so a retried create can never make a second row."""
        with write_outcome():
            summary = await self.resolve_table(table)
        body = dict(values)
        row_id = str(body.get(summary.primary_id) or uuid.uuid4())
        body[summary.primary_id] = row_id
        headers = {"Prefer": "return=representation"} if return_row else {}
        params = ODataQuery(select=select or ()).params() if return_row else None
        unclear = (
            f"The {summary.logical_name} row may or may not have been created: read row {row_id} to check; "
            f"a retry that sets {summary.primary_id} to {row_id} cannot create a second row."
        )
        with write_outcome(unclear):
            outcome = await self.transport.send(
                "POST",
                self.transport.url(summary.entity_set_name),
                repeatability="create",
                params=params,
                json=body,
                headers=headers,
            )
        row = None
        if return_row:
            with _written_already(f"The {summary.logical_name} row {row_id} was created; only reading it back failed."):
                row = (
                    await self.get(table, row_id, select=select) if outcome.landed_earlier else outcome.response.json()
                )
        return Written(row_id, row, created=True)

    async def update(
        self,
        table: str,
        key: RowKey,
        values: Mapping[str, Any],
        *,
        etag: str | None = None,
        return_row: bool = False,
        select: list[str] | None = None,
    ) -> Written:
        """Change columns of an existing row; with `etag`, only if the row has not changed since."""
        return await self._patch(table, key, values, if_match=etag or "*", return_row=return_row, select=select)

    async def upsert(
        self,
        table: str,
        key: RowKey,
        values: Mapping[str, Any],
        *,
        mode: UpsertMode = "create_or_update",
        return_row: bool = False,
        select: list[str] | None = None,
    ) -> Written:
        """Create the row with this id or alternate key, or update it if it exists (as `mode` allows)."""
        return await self._patch(
            table,
            key,
            values,
            if_match="*" if mode == "update_only" else None,
            if_none_match="*" if mode == "create_only" else None,
            return_row=return_row,
            select=select,
        )

    async def _patch(
        self,
        table: str,
        key: RowKey,
        values: Mapping[str, Any],
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        return_row: bool,
        select: list[str] | None,
    ) -> Written:
        with write_outcome():
            summary = await self.resolve_table(table)
            row_text = f"{summary.logical_name} row {key_segment(key)}"
        # Always ask for the row back (only its id unless columns are wanted): without a representation the
        # service answers 204 to both outcomes, and the caller must know whether the row was created.
        headers = {"Prefer": "return=representation"}
        if if_match:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        columns = (select or ()) if return_row else [summary.primary_id]
        operation = "update" if if_match else "upsert"
        with write_outcome(f"The {operation} of {row_text} may or may not have been applied: read the row to check."):
            outcome = await self.transport.send(
                "PATCH",
                self.transport.url(self._entity_path(summary.entity_set_name, key)),
                # create-only is refused once the row exists: a retry must recognise its own earlier success
                repeatability="create" if if_none_match else "safe",
                params=ODataQuery(select=columns).params(),
                json=dict(values),
                headers=headers,
            )
        if outcome.landed_earlier:
            with _written_already(f"The {row_text} was created; only reading it back failed."):
                landed = await self.get(table, key, select=list(columns), annotations=False)
            return Written(str(landed[summary.primary_id]), landed if return_row else None, created=True)
        row: Row = outcome.response.json()
        created: bool | None = outcome.response.status_code == 201
        if outcome.after_unclear and not created and operation == "upsert":
            created = None  # a repeat that found the row cannot tell whether its own earlier attempt created it
        return Written(str(row[summary.primary_id]), row if return_row else None, created=created)

    async def delete(self, table: str, key: RowKey, *, etag: str | None = None) -> None:
        """Delete a row; with `etag`, only if it has not changed since."""
        with write_outcome():
            summary = await self.resolve_table(table)
            row_text = f"{summary.logical_name} row {key_segment(key)}"
        headers = {"If-Match": etag} if etag else {}
        with write_outcome(f"The {row_text} may or may not have been deleted: read it to check."):
            await self.transport.send(
                "DELETE",
                self.transport.url(self._entity_path(summary.entity_set_name, key)),
                repeatability="safe",
                headers=headers,
            )

    # -- many writes ---------------------------------------------------------------------------------------

    async def write_set(
        self, writes: Sequence[RowWrite], *, atomic: bool = True, progress: Progress | None = None
    ) -> WriteSetResult:
        """Many writes in few requests: all or nothing (`atomic`), or each on its own; see `_write_set.py` for what is
        sent. Each write's outcome is `written`, `not written` or `unknown`; `progress` hears of each request."""
        return await WriteSet(self, writes, atomic=atomic, progress=progress).run()


@contextmanager
def _written_already(landed: str) -> Iterator[None]:
    """A failure here, after the write landed, says so."""
    try:
        yield
    except DataverseError as error:
        error.written = landed
        raise


def _prefer(page_size: int, annotations: bool) -> str:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise DataverseError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}.")
    parts = [f"odata.maxpagesize={page_size}"]
    if annotations:
        parts.append(ALL_ANNOTATIONS)
    return ",".join(parts)


def _options(option_set: dict[str, Any]) -> tuple[Choice, ...]:
    options = [option_set[key] for key in ("FalseOption", "TrueOption") if option_set.get(key)]
    options += option_set.get("Options") or []
    return tuple(
        Choice(int(option["Value"]), label_text(option.get("Label")) or str(option["Value"])) for option in options
    )
