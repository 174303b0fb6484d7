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
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import Response

from ._associate import answer_ref, refuse_direct_writes, related_rows
from ._binding import FilterBinder
from ._catalog import Column, JsonObject, Table
from ._changes import asks_for_changes, count_changes, read_changes
from ._directory import BUSINESS_UNIT_ID, find_user
from ._environment import Environment, RowKey
from ._errors import (
    RESOURCE_NOT_FOUND,
    UNAUTHORIZED,
    WebApiError,
    bad_request,
    duplicate_key,
    resource_not_found,
    unknown_property,
)
from ._expand import Expander, selected_columns, with_currency
from ._expression import Expression, conjunction
from ._faults import FaultInjector
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
from ._paging import Preferences, next_link, page_from_skiptoken
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
BOUND_ACTION_PREFIX: Final = "Microsoft.Dynamics.CRM."  # an action bound to an entity set, e.g. CreateMultiple
TOTAL_COUNT: Final = "Microsoft.Dynamics.CRM.totalrecordcount"
TOTAL_COUNT_EXCEEDED: Final = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"
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
    "$apply",
    "fetchXml",
}


def resource_segments(request: Request) -> list[str]:
    """The path's segments after `/api/data/v9.x/`, percent-decoded one by one; a 404 WebApiError otherwise."""
    segments = [unquote(part) for part in request.scope["raw_path"].decode("latin-1").split("/")[1:]]
    if len(segments) < 3 or segments[:2] != ["api", "data"] or segments[2] not in API_VERSIONS:
        raise WebApiError(404, RESOURCE_NOT_FOUND, "Resource not found for the segment in the request URL.")
    return [segment for segment in segments[3:] if segment]


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


class WebApi:
    """Answers Web API requests for one environment."""

    def __init__(
        self, environment: Environment, signing_key: SigningKey, authority: str, faults: FaultInjector | None = None
    ) -> None:
        self.environment = environment
        self.signing_key = signing_key
        self.authority = authority
        self.faults = faults or FaultInjector()  # consulted again for each request inside a $batch

    async def __call__(self, request: Request) -> Response:
        try:
            segments = resource_segments(request)
            caller = self.authenticate(request)
            response = await self.dispatch(request, caller, segments)
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
        if first == "$batch":
            from ._batch import answer_batch  # deferred: multipart parsing is needed only by $batch

            return await answer_batch(self, request, caller, segments)
        if first == "$metadata":
            from ._csdl import answer_csdl  # deferred: the CSDL document is needed only by $metadata

            return answer_csdl(self, request)
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
            raise resource_not_found(first)
        if environment.catalog.by_entity_set(match.group(1)) is None:
            from ._operations import answer_unbound  # deferred: needed only by actions and functions

            return await answer_unbound(self, request, caller, match.group(1), match.group(2), segments[1:])
        table = environment.table_for_entity_set(match.group(1))
        if len(segments) == 1:
            refuse_direct_writes(table, method)
        key_text = match.group(2)
        preferences = Preferences.parse(request.headers.get("prefer", ""))
        if key_text is None:
            if segments[1:] == ["$count"] and method == "GET":
                return self.count(request, table, caller)
            if len(segments) == 2 and segments[1].startswith(BOUND_ACTION_PREFIX):
                from ._multiple import answer_bound_action  # deferred: needed only by CreateMultiple and the like

                return await answer_bound_action(self, request, table, caller, segments[1])
            if len(segments) > 1:
                raise resource_not_found(segments[1])
            if method == "GET":
                return self.query(request, table, caller, preferences)
            if method == "POST":
                return await self.create(request, table, caller, preferences)
            raise WebApiError(405, "0x80060888", f"The method {method} is not allowed on an entity set.")
        key = parse_key(key_text)
        if len(segments) == 2 and segments[1].startswith(BOUND_ACTION_PREFIX):
            from ._operations import answer_bound  # deferred: needed only by actions and functions

            return await answer_bound(self, request, caller, table, key, segments[1])
        if len(segments) == 2:
            from ._operations import refuse_unqualified

            refuse_unqualified(segments[1])
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
        """The query options, and the parameter aliases (`@p1`) `$filter` and `$orderby` may use."""
        options: dict[str, str] = {}
        for name, value in parse_qsl(request.url.query, keep_blank_values=True):
            if name in options:
                raise bad_request(
                    f"Query option '{name}' was specified more than once, but it must be specified at most once."
                )
            if name.startswith("$") and name not in allowed:
                raise bad_request(f"The query parameter '{name}' is not supported.")
            if name in allowed or name.startswith("@"):
                options[name] = value
        return options

    def names(self) -> NameLookup:
        cache: dict[tuple[str, str], str | None] = {}

        def lookup(target: str, row_id: str) -> str | None:
            if (target, row_id) not in cache:
                cache[target, row_id] = self.environment.primary_name(target, row_id)
            return cache[target, row_id]

        return lookup

    def binder(self, caller: Caller) -> FilterBinder:
        return FilterBinder(self.environment.catalog, caller, self.environment.clock())

    def condition(self, options: Mapping[str, str], table: Table, binder: FilterBinder) -> Expression | None:
        """The request's `$filter`, with its parameter aliases, bound to `table`."""
        if "$filter" not in options:
            return None
        aliases = {name: value for name, value in options.items() if name.startswith("@")}
        return binder.bind(parse_filter(options["$filter"], aliases), table)

    def count(self, request: Request, table: Table, caller: Caller, within: Expression | None = None) -> Response:
        """`<entity set>/$count`: the number of matching rows, up to 5,000, as plain text."""
        if within is None and "$deltatoken" in request.query_params:  # the number of changes since a delta link
            total = count_changes(self.environment, table, caller, self.query_options(request, {"$deltatoken"}))
            return Response(str(min(total, COUNT_LIMIT)), media_type="text/plain")
        options = self.query_options(request, allowed={"$filter"})
        query = RowQuery(table, filter=conjunction([within, self.condition(options, table, self.binder(caller))]))
        total = min(count_rows(self.environment.store, query, caller), COUNT_LIMIT)
        return Response(str(total), media_type="text/plain")

    def query(
        self,
        request: Request,
        table: Table,
        caller: Caller,
        preferences: Preferences,
        within: Expression | None = None,
    ) -> Response:
        """Rows of `table` (`within` a filtered collection) as the query options ask."""
        environment = self.environment
        if within is None and asks_for_changes(request.url.query, preferences):
            options = self.query_options(request, _QUERY_OPTIONS | {"$deltatoken"})
            body, applied = read_changes(environment, table, caller, options, preferences, self.names())
            return json_response(200, body, {"preference-applied": applied} if applied else None)
        options = self.query_options(request)
        if "fetchXml" in options:
            from ._fetch import run_fetch  # deferred: FetchXML parsing is needed only by FetchXML queries

            return json_response(
                200,
                run_fetch(environment, table, options["fetchXml"], caller, preferences.annotations, self.names()),
                {"preference-applied": preferences.applied(page_size_used=False)}
                if preferences.annotations.requested
                else None,
            )
        if "$apply" in options:
            from ._apply import answer_apply  # deferred: aggregation is needed only by $apply queries

            binder = self.binder(caller)
            body = answer_apply(
                environment,
                table,
                options,
                caller,
                preferences.annotations,
                self.names(),
                within=within,
                bind=lambda expression: binder.bind(expression, table),
            )
            applied = preferences.applied(page_size_used=False)
            return json_response(200, body, {"preference-applied": applied} if applied else None)
        binder = self.binder(caller)
        columns = _columns(table, options.get("$select"))
        expand = parse_expand(options["$expand"]) if "$expand" in options else []
        names = self.names()
        expander = Expander(environment, table, expand, caller, binder, preferences.annotations, names)
        aliases = {name: value for name, value in options.items() if name.startswith("@")}
        query = RowQuery(
            table,
            filter=conjunction([within, self.condition(options, table, binder)]),
            orderby=parse_orderby(options["$orderby"], aliases) if "$orderby" in options else (),
        )
        top = parse_top(options["$top"]) if "$top" in options else None
        if preferences.max_page_size is not None:
            top = None  # "If you include both, $top is ignored." (Page results using OData)
        page_size = min(preferences.max_page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        page = page_from_skiptoken(options.get("$skiptoken"))
        if top is not None:
            query.limit, query.offset = min(top, MAX_PAGE_SIZE), 0
        else:
            query.limit, query.offset = page_size + 1, (page - 1) * page_size
        rows = select_rows(environment.store, query, caller)
        more = top is None and len(rows) > page_size
        rows = rows[:page_size] if top is None else rows
        rendered = [expander.render(row, columns) for row in rows]
        body = {"@odata.context": _context(environment.api_url, table, columns, expand)}
        total = None
        if options.get("$count") is not None and parse_bool_option("$count", options["$count"]):
            total = count_rows(environment.store, query, caller)
            body["@odata.count"] = min(total, COUNT_LIMIT)
        # "Count rows using OData": without $count=true the total record count is -1.
        if preferences.annotations.wants(TOTAL_COUNT):
            body[f"@{TOTAL_COUNT}"] = -1 if total is None else min(total, COUNT_LIMIT)
        if preferences.annotations.wants(TOTAL_COUNT_EXCEEDED):
            body[f"@{TOTAL_COUNT_EXCEEDED}"] = total is not None and total > COUNT_LIMIT
        body["value"] = rendered
        if more:
            first, last = rows[0][table.primary_id], rows[-1][table.primary_id]
            body["@odata.nextLink"] = next_link(request, environment.api_url, table.primary_id, page + 1, first, last)
        headers = {}
        applied = preferences.applied(page_size_used=True)
        if applied:
            headers["preference-applied"] = applied
        return json_response(200, body, headers)

    def retrieve(
        self, request: Request, table: Table, key: RowKey, caller: Caller, preferences: Preferences
    ) -> Response:
        options = self.query_options(request, allowed={"$select", "$expand"})
        row = self.environment.require(table, key)
        caller.require_access(table, row, "Read")
        if request.headers.get("if-none-match", "").strip() == etag(row):
            return Response(status_code=304)
        columns = _columns(table, options.get("$select"))
        expand = parse_expand(options["$expand"]) if "$expand" in options else []
        expander = Expander(
            self.environment, table, expand, caller, self.binder(caller), preferences.annotations, self.names()
        )
        body = {"@odata.context": _context(self.environment.api_url, table, columns, expand) + "/$entity"}
        body.update(expander.render(row, columns))
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
        if rest[-1] == "$ref":  # linking rows ("Associate and disassociate tables using the Web API")
            body = await self.body(request) if request.method in ("POST", "PUT") else None
            answer_ref(environment, request.method, table, row, rest[:-1], body, request.url.query, caller)
            return Response(status_code=204)
        related = related_rows(environment.catalog, table, name)
        if related is not None and request.method == "GET" and rest[1:] in ([], ["$count"]):
            # A filtered collection ("Use OData to query data"): the related rows, queried as an entity set.
            caller.require_access(table, row, "Read")
            within = related.of(str(row[table.primary_id]))
            if rest[1:] == ["$count"]:
                return self.count(request, related.table, caller, within)
            return self.query(
                request, related.table, caller, Preferences.parse(request.headers.get("prefer", "")), within
            )
        if len(rest) > 1 or request.method != "GET":
            raise WebApiError(
                405,
                "0x80060888",
                "Only GET of a single property or of a collection, or a navigation property's $ref, is supported.",
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
        columns = _columns(table, options.get("$select"))
        body = {"@odata.context": _context(self.environment.api_url, table, columns, []) + "/$entity"}
        body.update(render_row(table, row, with_currency(table, columns), preferences.annotations, self.names()))
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


def _columns(table: Table, select: str | None) -> list[Column] | None:
    return selected_columns(table, parse_select(select) if select is not None else None)


def _context(api_url: str, table: Table, columns: list[Column] | None, expand: list[ExpandOption]) -> str:
    parts = [column.property_name for column in columns or ()]
    parts += [f"{option.name}({_join(option.select) or ''})" for option in expand]
    selection = f"({','.join(parts)})" if parts else ""
    return f"{api_url}/$metadata#{table.entity_set_name}{selection}"
