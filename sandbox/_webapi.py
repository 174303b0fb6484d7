"""The Web API's HTTP surface for one environment: `<environment url>/api/data/v9.2/...`.

Parses the request (path segments from the raw path, so percent-encoded quotes and slashes in key values
survive; query options; `Prefer`, `If-Match` and `If-None-Match`), authenticates the bearer token, calls
the environment's operations and shapes the answer as Dataverse does (status, headers, `@odata.*`).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote

from starlette.requests import Request
from starlette.responses import Response

from ._catalog import Column, JsonObject, Table
from ._directory import BUSINESS_UNIT_ID, find_user
from ._environment import Environment, RowKey
from ._errors import UNAUTHORIZED, WebApiError, bad_request, duplicate_key, unknown_property
from ._expression import Comparison, Property, conjunction
from ._metadata import answer_metadata
from ._odata import (
    ExpandOption,
    parse_bool_option,
    parse_expand,
    parse_filter,
    parse_key,
    parse_orderby,
    parse_select,
    parse_top,
)
from ._query import RowQuery, count_rows, select_rows
from ._records import Annotations, NameLookup, etag, render_row
from ._security import Caller
from ._store import StoredRow
from ._tokens import SigningKey, TokenRejected

logger = logging.getLogger(__name__)

API_VERSIONS: Final = ("v9.0", "v9.1", "v9.2")
MAX_PAGE_SIZE: Final = 5000
DATAVERSE_VERSION: Final = "9.2.24111.00185"
COUNT_LIMIT: Final = 5000
JSON_TYPE: Final = (
    "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
)
_SEGMENT: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(?:\((.*)\))?$", re.DOTALL)
_QUERY_OPTIONS: Final = {
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$count",
    "$expand",
    "$skiptoken",
    "fetchXml",
}


def json_response(status: int, body: JsonObject | None, headers: Mapping[str, str] | None = None) -> Response:
    content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    response = Response(content, status_code=status, headers=dict(headers or {}))
    if body is not None:
        response.headers["content-type"] = JSON_TYPE
    return response


def error_response(error: WebApiError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(error.status, {"error": {"code": error.code, "message": error.message}}, headers)


def bearer_claims(request: Request, signing_key: SigningKey, audience: str) -> dict[str, Any]:
    """The verified claims of the request's bearer token for `audience`; a 401 WebApiError otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebApiError(401, UNAUTHORIZED, "The request has no bearer token: send 'Authorization: Bearer <token>'.")
    try:
        claims = signing_key.verify(token.strip(), [audience, audience + "/"])
    except TokenRejected as rejected:
        raise WebApiError(401, UNAUTHORIZED, str(rejected)) from None
    request.state.claims = claims  # for the request log
    return claims


@dataclass(frozen=True)
class Preferences:
    """What the `Prefer` header asks for."""

    max_page_size: int | None
    annotations: Annotations
    representation: bool

    @classmethod
    def parse(cls, header: str) -> Preferences:
        size = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", header)
        return cls(
            max_page_size=int(size.group(1)) if size else None,
            annotations=Annotations.from_prefer(header),
            representation="return=representation" in header,
        )

    def applied(self, *, page_size_used: bool) -> str:
        parts = []
        if self.max_page_size is not None and page_size_used:
            parts.append(f"odata.maxpagesize={self.max_page_size}")
        if self.annotations.requested:
            parts.append(f'odata.include-annotations="{self.annotations.requested}"')
        if self.representation:
            parts.append("return=representation")
        return ",".join(parts)


class WebApi:
    """Answers Web API requests for one environment."""

    def __init__(self, environment: Environment, signing_key: SigningKey, authority: str) -> None:
        self.environment = environment
        self.signing_key = signing_key
        self.authority = authority

    async def __call__(self, request: Request) -> Response:
        try:
            segments = [unquote(part) for part in request.scope["raw_path"].decode("latin-1").split("/")[1:]]
            if len(segments) < 3 or segments[:2] != ["api", "data"] or segments[2] not in API_VERSIONS:
                raise WebApiError(404, "0x80060888", "Resource not found for the segment in the request URL.")
            caller = self.authenticate(request)
            response = await self.dispatch(request, caller, [segment for segment in segments[3:] if segment])
        except WebApiError as error:
            headers = {}
            if error.status == 401:
                headers["www-authenticate"] = (
                    f"Bearer authorization_uri={self.authority}/oauth2/authorize, resource_id={self.environment.url}/"
                )
            response = error_response(error, headers)
        response.headers["odata-version"] = "4.0"
        response.headers["x-ms-service-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-dop-hint"] = str(self.environment.dop_hint)
        client_request_id = request.headers.get("x-ms-client-request-id")
        if client_request_id:
            response.headers["x-ms-client-request-id"] = client_request_id[:100]
        return response

    def authenticate(self, request: Request) -> Caller:
        claims = bearer_claims(request, self.signing_key, self.environment.url)
        user = find_user(str(claims["oid"]))
        role = user.role_in(self.environment.spec.name) if user else None
        if user is None or role is None:
            raise WebApiError(
                403,
                UNAUTHORIZED,
                f"The user with object id {claims['oid']} is not a member of the organization "
                f"'{self.environment.spec.name}'.",
            )
        return Caller(user, role, self.environment.spec.name)

    async def dispatch(self, request: Request, caller: Caller, segments: list[str]) -> Response:
        method = request.method
        environment = self.environment
        if not segments:
            if method != "GET":
                raise WebApiError(405, "0x80060888", "The service document is read with GET.")
            return self.service_document()
        first = segments[0]
        if first in ("RetrieveVersion", "RetrieveVersion()"):
            context = f"{environment.api_url}/$metadata#Microsoft.Dynamics.CRM.RetrieveVersionResponse"
            return json_response(200, {"@odata.context": context, "Version": DATAVERSE_VERSION})
        if first in ("WhoAmI", "WhoAmI()"):
            return json_response(
                200,
                {
                    "@odata.context": f"{environment.api_url}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": str(BUSINESS_UNIT_ID),
                    "UserId": caller.system_user_id,
                    "OrganizationId": str(environment.spec.organization_id),
                },
            )
        if first.split("(", 1)[0] in (
            "EntityDefinitions",
            "RelationshipDefinitions",
            "GlobalOptionSetDefinitions",
        ):
            if method != "GET":
                raise WebApiError(405, "0x80060888", "Metadata is read-only in the sandbox.")
            query = self.query_options(request, allowed={"$select", "$filter", "$expand"})
            return json_response(200, answer_metadata("/".join(segments), query, environment.url))
        match = _SEGMENT.match(first)
        if not match:
            raise WebApiError(404, "0x80060888", f"Resource not found for the segment '{first}'.")
        table = environment.table_for_entity_set(match.group(1))
        key_text = match.group(2)
        preferences = Preferences.parse(request.headers.get("prefer", ""))
        if key_text is None:
            if len(segments) > 1:
                raise WebApiError(404, "0x80060888", f"Resource not found for the segment '{segments[1]}'.")
            if method == "GET":
                return self.query(request, table, caller, preferences)
            if method == "POST":
                return await self.create(request, table, caller, preferences)
            raise WebApiError(405, "0x80060888", f"The method {method} is not allowed on an entity set.")
        key = parse_key(key_text)
        if len(segments) > 1:
            return await self.property_request(request, table, key, segments[1:], caller)
        if method == "GET":
            return self.retrieve(request, table, key, caller, preferences)
        if method == "PATCH":
            return await self.upsert(request, table, key, caller, preferences)
        if method == "DELETE":
            existing = environment.require(table, key)
            environment.check_etag(existing, request.headers.get("if-match"))
            environment.delete(table, existing, caller)
            return Response(status_code=204)
        raise WebApiError(405, "0x80060888", f"The method {method} is not allowed on an entity.")

    # -- reading -------------------------------------------------------------------------------------------

    def service_document(self) -> Response:
        sets = sorted(table.entity_set_name for table in self.environment.catalog)
        return json_response(
            200,
            {
                "@odata.context": f"{self.environment.api_url}/$metadata",
                "value": [{"name": name, "kind": "EntitySet", "url": name} for name in sets],
            },
        )

    @staticmethod
    def query_options(request: Request, allowed: set[str] = _QUERY_OPTIONS) -> dict[str, str]:
        options: dict[str, str] = {}
        for name, value in parse_qsl(request.url.query, keep_blank_values=True):
            if name in options:
                raise bad_request(
                    f"Query option '{name}' was specified more than once, but it must be specified at most once."
                )
            if name.startswith("$") and name not in allowed:
                raise bad_request(f"The query parameter '{name}' is not supported.")
            if name in allowed:
                options[name] = value
        return options

    def names(self) -> NameLookup:
        cache: dict[tuple[str, str], str | None] = {}

        def lookup(target: str, row_id: str) -> str | None:
            if (target, row_id) not in cache:
                cache[target, row_id] = self.environment.primary_name(target, row_id)
            return cache[target, row_id]

        return lookup

    def selected_columns(self, table: Table, select: str | None) -> list[Column] | None:
        if select is None:
            return None
        columns = []
        for name in parse_select(select):
            column = table.column_by_property(name)
            if column is None:
                raise unknown_property(table.logical_name, name)
            columns.append(column)
        return columns

    def query(self, request: Request, table: Table, caller: Caller, preferences: Preferences) -> Response:
        options = self.query_options(request)
        environment = self.environment
        if "fetchXml" in options:
            from ._fetch import run_fetch  # deferred: FetchXML parsing is needed only by FetchXML queries

            return json_response(
                200,
                run_fetch(environment, table, options["fetchXml"], caller, preferences.annotations, self.names()),
                {"preference-applied": preferences.applied(page_size_used=False)}
                if preferences.annotations.requested
                else None,
            )
        columns = self.selected_columns(table, options.get("$select"))
        expand = parse_expand(options["$expand"]) if "$expand" in options else []
        query = RowQuery(
            table,
            filter=parse_filter(options["$filter"]) if "$filter" in options else None,
            orderby=parse_orderby(options["$orderby"]) if "$orderby" in options else (),
        )
        top = parse_top(options["$top"]) if "$top" in options else None
        page_size = min(preferences.max_page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        page = _page_from_skiptoken(options.get("$skiptoken"))
        if top is not None:
            query.limit, query.offset = min(top, MAX_PAGE_SIZE), 0
        else:
            query.limit, query.offset = page_size + 1, (page - 1) * page_size
        rows = select_rows(environment.store, query, caller)
        more = top is None and len(rows) > page_size
        rows = rows[:page_size] if top is None else rows
        names = self.names()
        rendered = [self.render(table, row, columns, expand, caller, preferences.annotations, names) for row in rows]
        body: JsonObject = {"@odata.context": _context(environment.api_url, table, columns, expand)}
        if options.get("$count") is not None and parse_bool_option("$count", options["$count"]):
            body["@odata.count"] = min(count_rows(environment.store, query, caller), COUNT_LIMIT)
        body["value"] = rendered
        if more:
            body["@odata.nextLink"] = _next_link(request, environment.api_url, page + 1, rows[-1][table.primary_id])
        headers = {}
        applied = preferences.applied(page_size_used=True)
        if applied:
            headers["preference-applied"] = applied
        return json_response(200, body, headers)

    def render(
        self,
        table: Table,
        row: StoredRow,
        columns: list[Column] | None,
        expand: list[ExpandOption],
        caller: Caller,
        annotations: Annotations,
        names: NameLookup,
    ) -> JsonObject:
        rendered = render_row(table, row, columns, annotations, names)
        for option in expand:
            rendered[option.name] = self.expand(table, row, option, caller, annotations, names)
        return rendered

    def expand(
        self,
        table: Table,
        row: StoredRow,
        option: ExpandOption,
        caller: Caller,
        annotations: Annotations,
        names: NameLookup,
    ) -> JsonObject | list[JsonObject] | None:
        environment = self.environment
        navigation = table.navigation.get(option.name)
        if navigation is not None:
            target = environment.catalog.get(navigation.target)
            value = row.get(navigation.column.logical_name)
            if target is None or value is None:
                return None
            related = environment.store.get(target, str(value))
            if related is None or not caller.can_read(target, related):
                return None
            return render_row(target, related, self.selected_columns(target, _join(option.select)), annotations, names)
        children = _collection_navigation(environment.catalog.tables.values(), table, option.name)
        if children is None:
            raise unknown_property(table.logical_name, option.name)
        child_table, child_column = children
        parent = Property(child_column.property_name)
        query = RowQuery(
            child_table,
            filter=conjunction([Comparison("eq", parent, str(row[table.primary_id])), option.filter]),
            orderby=option.orderby,
            limit=min(option.top or MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        )
        columns = self.selected_columns(child_table, _join(option.select))
        return [
            render_row(child_table, child, columns, annotations, names)
            for child in select_rows(environment.store, query, caller)
        ]

    def retrieve(
        self, request: Request, table: Table, key: RowKey, caller: Caller, preferences: Preferences
    ) -> Response:
        options = self.query_options(request, allowed={"$select", "$expand"})
        row = self.environment.require(table, key)
        caller.require_access(table, row, "Read")
        if request.headers.get("if-none-match", "").strip() == etag(row):
            return Response(status_code=304)
        columns = self.selected_columns(table, options.get("$select"))
        expand = parse_expand(options["$expand"]) if "$expand" in options else []
        body = {"@odata.context": _context(self.environment.api_url, table, columns, expand) + "/$entity"}
        body.update(self.render(table, row, columns, expand, caller, preferences.annotations, self.names()))
        headers = {"etag": etag(row)}
        if preferences.annotations.requested:
            headers["preference-applied"] = preferences.applied(page_size_used=False)
        return json_response(200, body, headers)

    async def property_request(
        self, request: Request, table: Table, key: RowKey, rest: list[str], caller: Caller
    ) -> Response:
        environment = self.environment
        row = environment.require(table, key)
        name = rest[0]
        if len(rest) == 2 and rest[1] == "$ref" and request.method == "DELETE":
            if name not in table.navigation:
                raise unknown_property(table.logical_name, name)
            environment.update(table, row, {f"{name}@odata.bind": None}, caller)
            return Response(status_code=204)
        if len(rest) > 1 or request.method != "GET":
            raise WebApiError(
                405,
                "0x80060888",
                "Only GET of a single property, or DELETE of a navigation $ref, is supported.",
            )
        caller.require_access(table, row, "Read")
        column = table.column_by_property(name)
        if column is None:
            raise unknown_property(table.logical_name, name)
        value = render_row(table, row, [column], Annotations(), self.names())[column.property_name]
        if value is None:
            return Response(status_code=204)
        context = f"{environment.api_url}/$metadata#{table.entity_set_name}({row[table.primary_id]})/{name}"
        return json_response(200, {"@odata.context": context, "value": value})

    # -- writing -------------------------------------------------------------------------------------------

    async def body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("The request body is not valid JSON.") from None

    def written(
        self,
        table: Table,
        row: StoredRow,
        status: int,
        request: Request,
        caller: Caller,
        preferences: Preferences,
    ) -> Response:
        location = f"{self.environment.api_url}/{table.entity_set_name}({row[table.primary_id]})"
        headers = {"odata-entityid": location, "location": location}
        if not preferences.representation:
            return Response(status_code=204, headers=headers)
        options = self.query_options(request, allowed={"$select", "$expand"})
        columns = self.selected_columns(table, options.get("$select"))
        body = {"@odata.context": _context(self.environment.api_url, table, columns, []) + "/$entity"}
        body.update(render_row(table, row, columns, preferences.annotations, self.names()))
        headers["preference-applied"] = preferences.applied(page_size_used=False)
        return json_response(status, body, headers)

    async def create(self, request: Request, table: Table, caller: Caller, preferences: Preferences) -> Response:
        row = self.environment.create(table, await self.body(request), caller)
        return self.written(table, row, 201, request, caller, preferences)

    async def upsert(
        self, request: Request, table: Table, key: RowKey, caller: Caller, preferences: Preferences
    ) -> Response:
        """PATCH: update, or create when the row is missing, as `If-Match`/`If-None-Match` allow."""
        environment = self.environment
        body = await self.body(request)
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")
        existing = environment.find(table, key)
        if existing is None:
            if if_match is not None:
                environment.require(table, key)  # raises the not-found error for this key
            row = environment.create(table, body, caller, key)
            return self.written(table, row, 201, request, caller, preferences)
        if if_none_match is not None and if_none_match.strip() == "*":
            raise duplicate_key()
        environment.check_etag(existing, if_match)
        row = environment.update(table, existing, body, caller)
        return self.written(table, row, 200, request, caller, preferences)


def _join(select: list[str] | None) -> str | None:
    return None if select is None else ",".join(select)


def _collection_navigation(tables: Iterable[Table], table: Table, name: str) -> tuple[Table, Column] | None:
    """The child table and lookup behind a collection-valued navigation property of `table`."""
    for relationship in table.metadata.get("OneToManyRelationships") or ():
        if relationship["ReferencedEntityNavigationPropertyName"] == name:
            for child in tables:
                if child.logical_name == relationship["ReferencingEntity"]:
                    column = child.columns.get(relationship["ReferencingAttribute"])
                    if column is not None:
                        return child, column
    return None


def _context(api_url: str, table: Table, columns: list[Column] | None, expand: list[ExpandOption]) -> str:
    parts = [column.property_name for column in columns or ()]
    parts += [f"{option.name}({_join(option.select) or ''})" for option in expand]
    selection = f"({','.join(parts)})" if parts else ""
    return f"{api_url}/$metadata#{table.entity_set_name}{selection}"


_PAGE_NUMBER: Final = re.compile(r'pagenumber="(\d+)"')


def _page_from_skiptoken(skiptoken: str | None) -> int:
    if skiptoken is None:
        return 1
    match = _PAGE_NUMBER.search(skiptoken)
    if not match or int(match.group(1)) < 1:
        raise bad_request("The $skiptoken is not valid: pass back the @odata.nextLink exactly as returned.")
    return int(match.group(1))


def _next_link(request: Request, api_url: str, page: int, last_id: Any) -> str:
    """The `@odata.nextLink`: the same query with a paging cookie naming the next page."""
    inner = f'<cookie page="{page - 1}"><id last="{{{str(last_id).upper()}}}" /></cookie>'
    cookie = f'<cookie pagenumber="{page}" pagingcookie="{quote(quote(inner, safe=""), safe="")}" istracking="False" />'
    options = [
        (name, value) for name, value in parse_qsl(request.url.query, keep_blank_values=True) if name != "$skiptoken"
    ]
    options.append(("$skiptoken", cookie))
    query = "&".join(f"{quote(name, safe='$')}={quote(value, safe='')}" for name, value in options)
    path = request.scope["raw_path"].decode("latin-1").split("/api/data/", 1)[1].split("/", 1)[1]
    return f"{api_url}/{path}?{query}"
