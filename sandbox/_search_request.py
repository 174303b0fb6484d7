"""A Dataverse search query as its JSON body asks for it, every parameter checked before anything is searched.

"Dataverse Search query" lists the parameters: `search` (required, 1 to 100 characters), `count`, `entities`,
`facets`, `filter`, `options`, `orderby`, `skip`, `top` (50 unless asked, at most 100). `entities`, `facets`,
`orderby` and `options` are strings holding JSON, as the page escapes them; `"null"` is absent, as its Web API example
sends it. The fields of an item of `entities` are matched ignoring case (the page writes `selectColumns`, its Web API
example `SelectColumns`, its SDK sample `selectcolumns`); without `selectColumns` only the primary name is returned,
without `searchColumns` only it is searched, and without `entities` every indexed table is searched on all its
searchable columns. `options` is a dictionary, written by the page in single quotes (`{'searchmode': 'all'}`).
Filters are OData `$filter` expressions on logical names; the global one applies to the tables holding every column
it names. A bad parameter is 400 `0x80040203` (InvalidArgument: the sandbox's choice, the page gives no code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from ._catalog import Catalog, Column, Table
from ._errors import BAD_REQUEST, WebApiError, not_implemented
from ._expression import (
    And,
    ColumnComparison,
    Comparison,
    Expression,
    Lambda,
    Membership,
    Not,
    Or,
    QueryFunction,
    TextMatch,
    conjunction,
)
from ._filter import parse_filter
from ._search_facets import Facet, parse_facet
from ._search_index import indexed_columns, is_indexed, searchable_columns
from ._search_query import SearchMode

MAX_SEARCH_LENGTH: Final = 100  # "Search term must be at least one character long and has a 100 character limit."
DEFAULT_TOP: Final = 50  # "By default, up to 50 results are returned at a time. You can use top to raise it
MAX_TOP: Final = 100  # as high as 100"
SCORE: Final = "@search.score"
STATUS_PATH: Final = "/api/search/v2.0/status"
_PARAMETERS: Final = frozenset({"search", "count", "entities", "facets", "filter", "options", "orderby", "skip", "top"})
_OPTIONS: Final = {
    "querytype": ("simple",),
    "searchmode": ("any", "all"),
    "besteffortsearchenabled": ("true", "false"),
    "grouprankingenabled": ("true", "false"),
}


def _invalid(message: str) -> WebApiError:
    return WebApiError(400, BAD_REQUEST, message)


@dataclass(frozen=True)
class Scope:
    """One table a query searches: the columns its index holds, those searched and returned, and its filter."""

    table: Table
    columns: dict[str, Column]
    searched: tuple[str, ...]
    selected: tuple[str, ...]
    filter: Expression | None = None


@dataclass(frozen=True)
class SearchRequest:
    text: str
    mode: SearchMode
    scopes: list[Scope]
    facets: list[Facet]
    order: list[tuple[str, bool]]  # (column or SCORE, descending)
    count: bool
    skip: int
    top: int


def _json_text(body: Mapping[str, Any], name: str) -> Any:
    """A parameter the page types as a string holding JSON; null and `"null"` (as the page's example sends) are
    absent."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"The '{name}' parameter is a string holding JSON, not a JSON {type(value).__name__}.")
    try:
        return json.loads(value)
    except ValueError:
        raise _invalid(f"The '{name}' parameter is not valid JSON: {value[:100]}") from None


def _names(expression: Expression) -> Iterator[str]:
    """The columns a filter names; the navigation property of a lambda, which no index holds."""
    match expression:
        case Comparison(_, prop) | TextMatch(_, prop) | Membership(prop):
            yield prop.name
        case ColumnComparison(_, left, right):
            yield from (left.name, right.name)
        case And(operands) | Or(operands):
            for operand in operands:
                yield from _names(operand)
        case Not(operand):
            yield from _names(operand)
        case Lambda(_, navigation):
            yield navigation.name
        case QueryFunction(_, prop):
            yield prop


def _filter(text: Any, owner: str) -> Expression | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise _invalid(f'The filter of {owner} is a string such as "statecode eq 0".')
    return parse_filter(text)


def _column_list(fields: Mapping[str, Any], key: str, table: str) -> tuple[str, ...]:
    value = fields.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise _invalid(f"'{key}' of the search entity '{table}' is a list of column logical names.")
    return tuple(value)


def _scope(catalog: Catalog, entity: Any) -> Scope:
    """The table one item of `entities` names, with the columns it searches and returns, and its filter."""
    if not isinstance(entity, dict):
        raise _invalid('Each item of \'entities\' is an object such as {"name": "account"}.')
    fields = {str(key).casefold(): value for key, value in entity.items()}
    name = fields.get("name")
    if not isinstance(name, str):
        raise _invalid("Each item of 'entities' needs a 'name': the logical name of a table.")
    table = catalog.get(name)
    if table is None:
        raise _invalid(f"The table '{name}' does not exist: name tables by their logical name, such as 'account'.")
    if not is_indexed(table):
        raise _invalid(f"The table '{name}' is not enabled for Dataverse search; {STATUS_PATH} lists those that are.")
    columns = indexed_columns(table)
    # "If empty, only the table primary name is returned" / "... is searched on."
    selected = _column_list(fields, "selectcolumns", name) or (table.primary_name,)
    searched = _column_list(fields, "searchcolumns", name) or (table.primary_name,)
    for column in selected:
        if column not in columns:
            raise _invalid(f"The column '{column}' of '{name}' is not in its search index: {', '.join(columns)}.")
    searchable = searchable_columns(table)
    for column in searched:
        if column not in searchable:
            raise _invalid(f"The column '{column}' of '{name}' is not searchable; these are: {', '.join(searchable)}.")
    condition = _filter(fields.get("filter"), f"'{name}'")
    for column in _names(condition) if condition is not None else ():
        if column not in columns:
            raise _invalid(f"The filter of '{name}' names '{column}', which is not in its search index.")
    return Scope(table, columns, searched, selected, condition)


def _scopes(catalog: Catalog, entities: Any) -> list[Scope]:
    if entities is None:  # every table enabled for search, on all its searchable columns
        return [
            Scope(table, indexed_columns(table), searchable_columns(table), (table.primary_name,))
            for table in catalog
            if is_indexed(table)
        ]
    if not isinstance(entities, list) or not entities:
        raise _invalid('\'entities\' is a JSON array of search entities, such as [{"name": "account"}].')
    scopes = [_scope(catalog, entity) for entity in entities]
    names = [scope.table.logical_name for scope in scopes]
    for name in names:
        if names.count(name) > 1:
            raise _invalid(f"The table '{name}' is named more than once in 'entities'.")
    return scopes


def _with_filter(scopes: list[Scope], text: Any) -> list[Scope]:
    """The scopes the global filter applies to, with it: a table lacking a column it names has no rows to offer."""
    condition = _filter(text, "the search")
    if condition is None:
        return scopes
    named = set(_names(condition))
    kept = [
        replace(scope, filter=conjunction([scope.filter, condition]))
        for scope in scopes
        if named <= scope.columns.keys()
    ]
    if not kept:
        raise _invalid(f"The filter names {', '.join(sorted(named))}, which no table searched has in its search index.")
    return kept


def _integer(body: Mapping[str, Any], name: str, default: int, highest: int | None = None) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (highest is not None and value > highest):
        limit = "0 or more" if highest is None else f"0 to {highest}"
        raise _invalid(f"'{name}' is a whole number, {limit}; it was {json.dumps(value)}.")
    return value


def _mode(body: Mapping[str, Any]) -> SearchMode:
    """The search mode `options` asks for; the page writes options as `{'searchmode': 'all'}`, in single quotes."""
    text = body.get("options")
    if text is not None and not isinstance(text, str):
        raise _invalid(f"The 'options' parameter is a string holding JSON, not a JSON {type(text).__name__}.")
    try:
        options = None if text is None else json.loads(text.replace("'", '"'))
    except ValueError:
        options = text
    if options is None:
        return "any"
    if not isinstance(options, dict):
        raise _invalid(f"'options' is a string holding a dictionary such as \"{{'searchmode': 'all'}}\": {text:.100}")
    settings = {str(key).casefold(): str(value).casefold() for key, value in options.items()}
    for key, value in settings.items():
        if key == "querytype" and value == "lucene":
            raise not_implemented("The sandbox does not emulate the lucene query syntax; use the simple syntax.")
        if value not in _OPTIONS.get(key, ()):
            known = ", ".join(f"{name} ({'|'.join(values)})" for name, values in _OPTIONS.items())
            raise _invalid(f"The option {key}: {value} is not one of {known}.")
    return "all" if settings.get("searchmode") == "all" else "any"


def _order(body: Mapping[str, Any], scopes: list[Scope]) -> list[tuple[str, bool]]:
    """`orderby`: clauses `<column> [asc|desc]`, in a JSON array, each item possibly several comma-separated."""
    clauses = _json_text(body, "orderby")
    if clauses is None:
        return []
    if not isinstance(clauses, list) or not all(isinstance(clause, str) for clause in clauses):
        raise _invalid('\'orderby\' is a string holding a JSON array of clauses, such as "[\\"createdon desc\\"]".')
    order = []
    for clause in (part.strip() for item in clauses for part in item.split(",")):
        name, _, direction = clause.partition(" ")
        direction = direction.strip().casefold() or "asc"
        if direction not in ("asc", "desc") or not name:
            raise _invalid(f"The orderby clause '{clause}' is not '<column> asc' or '<column> desc'.")
        if name != SCORE and not any(name in scope.columns for scope in scopes):
            raise _invalid(f"The orderby column '{name}' is in the search index of no table searched.")
        order.append((name, direction == "desc"))
    return order


def parse_request(body: Any, catalog: Catalog) -> SearchRequest:
    """The query a body asks for, every parameter checked before anything is searched."""
    if not isinstance(body, dict):
        raise _invalid('The body is a JSON object of the query\'s parameters, such as {"search": "contoso"}.')
    for name in body:
        if name not in _PARAMETERS:
            raise _invalid(
                f"The parameter '{name}' is not a parameter of the search query: {', '.join(sorted(_PARAMETERS))}."
            )
    text = body.get("search")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_SEARCH_LENGTH:
        shown = "missing" if text is None else f"{len(text)} characters" if isinstance(text, str) else "not text"
        raise _invalid(f"The search term is required, 1 to {MAX_SEARCH_LENGTH} characters; it is {shown}.")
    count = body.get("count")
    if count is not None and not isinstance(count, bool):
        raise _invalid(f"'count' is true or false; it was {json.dumps(count)}.")
    mode = _mode(body)
    scopes = _with_filter(_scopes(catalog, _json_text(body, "entities")), body.get("filter"))
    facets = _json_text(body, "facets")
    if facets is not None and not isinstance(facets, list):
        raise _invalid('\'facets\' is a string holding a JSON array of facets, such as "[\\"entityname\\"]".')
    indexes = {scope.table.logical_name: scope.columns for scope in scopes}
    return SearchRequest(
        text=text,
        mode=mode,
        scopes=scopes,
        facets=[parse_facet(facet, indexes) for facet in facets or ()],
        order=_order(body, scopes),
        count=bool(count),
        skip=_integer(body, "skip", 0),
        top=_integer(body, "top", DEFAULT_TOP, MAX_TOP),
    )
