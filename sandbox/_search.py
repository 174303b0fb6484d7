"""Dataverse search 2.0 on one environment: `POST <environment url>/api/search/v2.0/query` and `GET .../status`.

As "Search for Dataverse records", "Dataverse Search query" and "Dataverse Search statistics and status" describe
them. The answer is `{"response": "<JSON>"}`, that JSON holding `Error`, `Value`, `Facets`, `QueryContext` and
`Count` for a query, `value` for the status. A caller finds only the rows they may read, limited as the Web API's
queries are (`_security.py`). What is indexed is `_search_index.py`, the parameters `_search_request.py`, the syntax
`_search_query.py`, facets `_search_facets.py`.

Errors have the Web API's body: search turned off for the organization 400 `0x80048d0b` (the overview's example), a
bad parameter 400 `0x80040203`, a filter the OData parser refuses 400 as `$filter` answers it, what the sandbox does
not emulate (lucene syntax, the other operations) 501.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import Response

from ._catalog import JsonObject
from ._errors import ODATA_ERROR, WebApiError, not_implemented, resource_not_found
from ._query import RowQuery, select_rows
from ._records import FORMATTED_VALUE, NameLookup, formatted_value, json_value
from ._search_facets import count_facet, lookup_name
from ._search_index import ENABLED_ENVIRONMENTS, index_field_names, is_indexed
from ._search_query import Found, find, parse_search
from ._search_request import SCORE, STATUS_PATH, Scope, SearchRequest, parse_request
from ._store import StoredRow
from ._webapi import error_response

if TYPE_CHECKING:
    from ._environment import Environment
    from ._security import Caller
    from ._webapi import WebApi

SEARCH_DISABLED: Final = "0x80048d0b"
QUERY_PATH: Final = "/api/search/v2.0/query"
_NOT_EMULATED: Final = frozenset({"suggest", "autocomplete", "statistics"})


@dataclass(frozen=True)
class Hit:
    scope: Scope
    row: StoredRow
    found: Found


def _sort_key(hit: Hit, name: str) -> tuple[bool, Any]:
    if name == SCORE:
        return True, hit.found.score
    value = hit.row.get(name) if name in hit.scope.columns else None
    return value is not None, value if value is not None else 0


def _ordered(hits: list[Hit], order: list[tuple[str, bool]]) -> list[Hit]:
    """By `order`, then by score: the page orders ties randomly, the sandbox by table and id to be repeatable."""
    ordered = sorted(hits, key=lambda hit: (hit.scope.table.logical_name, str(hit.row[hit.scope.table.primary_id])))
    for name, descending in reversed([*order, (SCORE, True)]):
        ordered.sort(key=lambda hit: _sort_key(hit, name), reverse=descending)
    return ordered


def _result(hit: Hit, names: NameLookup) -> JsonObject:
    table, row = hit.scope.table, hit.row
    attributes: JsonObject = {"@search.objecttypecode": table.object_type_code}
    for name in hit.scope.selected:
        column = hit.scope.columns[name]
        attributes[name] = json_value(column, row.get(name))
        label = lookup_name(column, row, names) if column.is_lookup else formatted_value(column, row.get(name))
        if label is not None:
            attributes[f"{name}@{FORMATTED_VALUE}"] = label
    return {
        "Id": str(row[table.primary_id]),
        "EntityName": table.logical_name,
        "ObjectTypeCode": 0,  # as both of the page's examples show it; the code is in "@search.objecttypecode"
        "Attributes": attributes,
        "Highlights": hit.found.highlights,
        "Score": hit.found.score,
    }


def _searched_text(scope: Scope, row: StoredRow, name: str, names: NameLookup) -> str | None:
    """What a search matches in a column: its value, or for a lookup the name of the row it points to."""
    column = scope.columns[name]
    if column.is_lookup:
        return lookup_name(column, row, names)
    value = row.get(name)
    return None if value is None else str(value)


def run_query(environment: Environment, caller: Caller, search: SearchRequest, names: NameLookup) -> JsonObject:
    """The unescaped `response` of a query: the caller's rows that match, best first."""
    query = parse_search(search.text, search.mode)
    hits = []
    for scope in search.scopes:
        for row in select_rows(environment.store, RowQuery(scope.table, filter=scope.filter), caller, odata=False):
            values = {name: text for name in scope.searched if (text := _searched_text(scope, row, name, names))}
            found = find(query, values, scope.table.primary_name)
            if found is not None:
                hits.append(Hit(scope, row, found))
    page = _ordered(hits, search.order)[search.skip : search.skip + search.top]
    rows = [(hit.scope.table, hit.scope.columns, hit.row) for hit in hits]
    return {
        "Error": None,
        "Value": [_result(hit, names) for hit in page],
        "Facets": {facet.key: count_facet(facet, rows, names) for facet in search.facets},
        "QueryContext": None,
        "Count": len(hits) if search.count else -1,  # "If you don't set this parameter, ... is -1."
    }


def search_status(environment: Environment) -> JsonObject:
    """The unescaped `response` of the status operation: what the index holds, and that it is up to date."""
    if environment.spec.name not in ENABLED_ENVIRONMENTS:
        return {"value": {"status": "notprovisioned", "lockboxstatus": "Unknown"}}
    tables = [table for table in environment.catalog if is_indexed(table)]
    fields = index_field_names(tables)
    version = environment.store.version()
    synced = f"{environment.clock():%m/%d/%Y %H:%M:%S}"  # the store is the index: synced now
    results = [
        {
            "entitylogicalname": table.logical_name,
            "objecttypecode": table.object_type_code,
            "primarynamefield": table.primary_name,
            "lastdatasynctimestamp": f"{version}!{synced}",
            "lastprincipalobjectaccesssynctimestamp": f"0!{synced}",
            "entitystatus": "EntitySyncComplete",
            "searchableindexedfieldinfomap": {
                name: {"indexfieldname": field} for name, field in fields[table.logical_name].items()
            },
        }
        for table in tables
    ]
    return {
        "value": {
            "entitystatusresults": results,
            "manytomanyrelationshipsyncstatus": [],
            "status": "provisioned",
            "lockboxstatus": "Disabled",
            "cmkstatus": "Disabled",
        }
    }


def _response(payload: JsonObject) -> Response:
    """The search endpoint's answer: the payload escaped into the string `response`."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(json.dumps({"response": text}, ensure_ascii=False), media_type="application/json")


def _operation(path: str) -> str:
    """`query` or `status`; the other operations, and legacy search, are the service's but not the sandbox's."""
    if path in (QUERY_PATH, STATUS_PATH):
        return path.rsplit("/", 1)[1]
    operation = path.rsplit("/", 1)[1]
    if path.startswith("/api/search/v1.0/") or (path.startswith("/api/search/v2.0/") and operation in _NOT_EMULATED):
        raise not_implemented(f"The sandbox does not emulate the search operation {path}.")
    raise resource_not_found(operation)


async def answer_search(web_api: WebApi, request: Request) -> Response:
    """A request under `/api/search/`, authenticated as the Web API authenticates its requests."""
    environment = web_api.environment
    try:
        operation = _operation(request.url.path.rstrip("/"))
        caller = web_api.authenticate(request)
        expected = "GET" if operation == "status" else "POST"
        if request.method != expected:
            raise WebApiError(
                405, ODATA_ERROR, f"The requested resource does not support http method '{request.method}'."
            )
        if operation == "status":
            return _response(search_status(environment))
        if environment.spec.name not in ENABLED_ENVIRONMENTS:
            raise WebApiError(400, SEARCH_DISABLED, "Dataverse Search feature is disabled for this organization.")
        search = parse_request(await web_api.body(request), environment.catalog)
        return _response(run_query(environment, caller, search, web_api.names()))
    except WebApiError as error:
        headers = {}
        if error.status == 401:
            headers["www-authenticate"] = (
                f"Bearer authorization_uri={web_api.authority}/oauth2/authorize, resource_id={environment.url}/"
            )
        return error_response(error, headers)
