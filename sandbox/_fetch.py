"""FetchXML through the Web API: `GET <entity set>?fetchXml=...`.

`_fetchxml.py` parses the XML; this module checks it against the catalog, runs it through the same SQL
engine as OData queries, and shapes the answer: linked columns as `<alias>.<column>`, `page`/`count`
paging with `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie` and `@Microsoft.Dynamics.CRM.morerecords`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Final

from ._aggregate import fetch_aggregate
from ._catalog import Column, JsonObject, Table
from ._environment import Environment
from ._errors import FETCH_XML_INVALID, WebApiError
from ._expression import And, Comparison, Expression, Membership, Not, Or, Property, TextMatch, Value
from ._fetchxml import (
    FetchAttribute,
    FetchLink,
    FetchQuery,
    make_paging_cookie,
    paging_cookie_annotation,
    parse_fetchxml,
)
from ._query import Join, Resolver, RowQuery, count_rows, select_rows
from ._records import FORMATTED_VALUE, Annotations, NameLookup, formatted_value, json_value, render_row
from ._security import Caller

PAGE_LIMIT: Final = 5000


def _invalid(message: str) -> WebApiError:
    return WebApiError(400, FETCH_XML_INVALID, message)


def _column(table: Table, name: str) -> Column:
    column = table.columns.get(name)
    if column is None:
        raise _invalid(f"'{table.logical_name}' entity doesn't contain attribute with Name = '{name}'.")
    return column


def _walk_links(links: tuple[FetchLink, ...]) -> Iterator[FetchLink]:
    for link in links:
        yield link
        yield from _walk_links(link.links)


def _coerce(column: Column, value: Value, caller: Caller) -> Value:
    """A FetchXML condition value (always text) as the typed value its column holds."""
    if not isinstance(value, str):
        return value
    if value == "@userid":
        return caller.system_user_id
    try:
        match column.kind:
            case "integer" | "choice":
                return int(value)
            case "decimal":
                return float(value)
            case "boolean":
                return value.strip().lower() in ("1", "true")
            case "datetime":
                text = value.strip()
                return (
                    date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
                )
            case "guid":
                return value.strip().strip("{}")
    except ValueError:
        raise _invalid(f"The value '{value}' is not valid for attribute '{column.logical_name}'.") from None
    return value


def _typed(expression: Expression, resolve: Resolver, caller: Caller) -> Expression:
    match expression:
        case Comparison(operator, prop, value):
            return Comparison(operator, prop, _coerce(resolve(prop)[1], value, caller))
        case Membership(prop, values, negated):
            column = resolve(prop)[1]
            return Membership(prop, tuple(_coerce(column, value, caller) for value in values), negated)
        case TextMatch():
            return expression
        case And(operands):
            return And(tuple(_typed(operand, resolve, caller) for operand in operands))
        case Or(operands):
            return Or(tuple(_typed(operand, resolve, caller) for operand in operands))
        case Not(operand):
            return Not(_typed(operand, resolve, caller))
    raise AssertionError(f"unknown expression {expression!r}")


def _joins(environment: Environment, fetch: FetchQuery, root: Table) -> list[Join]:
    tables: dict[str | None, Table] = {None: root}
    joins = []
    for link in _walk_links(fetch.links):
        table = environment.catalog.get(link.name)
        if table is None:
            raise _invalid(f"The entity with a name = '{link.name}' was not found in the MetadataCache.")
        parent = tables.get(link.parent_alias)
        if parent is None:
            raise _invalid(f"No link-entity with the alias '{link.parent_alias}'.")
        _column(table, link.from_attribute)
        _column(parent, link.to_attribute)
        tables[link.alias] = table
        joins.append(
            Join(
                link.alias,
                table,
                link.from_attribute,
                link.parent_alias,
                link.to_attribute,
                link.link_type == "outer",
            )
        )
    return joins


def run_fetch(
    environment: Environment,
    table: Table,
    text: str,
    caller: Caller,
    annotations: Annotations,
    names: NameLookup,
) -> JsonObject:
    """The Web API's answer to a FetchXML query on `table`'s entity set."""
    fetch = parse_fetchxml(text)
    if fetch.entity != table.logical_name:
        raise _invalid(
            f"The entity '{fetch.entity}' of the fetchXml does not match the entity set '{table.entity_set_name}'."
        )
    query = RowQuery(table, joins=_joins(environment, fetch, table))
    resolve = Resolver(query, odata=False)
    filters = [fetch.filter] + [link.filter for link in _walk_links(fetch.links)]
    present = [_typed(part, resolve, caller) for part in filters if part is not None]
    query.filter = present[0] if len(present) == 1 else And(tuple(present)) if present else None
    if fetch.aggregate:
        return fetch_aggregate(environment, table, fetch, query, caller, annotations, names)
    query.orderby = [(Property(order.attribute, order.alias), order.descending) for order in fetch.orders]
    for prop, _ in query.orderby:
        resolve(prop)
    page_size = fetch.count or PAGE_LIMIT
    if fetch.top is not None:
        query.limit, query.offset = fetch.top, 0
    else:
        query.limit, query.offset = page_size + 1, (fetch.page - 1) * page_size
    rows = select_rows(environment.store, query, caller, odata=False)
    more = fetch.top is None and len(rows) > page_size
    rows = rows[:page_size]
    root_columns = (
        None if fetch.attributes is None else [_column(table, attribute.name) for attribute in fetch.attributes]
    )
    links = {join.alias: join for join in query.joins}
    values = []
    for row in rows:
        rendered = render_row(table, row, root_columns, annotations, names)
        for link in _walk_links(fetch.links):
            linked = links[link.alias].table
            if link.attributes is None:
                attributes = [FetchAttribute(column.logical_name) for column in linked.stored_columns()]
            else:
                attributes = list(link.attributes)
            for attribute in attributes:
                column = _column(linked, attribute.name)
                value = row.get(f"{link.alias}.{attribute.name}")
                key = attribute.alias or f"{link.alias}.{attribute.name}"
                if annotations.wants(FORMATTED_VALUE):
                    label = formatted_value(column, value)
                    if label is not None:
                        rendered[f"{key}@{FORMATTED_VALUE}"] = label
                rendered[key] = json_value(column, value)
        values.append(rendered)
    body: dict[str, Any] = {
        "@odata.context": f"{environment.api_url}/$metadata#{table.entity_set_name}",
        "value": values,
    }
    if fetch.return_total_record_count:
        total = count_rows(environment.store, query, caller, odata=False)
        body["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(total, PAGE_LIMIT)
        body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > PAGE_LIMIT
    if more:
        first, last = rows[0][table.primary_id], rows[-1][table.primary_id]
        cookie = make_paging_cookie(table.primary_id, str(first), str(last), fetch.page)
        body["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"] = paging_cookie_annotation(cookie, fetch.page + 1)
    body["@Microsoft.Dynamics.CRM.morerecords"] = more
    return body
